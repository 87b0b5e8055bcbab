"""The gate benchmarks' load side: free ports, an origin (a minimal asyncio one when nginx is missing), nginx
as origin or reference proxy, wrk runs, and the proxy's CPU and memory during them."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

PROXY_CPU = "0"  # every proxy (and every thread of `fsctl serve`) runs here
LOAD_CPU = "1"  # wrk and the origin


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port} after {timeout}s")


# --- the gate, run in its own process ------------------------------------------------------------------


# --- a minimal origin when nginx is missing ---------------------------------------------------------


def run_origin(port: int) -> None:
    import uvloop

    small = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n"
    big_body = b"x" * (1 << 20)
    big = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % len(big_body)

    class Origin(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t = transport
            self.buf = b""

        def data_received(self, data: bytes) -> None:
            self.buf += data
            while b"\r\n\r\n" in self.buf:
                head, self.buf = self.buf.split(b"\r\n\r\n", 1)
                if head.split(b" ", 2)[1].startswith(b"/1m"):
                    self.t.writelines([big, big_body])  # type: ignore[attr-defined]
                else:
                    self.t.write(small)  # type: ignore[attr-defined]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_server(Origin, "127.0.0.1", port, backlog=1024)
        await asyncio.Event().wait()

    uvloop.run(main())


# --- nginx ------------------------------------------------------------------------------------------------


NGINX_CONF = """
daemon off;
master_process on;
worker_processes 1;
user root;
pid {dir}/nginx-{name}.pid;
error_log {dir}/error-{name}.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {access_log};
    keepalive_requests 1000000;
    client_body_temp_path {dir}/body-{name};
    proxy_temp_path {dir}/proxy-{name};
    fastcgi_temp_path {dir}/fcgi-{name};
    uwsgi_temp_path {dir}/uwsgi-{name};
    scgi_temp_path {dir}/scgi-{name};
    {body}
}}
"""

ORIGIN_BODY = """
    server {{
        listen 127.0.0.1:{port} reuseport;
        root {dir}/www;
        location = / {{ default_type text/plain; return 200 "ok\\n"; }}
        location /1m {{ }}
    }}
"""

PROXY_BODY = """
    upstream origin {{ server 127.0.0.1:{origin}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
"""


def start_nginx(
    nginx: str, tmp: Path, name: str, body: str, cpu: str, *, access_log: bool = False
) -> subprocess.Popen[bytes]:
    """nginx in the foreground; `access_log`: the reference proxy's combined log, buffered as a tuned
    production setup does (64 KiB, flushed every second) — the product logs every request too."""
    conf = tmp / f"nginx-{name}.conf"
    log = f"{tmp}/access-{name}.log combined buffer=64k flush=1s" if access_log else "off"
    conf.write_text(NGINX_CONF.format(dir=tmp, name=name, body=body, access_log=log))
    return subprocess.Popen(
        ["taskset", "-c", cpu, nginx, "-p", str(tmp), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# --- load --------------------------------------------------------------------------------------------------


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    v = float(m.group(1))
    return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v


def wrk(port: int, path: str, connections: int, seconds: float) -> dict[str, float]:
    cmd = [
        "taskset",
        "-c",
        LOAD_CPU,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        f"http://127.0.0.1:{port}{path}",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
    out = done.stdout
    if "Requests/sec" not in out:
        print(f"wrk failed: {' '.join(cmd)}\n{out}{done.stderr}", file=sys.stderr)
    res: dict[str, float] = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    if m:
        scale = {"B": 1 / 2**20, "KB": 1 / 1024, "MB": 1, "GB": 1024}.get(m.group(2), 1)
        res["mib_s"] = float(m.group(1)) * scale
    for pct in ("50", "99"):
        m = re.search(rf"\s{pct}(?:\.000)?%\s+([\d.]+\w+)", out)
        res[f"p{pct}_ms"] = _ms(m.group(1)) if m else float("nan")
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["errors"] = float(errs.group(1)) if errs else 0.0
    sock_errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock_errs:
        res["errors"] += sum(float(x) for x in sock_errs.groups())
    return res


class RssSampler:
    def __init__(self, pid: int) -> None:
        import psutil

        self.proc = psutil.Process(pid)
        self.peak = 0
        self._stop = False

    def sample(self) -> None:
        self.peak = max(self.peak, self.proc.memory_info().rss)


class CpuMeter:
    """User+system CPU seconds of a process and its children (nginx: master + worker)."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.proc = psutil.Process(pid)

    def seconds(self) -> float:
        total = 0.0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except Exception:
                pass
        return total


def run_load(
    sampler: RssSampler | None, port: int, path: str, conns: int, seconds: float, meter: CpuMeter | None = None
) -> dict[str, float]:
    """One wrk run; with `meter`, adds the proxy's CPU microseconds per request (robust to machine load)."""
    import threading

    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            if sampler:
                sampler.sample()
            time.sleep(0.1)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    before = meter.seconds() if meter else 0.0
    try:
        res = wrk(port, path, conns, seconds)
    finally:
        done.set()
        t.join()
    if meter:
        served = res["rps"] * max(1, round(seconds))
        res["cpu_us"] = (meter.seconds() - before) / served * 1e6 if served else float("nan")
    return res
