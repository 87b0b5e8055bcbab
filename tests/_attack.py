"""Load for the "nothing stalls the loop" tests: a hammer that runs in its own process (so its CPU and
GIL are not the server's or the prober's) and a prober that times requests to an unrelated route.

    python -m tests._attack '{"port": P, "host": H, "path": "/x", "method": "GET", "headers": {...},
                              "body": "...", "threads": 8, "seconds": 3}'  → JSON {status: count} on stdout

Every loop is bounded in time and in count.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_REQUESTS_PER_THREAD = 5000


def _read_response(sock: socket.socket, deadline: float) -> tuple[int, bytes]:
    """(status, raw) of one response with Content-Length (the gate's own answers and small proxied ones)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a response head")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, head


def request(
    port: int,
    host: str,
    path: str,
    headers: dict[str, str] | None = None,
    timeout_s: float = 10.0,
    method: str = "GET",
    body: bytes = b"",
) -> tuple[int, bytes, float]:
    """One request on a fresh connection: (status, response head, seconds from connect to full response)."""
    hdrs = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    if body:
        hdrs += f"Content-Length: {len(body)}\r\n"
    t0 = time.perf_counter()
    deadline = time.monotonic() + timeout_s
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{hdrs}Connection: close\r\n\r\n".encode() + body)
        status, head = _read_response(s, deadline)
    return status, head, time.perf_counter() - t0


def hammer(
    port: int,
    host: str,
    path: str,
    *,
    headers: dict[str, str],
    threads: int,
    seconds: float,
    method: str = "GET",
    body: bytes = b"",
) -> Counter[str]:
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def run() -> None:
        for _ in range(MAX_REQUESTS_PER_THREAD):
            if time.monotonic() >= end:
                return
            try:
                status, _, _ = request(port, host, path, headers, timeout_s=15, method=method, body=body)
                key = str(status)
            except OSError as e:
                key = type(e).__name__
            with lock:
                counts[key] += 1

    ts = [threading.Thread(target=run) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return counts


def start_hammer(
    port: int,
    host: str,
    path: str,
    *,
    headers: dict[str, str],
    threads: int = 8,
    seconds: float = 3.0,
    method: str = "GET",
    body: str = "",
) -> subprocess.Popen[str]:
    """The hammer in a child process; `finish_hammer` collects its counts."""
    config = {
        "port": port,
        "host": host,
        "path": path,
        "headers": headers,
        "threads": threads,
        "seconds": seconds,
        "method": method,
        "body": body,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tests._attack", json.dumps(config)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )


def finish_hammer(proc: subprocess.Popen[str], timeout_s: float = 60) -> dict[str, int]:
    out, _ = proc.communicate(timeout=timeout_s)
    return json.loads(out)


def probe_while(
    proc: subprocess.Popen[str], port: int, host: str, path: str, interval_s: float = 0.05, limit: int = 400
) -> list[float]:
    """Latencies (s) of requests to an unrelated route, one every `interval_s`, until `proc` ends."""
    out: list[float] = []
    for _ in range(limit):
        if proc.poll() is not None:
            break
        status, _, took = request(port, host, path)
        assert status == 200, status
        out.append(took)
        time.sleep(interval_s)
    return out


def p90(xs: list[float]) -> float:
    return sorted(xs)[int(len(xs) * 0.9)]


def outlier_allowance(n: int) -> int:
    """How many of `n` probes may be slow for reasons other than the loop: 5%, at least two."""
    return max(2, n // 20)


# A probe this many times over the limit is never an excused outlier. A long freeze of the loop delays only
# the one probe waiting through it (the next is sent after it returns), so a count of slow probes alone
# passed a window with two 1.4 s freezes; the worst hiccups of a loaded 2-core CI runner (a GC pass, the
# scheduler giving the core away) were 100-120 ms for a 50 ms limit, under this cap.
OUTLIER_CAP = 4


def check_no_stall(
    attempt: Callable[[], list[float]],
    limit_s: float = 0.05,
    tries: int = 3,
    loop_was_idle: Callable[[], bool] | None = None,
) -> list[float]:
    """Run `attempt` (an attack with probes; returns their latencies) until one window has at most a few
    probes over `limit_s` (5%, at least two: `outlier_allowance`), none of them `OUTLIER_CAP` times over.
    A stalled loop fails at once: 90% of the probes must be under the limit in every window (a bcrypt check
    or a YAML bomb on the loop makes nearly all of them wait, far past any allowance), and a long freeze
    now and then fails every window it falls in: the probe waiting through it is over the cap. The
    allowance is for the machine: a 2-core runner shared with other test runs delays a runnable process
    now and then (a GC pass, the scheduler giving the core to the hammer), idle probes included; CI once
    failed on one 116 ms probe whose own test step took 114 ms. Only a window with more (or longer)
    outliers than that is run again, at most `tries` times. When no window passes, `loop_was_idle` (the
    server's loop thread measured mostly idle during the last window, so the outliers waited for a CPU,
    not for the loop) is the last word."""
    seen: list[str] = []
    cap_s = OUTLIER_CAP * limit_s
    for _ in range(tries):
        lat = attempt()
        assert lat, "no probe ran"
        assert p90(lat) < limit_s, f"the loop stalled: p90 {p90(lat) * 1000:.1f} ms, max {max(lat) * 1000:.1f} ms"
        slow = sum(x >= limit_s for x in lat)
        if slow <= outlier_allowance(len(lat)) and max(lat) < cap_s:
            return lat
        seen.append(f"max {max(lat) * 1000:.1f} ms ({slow} of {len(lat)} over)")
    if loop_was_idle is not None and loop_was_idle():
        print(
            f"\nevery window had outliers over {limit_s * 1000:.0f} ms ({seen}) while the loop thread "
            "was idle: the machine, not the loop"
        )
        return lat
    raise AssertionError(
        f"no window with at most 5% of probes over {limit_s * 1000:.0f} ms and none over {cap_s * 1000:.0f} ms: {seen}"
    )


async def arequest(
    port: int, host: str, path: str, headers: dict[str, str] | None = None, timeout_s: float = 10.0
) -> tuple[int, float]:
    """`request` for a test whose server runs on its own loop: (status, seconds)."""
    hdrs = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    t0 = time.perf_counter()
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{hdrs}Connection: close\r\n\r\n".encode())
            data = await reader.read()
        finally:
            writer.close()
    return int(data.split(b" ", 2)[1]), time.perf_counter() - t0


async def aprobe_while(
    proc: subprocess.Popen[str], port: int, host: str, path: str, interval_s: float = 0.05, limit: int = 400
) -> list[float]:
    """`probe_while` on the test's loop."""
    out: list[float] = []
    for _ in range(limit):
        if proc.poll() is not None:
            break
        status, took = await arequest(port, host, path)
        assert status == 200, status
        out.append(took)
        await asyncio.sleep(interval_s)
    return out


if __name__ == "__main__":
    c = json.loads(sys.argv[1])
    print(
        json.dumps(
            hammer(
                c["port"],
                c["host"],
                c["path"],
                headers=c["headers"],
                threads=c["threads"],
                seconds=c["seconds"],
                method=c["method"],
                body=c["body"].encode(),
            )
        )
    )
