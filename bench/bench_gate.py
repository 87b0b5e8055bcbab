"""`make bench-gate`: the gate's HTTP/1.1 proxy against nginx, measured in the same run.

Starts an origin (nginx `return 200` + a 1 MiB static file when nginx is installed, else a minimal
asyncio origin), the gate's engine alone (its proxy engine on uvloop, one process), the product
(`fsctl serve` started as a user starts it: fresh data dir, default settings, the route added through
the console API; access log to logbus, metrics, probe and the rest running; see bench/_product.py) and
nginx as a reference proxy (1 worker, upstream keep-alive, access log on with `buffer=64k flush=1s`);
pins each proxy (every thread of `fsctl serve`) to core 0 and the load generator (wrk) to core 1, and
prints requests/s and latency for direct-to-origin, nginx, the engine and `fsctl serve`, the added p50
latency at one connection, 1 MiB body throughput and the engine's peak RSS. Load goes only to 127.0.0.1,
for a bounded time per run (`--seconds`, default 5). Then, because single runs on a shared machine swing
by 2x, `--pairs` rounds of alternating short engine/serve/nginx runs at 50 connections give the median
ratios (the verdict): engine/nginx, serve/nginx and serve/engine, by requests/s and by CPU per request.

    .venv/bin/python bench/bench_gate.py [--seconds 5] [--connections 50] [--pairs 6] [--profile [serve]]
        [--no-product]
    .venv/bin/python bench/bench_gate.py --micro [--access-log | --logbus] [--body BYTES]

`--micro` measures only the gate's own Python work per request, in process: a `ClientConnection` and a
pooled `UpstreamConnection` on fake transports, fed a wrk-like GET and an nginx-like response (no
sockets, no system calls, no other process). Steadier than the socket runs on a shared machine; it
is the figure to compare code changes by (the socket runs stay the verdict). `--access-log` adds a
null access-log sink (the line is rendered, then dropped); `--logbus` a real `LogbusService` on a temp
dir, whose writer thread's CPU counts too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROFILE = Path(tempfile.gettempdir()) / "gate-profile.txt"
PROXY_CPU = "0"
LOAD_CPU = "1"


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


def run_gate(port: int, upstream: str) -> None:
    import uvloop

    from gate.config import GateConfig
    from gate.routes import Route, RouteSpec
    from gate.server import EdgeServer
    from gate.state import ProxyState

    async def main() -> None:
        loop = asyncio.get_running_loop()
        state = ProxyState(GateConfig(), clock=loop.time, wall_clock=time.time)
        state.install(state.build_snapshot([Route(1, RouteSpec(host="*", upstreams=[upstream]))]))
        server = EdgeServer(state)
        await server.listen("127.0.0.1", port)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.stop(1.0)

    uvloop.run(main())


def gate_build() -> str:
    """Which build of the gate's hot modules a gate started now runs (see gate/accel.py)."""
    from gate import accel

    why = accel.reason()
    return f"compiled ({len(accel.COMPILED)} modules)" if why is None else f"pure Python ({why})"


# --- --micro: the per-request Python cost, in process -----------------------------------------------


class _FakeTransport:
    def __init__(self) -> None:
        self.writes = 0

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.writes += 1

    def writelines(self, data: object) -> None:
        self.writes += 1

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


def micro(
    requests: int = 50_000, rounds: int = 7, access_log: bool = False, body: int = 0, logbus: bool = False
) -> float:
    """Best-of-`rounds` process CPU µs per proxied request through the gate's HTTP/1.1 path (a GET, or
    with `body` a POST of that many bytes, which the gate buffers whole before the upstream). With
    `logbus`, the access log goes to a real `LogbusService` on a temp dir, and each round ends once
    logbus has written and indexed every line (its writer thread's CPU counts: process time)."""
    import uvloop

    return uvloop.run(_micro(requests, rounds, access_log, body, logbus))


async def _micro(requests: int, rounds: int, access_log: bool, body: int, logbus: bool) -> float:
    from gate.config import GateConfig
    from gate.proxy import ClientConnection
    from gate.routes import Route, RouteSpec
    from gate.state import ProxyState
    from gate.upstream import UpstreamConnection
    from logbus.service import LogbusService

    class Sink:  # takes the batches as logbus does (same thresholds), then drops them
        access_batch_lines, access_batch_chars, access_batch_s = 512, 256 * 1024, 0.1

        def record_lines(self, lines: list[str], at: float) -> None:
            pass

    tmp = Path(tempfile.mkdtemp(prefix="bench-gate-micro-"))
    svc = LogbusService(tmp / "logs") if logbus else None
    if svc is not None:
        await svc.start()
    state = ProxyState(
        GateConfig(), clock=time.monotonic, wall_clock=time.time, access_log=svc or (Sink() if access_log else None)
    )
    state.install(state.build_snapshot([Route(1, RouteSpec(host="*", upstreams=["127.0.0.1:9"]))]))
    target = state.target("127.0.0.1", 9)
    up = UpstreamConnection(state.pool, target)
    up.connection_made(_FakeTransport())  # type: ignore[arg-type]
    state.pool.open_count[target.key] = 1
    state.pool.release(up)
    client = ClientConnection(state)
    out = _FakeTransport()
    client.connection_made(out)  # type: ignore[arg-type]
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\n\r\n"
    if body:
        request = (
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\nContent-Length: %d\r\n\r\n" % body
            + b"x" * body
        )
    response = (
        b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Mon, 23 Nov 2026 13:00:00 GMT\r\n"
        b"Content-Type: text/plain\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nok\n"
    )
    best = float("inf")
    try:
        for _ in range(rounds):
            t0 = time.process_time()
            for i in range(requests):
                client.data_received(request)
                up.data_received(response)
                if svc is not None and not i % 1000:
                    await asyncio.sleep(0)  # the loop runs (logbus's batch timer) as under real load
            if state.access_log is not None:
                state.access_log.flush()  # the open batch
            if svc is not None:
                await svc.flush()
            best = min(best, (time.process_time() - t0) / requests * 1e6)
        if out.writes < requests * rounds:
            raise SystemExit("the micro benchmark's requests were not all answered")
        if svc is not None:
            written = svc.writer._files["gate-access"].lines
            if written < requests * rounds:
                raise SystemExit(f"logbus wrote {written} of {requests * rounds} access-log lines")
    finally:
        if svc is not None:
            await svc.stop(10)
        shutil.rmtree(tmp, ignore_errors=True)
    return best


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


def summarize_profile(path: Path, top: int = 12) -> None:
    """Print where the gate spent its samples (py-spy raw format: `frame;frame;... count`)."""
    from collections import Counter

    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    n_all = 0
    for line in path.read_text().splitlines():
        stack, _, n_s = line.rpartition(" ")
        n = int(n_s)
        n_all += n
        frames = [f.split(" (")[0] for f in stack.split(";")]
        own[frames[-1]] += n
        for f in set(frames):
            total[f] += n
    print(f"\npy-spy profile of the gate under load ({n_all} samples, raw file {path}):")
    print("  self time:      " + ", ".join(f"{f} {c / n_all:.0%}" for f, c in own.most_common(top)))
    print("  inclusive time: " + ", ".join(f"{f} {c / n_all:.0%}" for f, c in total.most_common(top + 5) if c < n_all))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument(
        "--profile",
        nargs="?",
        const="gate",
        choices=("gate", "serve"),
        help="record a py-spy profile of the engine (or of `fsctl serve`) under load (needs py-spy)",
    )
    ap.add_argument(
        "--pairs", type=int, default=6, help="then N rounds of alternating short engine/serve/nginx runs (medians)"
    )
    ap.add_argument("--pair-seconds", type=float, default=3.0)
    ap.add_argument("--no-product", action="store_true", help="skip the `fsctl serve` runs (the engine alone)")
    ap.add_argument(
        "--before",
        type=Path,
        metavar="DIR",
        help="also run `fsctl serve` from the source tree DIR (e.g. `git archive` of an older commit with "
        "this gate/_accel copied in): row `before`, ratio serve/before",
    )
    ap.add_argument("--micro", action="store_true", help="only the in-process per-request Python cost")
    ap.add_argument("--access-log", action="store_true", help="--micro: with an access-log sink")
    ap.add_argument(
        "--logbus",
        action="store_true",
        help="--micro: with logbus itself as the sink (its writer thread's CPU included)",
    )
    ap.add_argument("--body", type=int, default=0, help="--micro: POST bodies of this many bytes instead of GET")
    ap.add_argument("--run-gate", nargs=2, metavar=("PORT", "UPSTREAM"), help=argparse.SUPPRESS)
    ap.add_argument("--run-origin", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run_gate:
        run_gate(int(args.run_gate[0]), args.run_gate[1])
        return 0
    if args.run_origin:
        run_origin(args.run_origin)
        return 0
    if args.micro:
        what = f"POST {args.body} B" if args.body else "GET"
        sink = (
            " with logbus as the access log" if args.logbus else " with an access-log sink" if args.access_log else ""
        )
        print(
            f"gate per-request Python cost (in process, fake transports, best of 7 x 50000, {what}): "
            f"{micro(access_log=args.access_log, body=args.body, logbus=args.logbus):.2f} µs{sink}; {gate_build()}"
        )
        return 0
    if not shutil.which("wrk"):
        print("bench-gate needs wrk (apt-get install wrk)", file=sys.stderr)
        return 2
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    procs: list[subprocess.Popen[bytes]] = []
    serve = before = None
    tmp = Path(tempfile.mkdtemp(prefix="bench-gate-"))
    try:
        (tmp / "www").mkdir()
        (tmp / "www" / "1m").write_bytes(b"x" * (1 << 20))
        origin_port, gate_port, nginx_port = free_port(), free_port(), free_port()
        if nginx:
            procs.append(start_nginx(nginx, tmp, "origin", ORIGIN_BODY.format(port=origin_port, dir=tmp), LOAD_CPU))
            origin_kind = "nginx return 200"
        else:
            procs.append(
                subprocess.Popen(
                    ["taskset", "-c", LOAD_CPU, sys.executable, __file__, "--run-origin", str(origin_port)]
                )
            )
            origin_kind = "minimal asyncio origin"
        wait_port(origin_port)
        gate = subprocess.Popen(
            [
                "taskset",
                "-c",
                PROXY_CPU,
                sys.executable,
                __file__,
                "--run-gate",
                str(gate_port),
                f"127.0.0.1:{origin_port}",
            ],
            cwd=ROOT,
        )
        procs.append(gate)
        wait_port(gate_port)
        nginx_proc = None
        if nginx:
            nginx_proc = start_nginx(
                nginx, tmp, "proxy", PROXY_BODY.format(port=nginx_port, origin=origin_port), PROXY_CPU, access_log=True
            )
            procs.append(nginx_proc)
            wait_port(nginx_port)
        targets = [("direct", origin_port), ("gate", gate_port)]
        meters = {"gate": CpuMeter(gate.pid)}
        if not args.no_product:
            from _product import ProductServe

            serve = ProductServe(tmp, PROXY_CPU)
            serve.add_route({"host": "*", "upstreams": [f"127.0.0.1:{origin_port}"]})
            targets.append(("serve", serve.http_port))
            meters["serve"] = CpuMeter(serve.pid)
            if args.before:
                before = ProductServe(tmp, PROXY_CPU, name="before", root=args.before.resolve())
                before.add_route({"host": "*", "upstreams": [f"127.0.0.1:{origin_port}"]})
                targets.append(("before", before.http_port))
                meters["before"] = CpuMeter(before.pid)
        if nginx_proc:
            targets.append(("nginx", nginx_port))
            meters["nginx"] = CpuMeter(nginx_proc.pid)
        sampler = RssSampler(gate.pid)
        s, c = args.seconds, args.connections
        for _, port in targets:  # warm up pools and caches
            wrk(port, "/", c, 1)
        if serve:
            threads = serve.pin()  # threads started since (the first requests start some): pinned too
        if before:
            before.pin()
        results: dict[str, dict[str, dict[str, float]]] = {}
        profiler = None
        for name, port in targets:
            if args.profile == name and shutil.which("py-spy"):
                profiler = subprocess.Popen(
                    [
                        "py-spy",
                        "record",
                        "-p",
                        str(meters[name].proc.pid),
                        "-o",
                        str(PROFILE),
                        "-f",
                        "raw",
                        "-d",
                        str(int(s)),
                        "-r",
                        "200",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            results[name] = {
                "small": run_load(sampler if name == "gate" else None, port, "/", c, s, meters.get(name)),
            }
            if profiler:
                profiler.wait()
                profiler = None
            results[name]["one"] = run_load(sampler if name == "gate" else None, port, "/", 1, s, meters.get(name))
            results[name]["big"] = run_load(sampler if name == "gate" else None, port, "/1m", 10, s)
        print(
            f"\ngate benchmark — origin: {origin_kind}; proxies pinned to cpu {PROXY_CPU}, wrk to cpu {LOAD_CPU}; "
            f"{s:g} s per run; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
            f"gate {gate_build()}"
        )
        print(
            "gate = the engine alone; "
            + (
                f"serve = `fsctl serve` with default settings ({threads} threads, all on cpu {PROXY_CPU}); "
                if serve
                else ""
            )
            + ("nginx = 1 worker, access log on (buffer=64k flush=1s)" if nginx else "")
            + "\n"
        )
        print(
            f"{'':8} {'req/s @' + str(c):>12} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>10} {'p50 ms @1':>10} "
            f"{'CPU us @1':>9} {'1MiB MiB/s':>11} {'errors':>7}"
        )
        for name, _ in targets:
            r = results[name]
            errors = int(r["small"]["errors"] + r["one"]["errors"] + r["big"]["errors"])
            print(
                f"{name:8} {r['small']['rps']:>12.0f} {r['small']['p50_ms']:>8.3f} {r['small']['p99_ms']:>8.3f} "
                f"{r['small'].get('cpu_us', float('nan')):>10.1f} {r['one']['p50_ms']:>10.3f} "
                f"{r['one'].get('cpu_us', float('nan')):>9.0f} {r['big'].get('mib_s', 0):>11.0f} {errors:>7}"
            )
        d = results["direct"]["one"]["p50_ms"]
        g = results["gate"]
        print()
        print(f"gate added p50 latency at 1 connection: {g['one']['p50_ms'] - d:.3f} ms (target <= 0.25 ms)")
        if serve:
            print(f"serve added p50 latency at 1 connection: {results['serve']['one']['p50_ms'] - d:.3f} ms")
        if nginx:
            n = results["nginx"]
            print(f"nginx added p50 latency at 1 connection: {n['one']['p50_ms'] - d:.3f} ms")
            print(f"gate / nginx requests/s: {g['small']['rps'] / max(1.0, n['small']['rps']):.2f} (target >= 0.50)")
            print(f"CPU per request @{c}, nginx / gate: {n['small']['cpu_us'] / g['small']['cpu_us']:.2f}")
            print(
                f"gate / nginx 1 MiB throughput: {g['big'].get('mib_s', 0) / max(1.0, n['big'].get('mib_s', 1)):.2f}"
                f" (target >= 1.0)"
            )
        if serve:
            v = results["serve"]["small"]
            if nginx:
                print(
                    f"serve / nginx requests/s: {v['rps'] / max(1.0, results['nginx']['small']['rps']):.2f} "
                    f"(target >= 0.50)"
                )
            print(
                f"serve / gate requests/s: {v['rps'] / max(1.0, g['small']['rps']):.2f} (target >= 0.90); "
                f"CPU per request, gate / serve: {g['small']['cpu_us'] / v['cpu_us']:.2f}"
            )
        print(f"gate peak RSS under load: {sampler.peak / 2**20:.1f} MiB (target < 100 MiB)")
        if nginx and args.pairs:
            rounds(args.pairs, args.pair_seconds, c, [(n, p) for n, p in targets if n != "direct"], meters)
        if args.profile and PROFILE.exists():
            summarize_profile(PROFILE)
        return 0
    finally:
        for srv in (serve, before):
            if srv:
                srv.stop()
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM if p is not procs[0] or not nginx else signal.SIGQUIT)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def rounds(
    n_rounds: int, seconds: float, conns: int, targets: list[tuple[str, int]], meters: dict[str, CpuMeter]
) -> None:
    """The shared machine's load swings single runs 2x: alternate short runs of each proxy and read the
    medians of the same-round ratios (requests/s, and CPU per request, which load moves less)."""
    names = [n for n, _ in targets]
    pairs = [
        (a, b)
        for a, b in (("gate", "nginx"), ("serve", "nginx"), ("serve", "gate"), ("before", "gate"), ("serve", "before"))
        if a in names and b in names
    ]
    ratios: dict[tuple[str, str], list[float]] = {p: [] for p in pairs}
    cpu_ratios: dict[tuple[str, str], list[float]] = {p: [] for p in pairs}
    print(f"\n{n_rounds} rounds of alternating runs ({', '.join(names)}), {seconds:g} s each, {conns} connections:")
    for i in range(n_rounds):
        res = {name: run_load(None, port, "/", conns, seconds, meters[name]) for name, port in targets}
        for a, b in pairs:
            ratios[(a, b)].append(res[a]["rps"] / max(1.0, res[b]["rps"]))
            cpu_ratios[(a, b)].append(res[b]["cpu_us"] / res[a]["cpu_us"])
        print(
            f"  round {i + 1}: "
            + ", ".join(f"{n} {r['rps']:.0f} req/s ({r['cpu_us']:.1f} us/req)" for n, r in res.items())
            + "; "
            + ", ".join(f"{a}/{b} {ratios[(a, b)][-1]:.2f}" for a, b in pairs)
        )
    for a, b in pairs:
        target = {"gate": " (target >= 0.90)", "nginx": " (target >= 0.50)"}.get(b, "")
        print(
            f"{a} / {b} requests/s over {n_rounds} rounds: median {statistics.median(ratios[(a, b)]):.2f} "
            f"(min {min(ratios[(a, b)]):.2f}, max {max(ratios[(a, b)]):.2f}); by CPU per request: median "
            f"{statistics.median(cpu_ratios[(a, b)]):.2f}{target}"
        )


if __name__ == "__main__":
    sys.exit(main())
