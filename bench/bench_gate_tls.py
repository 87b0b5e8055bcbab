"""`make bench-gate-tls`: the gate's HTTPS side against nginx (and Caddy when installed), same run.

Measures, for each proxy pinned to core 0 with the load generator on core 1 and an nginx origin:
- HTTPS HTTP/1.1 keep-alive requests/s (wrk, 50 connections);
- new TLS 1.3 handshakes/s (wrk with `Connection: close`: one handshake + one request per connection);
- HTTP/2 requests/s (h2load, 10 connections x 10 concurrent streams).
The proxies: the gate's engine alone, the product (`fsctl serve` started as a user starts it, every
thread on core 0, the route added through the console API, on its self-signed fallback certificate;
`--no-product` skips it), nginx (access log on, `buffer=64k flush=1s`) and Caddy. Every proxy serves an
ECDSA P-256 certificate with the same TLS settings (TLS 1.2-1.3, OpenSSL's TLS 1.3 cipher order, X25519,
session tickets on, one TLS 1.3 ticket per handshake as the gate sends). Load goes only to 127.0.0.1
for a bounded time (`--seconds`, default 5 per run).

    .venv/bin/python bench/bench_gate_tls.py [--seconds 5] [--profile [serve]] [--no-product]
    .venv/bin/python bench/bench_gate_tls.py --micro

`--micro` measures only the gate's own Python work per HTTP/2 request, in process (an `H2Front` and
pooled upstream connections on fake transports, fed h2load-like HEADERS batches and nginx-like
responses; no TLS, no sockets): steadier than the socket runs on a shared machine, the figure to
compare code changes by (the socket runs stay the verdict).

Needs wrk, h2load (Debian nghttp2-client) and nginx; Caddy (Debian caddy) is measured when present.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import _profile  # noqa: E402 - the benches' helpers
from _load import (  # noqa: E402
    LOAD_CPU,
    ORIGIN_BODY,
    PROXY_CPU,
    CpuMeter,
    RssSampler,
    free_port,
    start_nginx,
    wait_port,
)
from bench_gate import gate_build  # noqa: E402

PROFILE = Path(tempfile.gettempdir()) / "gate-tls-profile.txt"

NGINX_TLS_PROXY = """
    upstream origin {{ server 127.0.0.1:{origin}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m;
        ssl_conf_command NumTickets 1;
        keepalive_requests 1000000;
        http2_max_requests 1000000;
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
"""

CADDYFILE = """{{
    admin off
    auto_https off
    default_sni 127.0.0.1
    storage file_system {dir}/caddy-data
}}
https://127.0.0.1:{port} {{
    tls {cert} {key}
    reverse_proxy 127.0.0.1:{origin}
}}
"""


def run_gate(port: int, upstream: str, data_dir: str) -> None:
    import uvloop

    from core.ports import CertificateBoard
    from gate.config import GateConfig
    from gate.routes import Route, RouteSpec
    from gate.server import EdgeServer
    from gate.state import ProxyState
    from gate.tls import CertSelector, start_tls_listener

    async def main() -> None:
        loop = asyncio.get_running_loop()
        state = ProxyState(GateConfig(), clock=loop.time, wall_clock=time.time)
        state.install(state.build_snapshot([Route(1, RouteSpec(host="*", upstreams=[upstream]))]))
        server = EdgeServer(state)
        selector = CertSelector(CertificateBoard(), Path(data_dir), now=time.time)
        await start_tls_listener(server, "127.0.0.1", port, selector)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.stop(1.0)

    uvloop.run(main())


# --- --micro: the per-request Python cost of the HTTP/2 path, in process ----------------------------

_H2_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Mon, 23 Nov 2026 13:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nok\n"
)


def _h2_frame(kind: int, flags: int, sid: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + sid.to_bytes(4, "big") + payload


def micro_h2(requests: int = 30_000, rounds: int = 5, streams: int = 10, access_log: bool = False) -> float:
    """Best-of-`rounds` process CPU µs per proxied request through the gate's HTTP/2 path: an `H2Front`
    and `streams` pooled upstream connections on fake transports, fed what h2load sends (batches of
    `streams` HEADERS frames, hpack-indexed after the first) and nginx-like responses, with one event
    loop iteration (the front's one flush) per batch. No TLS, no sockets, no other process. `access_log`:
    with an access-log sink that takes the batches as logbus does, then drops them."""
    import uvloop
    from _micro import _FakeTransport
    from hpack import Encoder
    from hyperframe.frame import SettingsFrame, WindowUpdateFrame

    from gate.config import GateConfig
    from gate.h2front import H2Front
    from gate.routes import Route, RouteSpec
    from gate.state import ProxyState
    from gate.upstream import UpstreamConnection

    class Out(_FakeTransport):
        def __init__(self) -> None:
            super().__init__()
            self.bytes = 0

        def write(self, data: bytes) -> None:
            self.writes += 1
            self.bytes += len(data)

    class Sink:  # takes the batches as logbus does (same thresholds), then drops them
        access_batch_lines, access_batch_chars, access_batch_s = 512, 256 * 1024, 0.1

        def record_lines(self, lines: list[str], at: float) -> None:
            pass

    async def run() -> float:
        state = ProxyState(
            GateConfig(), clock=time.monotonic, wall_clock=time.time, access_log=Sink() if access_log else None
        )
        state.install(state.build_snapshot([Route(1, RouteSpec(host="*", upstreams=["127.0.0.1:9"]))]))
        target = state.target("127.0.0.1", 9)
        ups = []
        for _ in range(streams):
            up = UpstreamConnection(state.pool, target)
            up.connection_made(_FakeTransport())  # type: ignore[arg-type]
            ups.append(up)
        state.pool.open_count[target.key] = streams
        for up in ups:
            state.pool.release(up)
        front = H2Front(state)
        out = Out()
        front.connection_made(out)  # type: ignore[arg-type]
        settings = SettingsFrame(0)
        settings.settings = {SettingsFrame.INITIAL_WINDOW_SIZE: 2**30 - 1, SettingsFrame.ENABLE_PUSH: 0}
        grow = WindowUpdateFrame(0)
        grow.window_increment = 2**30 - 1 - 65535
        front.data_received(
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + settings.serialize() + grow.serialize() + _h2_frame(4, 1, 0, b"")
        )
        enc = Encoder()
        fields = [
            (b":method", b"GET"),
            (b":path", b"/"),
            (b":scheme", b"https"),
            (b":authority", b"127.0.0.1:8443"),
            (b"accept", b"*/*"),
            (b"accept-encoding", b"gzip, deflate"),
            (b"user-agent", b"h2load nghttp2/1.52.0"),
        ]
        first, steady = enc.encode(fields), enc.encode(fields)
        sid = 1
        batches = []
        for _ in range(requests * rounds // streams + 1):
            frames = []
            for _s in range(streams):
                frames.append(_h2_frame(1, 0x5, sid, first if sid == 1 else steady))  # END_STREAM | END_HEADERS
                sid += 2
            batches.append(b"".join(frames))
        await asyncio.sleep(0)
        best = float("inf")
        it = iter(batches)
        n_batches = requests // streams
        for _ in range(rounds):
            t0 = time.process_time()
            for _ in range(n_batches):
                front.data_received(next(it))
                for up in ups:
                    up.data_received(_H2_RESPONSE)
                await asyncio.sleep(0)
            best = min(best, (time.process_time() - t0) / (n_batches * streams) * 1e6)
        if front.requests != n_batches * streams * rounds or front.streams or front.closed:
            raise SystemExit(
                f"the micro benchmark's requests were not all answered ({front.requests} requests, "
                f"{len(front.streams)} open streams, closed={front.closed})"
            )
        return best

    return uvloop.run(run())


def h2load(port: int, seconds: float, conns: int = 10, streams: int = 10) -> dict[str, float]:
    cmd = [
        "taskset",
        "-c",
        LOAD_CPU,
        "h2load",
        "-t1",
        f"-c{conns}",
        f"-m{streams}",
        f"-D{max(1, round(seconds))}",
        "--warm-up-time=1",
        f"https://127.0.0.1:{port}/",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    out = done.stdout
    res: dict[str, float] = {"rps": 0.0, "errors": 0.0}
    m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    if m:
        res["rps"] = float(m.group(1))
    m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    if m:
        res["errors"] = float(m.group(2)) + float(m.group(3))
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if m:
        res["errors"] += float(m.group(3)) + float(m.group(4))
    if not res["rps"]:
        print(f"h2load failed: {' '.join(cmd)}\n{out}{done.stderr}", file=sys.stderr)
    if "h2" not in out.split("Application protocol:", 1)[-1][:10]:
        print(f"h2load did not negotiate h2 on {port}", file=sys.stderr)
    return res


def https_wrk(port: int, conns: int, seconds: float, *, close: bool = False) -> dict[str, float]:
    if not close:
        return wrk_url(f"https://127.0.0.1:{port}/", conns, seconds, [])
    return wrk_url(f"https://127.0.0.1:{port}/", conns, seconds, ["-H", "Connection: close"])


def wrk_url(url: str, conns: int, seconds: float, extra: list[str]) -> dict[str, float]:
    cmd = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{conns}", f"-d{max(1, round(seconds))}s", *extra, url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
    out = done.stdout
    res = {"rps": 0.0, "errors": 0.0}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        res["rps"] = float(m.group(1))
    else:
        print(f"wrk failed: {' '.join(cmd)}\n{out}{done.stderr}", file=sys.stderr)
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        res["errors"] += float(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        # With Connection: close, wrk counts the server's orderly close after the response as a read error.
        res["errors"] += float(m.group(1)) + float(m.group(4))
    return res


def measured(meter: CpuMeter, seconds: float, fn, *a, **kw) -> dict[str, float]:
    """Run one load; add the proxy's CPU microseconds per request (robust to a loaded machine)."""
    before = meter.seconds()
    res = fn(*a, **kw)
    used = meter.seconds() - before
    done = res["rps"] * max(1, round(seconds))
    res["cpu_us"] = used / done * 1e6 if done else float("nan")
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument(
        "--profile",
        nargs="?",
        const="gate",
        choices=("gate", "serve"),
        help="py-spy profile of the engine (or of `fsctl serve`) during the HTTP/2 run",
    )
    ap.add_argument("--no-product", action="store_true", help="skip the `fsctl serve` runs (the engine alone)")
    ap.add_argument("--micro", action="store_true", help="only the in-process per-request Python cost of HTTP/2")
    ap.add_argument("--access-log", action="store_true", help="--micro: with an access-log sink")
    ap.add_argument("--run-gate", nargs=3, metavar=("PORT", "UPSTREAM", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run_gate:
        run_gate(int(args.run_gate[0]), args.run_gate[1], args.run_gate[2])
        return 0
    if args.micro:
        cost = micro_h2(access_log=args.access_log)
        print(f"gate HTTP/2 per-request Python cost (in process, best of 5 rounds): {cost:.2f} µs; {gate_build()}")
        return 0
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    missing = [
        t for t, p in (("wrk", shutil.which("wrk")), ("h2load", shutil.which("h2load")), ("nginx", nginx)) if not p
    ]
    if missing:
        print(f"bench-gate-tls needs {', '.join(missing)} (apt-get install wrk nghttp2-client nginx)", file=sys.stderr)
        return 2
    assert nginx is not None
    caddy = shutil.which("caddy")
    procs: list[subprocess.Popen[bytes]] = []
    serve = None
    tmp = Path(tempfile.mkdtemp(prefix="bench-gate-tls-"))
    try:
        from gate.tls import ensure_fallback

        cert, key = ensure_fallback(tmp / "certs", time.time())
        (tmp / "www").mkdir()
        (tmp / "www" / "1m").write_bytes(b"x" * (1 << 20))
        origin_port, gate_port, nginx_port, caddy_port = free_port(), free_port(), free_port(), free_port()
        procs.append(start_nginx(nginx, tmp, "origin", ORIGIN_BODY.format(port=origin_port, dir=tmp), LOAD_CPU))
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
                str(tmp / "certs"),
            ],
            cwd=ROOT,
        )
        procs.append(gate)
        wait_port(gate_port)
        procs.append(
            start_nginx(
                nginx,
                tmp,
                "proxy",
                NGINX_TLS_PROXY.format(port=nginx_port, origin=origin_port, cert=cert, key=key),
                PROXY_CPU,
                access_log=True,
            )
        )
        wait_port(nginx_port)
        targets = [("gate", gate_port), ("nginx", nginx_port)]
        meters = {"gate": CpuMeter(gate.pid), "nginx": CpuMeter(procs[-1].pid)}
        if not args.no_product:
            from _product import ProductServe

            serve = ProductServe(tmp, PROXY_CPU)
            serve.add_route({"host": "*", "upstreams": [f"127.0.0.1:{origin_port}"]})
            targets.insert(1, ("serve", serve.https_port))
            meters["serve"] = CpuMeter(serve.pid)
        if caddy:
            (tmp / "Caddyfile").write_text(
                CADDYFILE.format(port=caddy_port, origin=origin_port, cert=cert, key=key, dir=tmp)
            )
            procs.append(
                subprocess.Popen(
                    [
                        "taskset",
                        "-c",
                        PROXY_CPU,
                        caddy,
                        "run",
                        "--config",
                        str(tmp / "Caddyfile"),
                        "--adapter",
                        "caddyfile",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env={"HOME": str(tmp), "PATH": "/usr/bin:/bin", "GOMAXPROCS": "1"},
                )
            )
            wait_port(caddy_port)
            targets.append(("caddy", caddy_port))
            meters["caddy"] = CpuMeter(procs[-1].pid)
        sampler = RssSampler(gate.pid)
        s = args.seconds
        for _, port in targets:  # warm up pools
            https_wrk(port, 20, 1)
        if serve:
            serve.pin()  # threads started by the first requests: pinned too
        results: dict[str, dict[str, dict[str, float]]] = {}
        for name, port in targets:
            r: dict[str, dict[str, float]] = {}
            meter = meters[name]
            r["h1"] = measured(meter, s, https_wrk, port, 50, s)
            sampler.sample()
            r["hs"] = measured(meter, s, https_wrk, port, 50, s, close=True)
            sampler.sample()
            profiler = None
            if args.profile == name and _profile.pyspy():
                profiler = _profile.record(meter.proc.pid, PROFILE, s)
            r["h2"] = measured(meter, s, h2load, port, s)
            sampler.sample()
            if profiler:
                profiler.wait()
            results[name] = r
        print(
            f"\ngate TLS benchmark — origin nginx `return 200` on cpu {LOAD_CPU}; proxies pinned to cpu {PROXY_CPU}, "
            f"load (wrk, h2load) on cpu {LOAD_CPU}; {s:g} s per run; ECDSA P-256 certificate; load average "
            f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; gate {gate_build()}"
        )
        print(
            "gate = the engine alone; "
            + (f"serve = `fsctl serve` with default settings, every thread on cpu {PROXY_CPU}; " if serve else "")
            + "nginx = 1 worker, access log on (buffer=64k flush=1s)\n"
        )
        print(
            f"{'':8} {'HTTPS h1 req/s @50':>19} {'TLS1.3 handshakes/s':>20} {'h2 req/s 10x10':>15} {'errors':>7}"
            f"   CPU us per request: {'h1':>6} {'handshake':>9} {'h2':>6}"
        )
        for name, _ in targets:
            r = results[name]
            errors = int(sum(x["errors"] for x in r.values()))
            print(
                f"{name:8} {r['h1']['rps']:>19.0f} {r['hs']['rps']:>20.0f} {r['h2']['rps']:>15.0f} {errors:>7}"
                f"   {'':19}{r['h1']['cpu_us']:>6.0f} {r['hs']['cpu_us']:>9.0f} {r['h2']['cpu_us']:>6.0f}"
            )
        g, n = results["gate"], results["nginx"]
        print()
        print(f"gate / nginx HTTPS HTTP/1.1 req/s: {g['h1']['rps'] / max(1.0, n['h1']['rps']):.2f} (target >= 0.50)")
        print(f"gate / nginx TLS 1.3 handshakes/s: {g['hs']['rps'] / max(1.0, n['hs']['rps']):.2f} (target >= 0.50)")
        print(f"gate / nginx HTTP/2 req/s:         {g['h2']['rps'] / max(1.0, n['h2']['rps']):.2f} (target >= 0.15)")
        if serve:
            v = results["serve"]
            for k, label in (("h1", "HTTPS HTTP/1.1"), ("hs", "TLS 1.3 handshakes"), ("h2", "HTTP/2")):
                print(
                    f"serve / nginx, serve / gate {label + ' req/s:':24} {v[k]['rps'] / max(1.0, n[k]['rps']):.2f}, "
                    f"{v[k]['rps'] / max(1.0, g[k]['rps']):.2f} (targets >= 0.50, >= 0.90); CPU per request, "
                    f"gate / serve: {g[k]['cpu_us'] / v[k]['cpu_us']:.2f}"
                )
        if "caddy" in results:
            c = results["caddy"]
            print(f"gate / caddy HTTP/2 req/s:         {g['h2']['rps'] / max(1.0, c['h2']['rps']):.2f} (target >= 1.0)")
        for k, label in (("h1", "HTTPS HTTP/1.1"), ("hs", "TLS 1.3 handshake"), ("h2", "HTTP/2")):
            print(f"CPU per request, nginx / gate, {label}: {n[k]['cpu_us'] / g[k]['cpu_us']:.2f}")
        print(f"gate peak RSS: {sampler.peak / 2**20:.1f} MiB")
        if args.profile and PROFILE.exists():
            print("\n" + _profile.summarize(PROFILE))
        return 0
    finally:
        if serve:
            serve.stop()
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGQUIT if p.args and "nginx" in str(p.args) else signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
