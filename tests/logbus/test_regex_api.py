"""User regexes through a real `fsctl serve` (issue 13): the patterns that make Python's `re` backtrack
answer at once, a viewer's search flood leaves the console answering within 50 ms, the live tail
filters with them, and syntax RE2 lacks is a 400 that names it."""

from __future__ import annotations

import json
import queue
import threading
import time
from typing import Any
from urllib.parse import urlencode

from tests._attack import check_no_stall, finish_hammer, request, start_hammer
from tests.logbus.test_api import _sse_reader, _wait

STALL_S = 0.05
LONG = "foo" * 1366  # a 4 KB line: `.*foo.*bar` took `re` 2.6 s on it, holding the GIL
AAA = "a" * 28  # `(a|aa)*b`: 0.1 s, 1.6 times more per extra `a`


def _viewer(srv: Any) -> str:
    r = srv.api("POST", "/api/users", json={"username": "vic", "password": "viewer-pw-1", "role": "viewer"})
    assert r.status_code in (200, 201), r.text
    return srv.login("vic", "viewer-pw-1")


def _ingest(srv: Any, service: str, lines: list[str]) -> None:
    r = srv.api("POST", f"/api/logs/{service}", content="".join(x + "\n" for x in lines).encode())
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 10
    while len(srv.api("GET", "/api/logs", params={"service": service, "limit": "10000"}).json()["lines"]) < len(lines):
        assert time.monotonic() < deadline, "ingested lines not searchable"
        time.sleep(0.05)


def test_backtracking_patterns_answer_at_once(server: Any) -> None:
    _ingest(server, "redos", [AAA, LONG, "x foo y bar zb", "aab"])
    token = _viewer(server)

    def best_of_3(path: str) -> tuple[float, list[float]]:
        took = []
        for _ in range(3):
            status, _, t = request(
                server.console_port,
                f"127.0.0.1:{server.console_port}",
                path,
                {"Authorization": f"Bearer {token}"},
                timeout_s=30,
            )
            assert status == 200
            took.append(t)
        return min(took), took

    # The same request without a regex, measured here: on a loaded runner a whole API round trip can
    # take more than 50 ms by itself. Backtracking adds 0.1 s on the 28-character line and 2.6 s on the
    # 4 KB one on every try, so the best regex search still stands out against it.
    base, _ = best_of_3("/api/logs?" + urlencode({"service": "redos"}))
    for pattern, hits in (
        (".*foo.*bar", ["x foo y bar zb"]),
        ("(a|aa)*b", ["x foo y bar zb", "aab"]),
        ("(a+)+$", [AAA]),
        ("(?i)FOO.*BAR", ["x foo y bar zb"]),
    ):
        path = "/api/logs?" + urlencode({"service": "redos", "regex": pattern})
        best, took = best_of_3(path)
        got = server.api("GET", path).json()["lines"]
        assert [x["text"] for x in got] == hits, pattern
        print(
            f"\n{pattern!r} over a 4 KB and a 28-character line: best {best * 1000:.1f} ms (no regex {base * 1000:.1f})"
        )
        assert best < base + STALL_S, (
            f"{pattern!r}: {[round(t * 1000, 1) for t in took]} ms, no regex {base * 1000:.1f}"
        )


def test_a_viewers_regex_flood_leaves_the_console_answering(server: Any) -> None:
    _ingest(server, "redos", [LONG] * 200 + [AAA] * 200 + ["x foo y bar zb"])
    token = _viewer(server)
    idle = max(request(server.console_port, f"127.0.0.1:{server.console_port}", "/api/health")[2] for _ in range(10))

    def attempt() -> list[float]:
        proc = start_hammer(
            server.console_port,
            f"127.0.0.1:{server.console_port}",
            "/api/logs?" + urlencode({"service": "redos", "regex": ".*foo.*bar|(a|aa)*b"}),
            headers={"Authorization": f"Bearer {token}"},
            threads=4,
            seconds=3.0,
        )
        try:
            time.sleep(0.3)
            lat: list[float] = []
            for _ in range(200):
                if proc.poll() is not None:
                    break
                status, _, t = request(server.console_port, f"127.0.0.1:{server.console_port}", "/api/health")
                assert status == 200
                lat.append(t)
                time.sleep(0.04)
        finally:
            counts = finish_hammer(proc, timeout_s=120)
        assert counts.get("200", 0) >= 20, counts  # searches really ran, many a second
        print(f"\nregex search flood {counts}: console worst {max(lat) * 1000:.1f} ms (idle {idle * 1000:.1f} ms)")
        return lat

    check_no_stall(attempt, STALL_S)


def test_live_tail_filters_with_a_backtracking_pattern(server: Any) -> None:
    q: queue.Queue[tuple[float, str]] = queue.Queue()
    stop = threading.Event()
    _sse_reader(server, "/api/logs/web/stream?" + urlencode({"regex": "(a|aa)*b"}), q, stop)
    _wait(q, lambda line: line == ": connected")
    # `re` on the loop: ~10^13 steps for the first line, and every site frozen meanwhile.
    assert server.api("POST", "/api/logs/web", content=("a" * 64 + "\n").encode() * 50 + b"aab\n").status_code == 200
    sent = time.monotonic()
    at, line = _wait(q, lambda line: line.startswith("data: "))
    assert [x["text"] for x in json.loads(line[6:])] == ["aab"]
    assert at - sent < 1.0, f"tail latency {at - sent:.3f}s"
    stop.set()


def test_syntax_re2_lacks_is_a_precise_400(server: Any) -> None:
    token = _viewer(server)
    cases = [
        (r"(\w+) \1", r"uses a backreference (\1 at character 7)"),
        ("error(?!: ignored)", "uses a negative lookahead ((?! at character 6)"),
        ("(?<=user=)\\w+", "uses a lookbehind ((?<= at character 1)"),
        ("a++", "uses a possessive quantifier (++ at character 2)"),
        ("(unclosed", "is invalid: missing )"),
        ("a" * 501, "at most 500"),
        (r"\pL{1000}", "too large once compiled"),
    ]
    for pattern, text in cases:
        for path in (
            f"/api/logs?{urlencode({'service': 'web', 'regex': pattern})}",
            f"/api/logs/web/stream?{urlencode({'regex': pattern})}",
        ):
            r = server.api("GET", path, token=token)
            assert r.status_code == 400, (path, r.text)
            err = r.json()["error"]
            assert err["details"]["field"] == "regex" and text in err["message"], (pattern, err)
            assert "RE2" in err["message"] or "RE2" in err["details"]["hint"]
    out = server.fsctl("logs", "web", "--regex", "(?=x)")
    assert out.returncode == 1 and "uses a lookahead ((?= at character 1)" in out.stderr, out.stderr
    assert server.api("GET", "/api/logs?service=web&regex=a%2B%3Fb").status_code == 200  # lazy is fine
