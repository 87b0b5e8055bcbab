"""Logbus through a real `fsctl serve`: ingest, search, download, SSE live tail, the CLI, bad input."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from typing import Any

import httpx


def _sse_reader(
    srv: Any,
    path: str,
    out: queue.Queue[tuple[float, str]],
    stop: threading.Event,
    headers: dict[str, str] | None = None,
) -> threading.Thread:
    def run() -> None:
        h = {"Authorization": f"Bearer {srv.login()}", **(headers or {})}
        try:
            with httpx.stream("GET", f"{srv.url}{path}", headers=h, timeout=httpx.Timeout(30, read=60)) as r:
                out.put((time.monotonic(), f"status {r.status_code}"))
                for line in r.iter_lines():
                    out.put((time.monotonic(), line))
                    if stop.is_set():
                        return
        except httpx.HTTPError:
            pass  # the server was stopped at the end of the test

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _wait(q: queue.Queue[tuple[float, str]], pred: Any, timeout: float = 15) -> tuple[float, str]:
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, "expected SSE line did not arrive"
        at, line = q.get(timeout=left)
        if pred(line):
            return at, line


def test_ingest_search_download_tail_and_cli(server_factory: Any) -> None:
    srv = server_factory()
    status = srv.api("GET", "/api/status").json()
    assert {"name": "logbus", "state": "running"} in status["components"]
    health = srv.api("GET", "/api/logs/status").json()
    assert health["writer_running"] is True and health["write_errors"] == 0

    body = "".join(f"job run {i} {'FAILED' if i == 7 else 'ok'}\n" for i in range(20)).encode()
    r = srv.api("POST", "/api/logs/cron-backup?instance=nightly", content=body)
    assert r.status_code == 200, r.text
    assert r.json() == {"service": "cron-backup", "bytes": len(body), "lines": 20}

    def search(**params: str) -> dict[str, Any]:
        resp = srv.api("GET", "/api/logs", params=params)
        assert resp.status_code == 200, resp.text
        return resp.json()

    deadline = time.monotonic() + 10
    while len(search(service="cron-backup")["lines"]) < 20:
        assert time.monotonic() < deadline, "ingested lines not searchable"
        time.sleep(0.05)
    got = search(service="cron-backup", q="failed")["lines"]
    assert [x["text"] for x in got] == ["job run 7 FAILED"] and got[0]["instance"] == "nightly"
    assert [x["text"] for x in search(service="cron-backup", regex=r"run 1\d ok$")["lines"]] == [
        f"job run {i} ok" for i in range(10, 20)
    ]
    page = search(service="cron-backup", limit="8")
    assert len(page["lines"]) == 8 and page["next_cursor"]
    rest = search(service="cron-backup", limit="100", cursor=page["next_cursor"])
    assert [x["text"] for x in page["lines"] + rest["lines"]] == body.decode().splitlines()
    assert len(search(service="cron-backup", since="1h")["lines"]) == 20  # relative times work
    assert search(service="cron-backup", **{"from": "1m", "to": "1970-01-02T00:00:00Z"})["lines"] == []

    dl = srv.api("GET", "/api/logs/download", params={"service": "cron-backup", "from": "10m"})
    assert dl.status_code == 200 and "attachment" in dl.headers["content-disposition"]
    assert dl.text.count("\n") == 20 and "nightly job run 7 FAILED" in dl.text

    # Live tail: a line appended now reaches an SSE client within a second.
    q: queue.Queue[tuple[float, str]] = queue.Queue()
    stop = threading.Event()
    _sse_reader(srv, "/api/logs/cron-backup/stream?tail=2", q, stop)
    _wait(q, lambda line: line == "status 200")
    _, hist = _wait(q, lambda line: line.startswith("data: ["))
    assert [x["text"] for x in json.loads(hist[6:])] == ["job run 18 ok", "job run 19 ok"]
    assert srv.api("POST", "/api/logs/cron-backup", content=b"live one\n").status_code == 200
    accepted = time.monotonic()  # the line is in logbus's hands (the POST's audit write comes after)
    at, _ = _wait(q, lambda line: "live one" in line)
    assert at - accepted < 1.0, f"tail latency {at - accepted:.3f}s"
    stop.set()

    # The CLI: recent lines, a keyword, JSON lines.
    out = srv.fsctl("logs", "cron-backup", "--tail", "3")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1].endswith("live one")
    out = srv.fsctl("logs", "cron-backup", "--since", "1h", "--grep", "FAILED", "--json")
    assert out.returncode == 0, out.stderr
    assert [json.loads(x)["text"] for x in out.stdout.splitlines()] == ["job run 7 FAILED"]
    # Escape sequences in a log line are shown, not sent to the reader's terminal.
    srv.api("POST", "/api/logs/cron-backup", content=b"colour \x1b[31mred\x1b[0m\rdone\n")
    deadline = time.monotonic() + 10
    while not search(service="cron-backup", q="colour")["lines"]:
        assert time.monotonic() < deadline, "line not stored"
        time.sleep(0.05)
    out = srv.fsctl("logs", "cron-backup", "--tail", "1")
    assert out.stdout.rstrip().endswith("colour \\x1b[31mred\\x1b[0m\\x0ddone"), out.stdout


def test_follow_from_the_cli_and_resume_by_last_event_id(server_factory: Any) -> None:
    srv = server_factory()
    srv.api("POST", "/api/logs/web", content=b"before 1\nbefore 2\n")
    q: queue.Queue[tuple[float, str]] = queue.Queue()
    stop = threading.Event()
    _sse_reader(srv, "/api/logs/web/stream?since=1h", q, stop)
    _, ident = _wait(q, lambda line: line.startswith("id: "))
    _wait(q, lambda line: "before 2" in line)
    stop.set()
    srv.api("POST", "/api/logs/web", content=b"while away\n")
    q2: queue.Queue[tuple[float, str]] = queue.Queue()
    _sse_reader(srv, "/api/logs/web/stream", q2, threading.Event(), headers={"Last-Event-ID": ident[4:]})
    _, line = _wait(q2, lambda line: line.startswith("data: ["))
    assert [x["text"] for x in json.loads(line[6:])] == ["while away"]

    env = {**srv.env, "FSCTL_SERVER": srv.url, "FSCTL_TOKEN": srv.login()}
    # The `with` closes the pipe and waits for the CLI after the kill.
    with subprocess.Popen(
        [sys.executable, "-m", "fsctl", "logs", "web", "-f", "--tail", "1"], env=env, stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().rstrip().endswith("while away")
            srv.api("POST", "/api/logs/web", content=b"followed\n")
            assert proc.stdout.readline().rstrip().endswith("followed")
        finally:
            proc.kill()


def test_bad_requests_are_precise(server_factory: Any) -> None:
    srv = server_factory()
    cases = [
        ("GET", "/api/logs?service=../etc", "service", "not a valid service name"),
        ("GET", "/api/logs?service=web&regex=(x", "regex", "is invalid"),
        ("GET", "/api/logs?service=web&from=yesterday", "from", "is not a time"),
        ("GET", "/api/logs?service=web&limit=0", "limit", "between 1 and"),
        ("GET", "/api/logs?service=web&stream=stdin", "stream", "stdout or stderr"),
        ("GET", "/api/logs?service=web&cursor=zzz", "cursor", "cursor"),
        ("GET", "/api/logs/download", "service", "required"),
    ]
    for method, path, field, text in cases:
        r = srv.api(method, path)
        assert r.status_code == 400, (path, r.text)
        err = r.json()["error"]
        assert err["details"]["field"] == field and text in err["message"], (path, err)
    r = srv.api("POST", "/api/logs/web", content=b"")
    assert r.status_code == 400 and "empty" in r.json()["error"]["message"]
    r = srv.api("POST", "/api/logs/web", content=b"x\n", token=None)
    assert r.status_code == 401
    assert srv.api("GET", "/api/logs?service=nothing-here").json()["lines"] == []
    out = srv.fsctl("logs", "web", "--since", "soon")
    assert out.returncode == 1 and "is not a time" in out.stderr


def test_an_open_tail_does_not_hold_up_shutdown(server_factory: Any) -> None:
    srv = server_factory()
    q: queue.Queue[tuple[float, str]] = queue.Queue()
    _sse_reader(srv, "/api/logs/web/stream", q, threading.Event())
    _wait(q, lambda line: line == ": connected")
    t = time.monotonic()
    assert srv.stop(timeout=20) == 0
    assert time.monotonic() - t < 5.0, "the tail stream kept the server from stopping"
