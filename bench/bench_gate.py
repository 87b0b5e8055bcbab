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
        [--threads] [--no-product] [--before DIR]
    .venv/bin/python bench/bench_gate.py --micro [--access-log | --logbus] [--body BYTES]

`--micro` measures only the gate's own Python work per request, in process: a `ClientConnection` and a
pooled `UpstreamConnection` on fake transports, fed a wrk-like GET and an nginx-like response (no
sockets, no system calls, no other process). Steadier than the socket runs on a shared machine; it
is the figure to compare code changes by (the socket runs stay the verdict). `--access-log` adds a
null access-log sink (the line is rendered, then dropped); `--logbus` a real `LogbusService` on a temp
dir, whose writer thread's CPU counts too.

Parts: bench/_load.py (origin, nginx, wrk, CPU meters), bench/_micro.py (`--micro`), bench/_product.py
(`fsctl serve` as a user starts it), bench/_profile.py (py-spy, and `--threads`: each thread's CPU and
wake-ups from /proc during serve's run).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROFILE = Path(tempfile.gettempdir()) / "gate-profile.txt"
sys.path.insert(0, str(ROOT / "bench"))

import _profile  # noqa: E402 - the bench's own helpers, beside it
from _load import (  # noqa: E402
    LOAD_CPU,
    ORIGIN_BODY,
    PROXY_BODY,
    PROXY_CPU,
    CpuMeter,
    RssSampler,
    free_port,
    run_load,
    run_origin,
    start_nginx,
    wait_port,
    wrk,
)
from _micro import micro  # noqa: E402


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
    ap.add_argument(
        "--threads", action="store_true", help="per-thread CPU and wake-ups of `fsctl serve` during its run"
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
        threads_report: list[str] = []
        for name, port in targets:
            if args.profile == name and _profile.pyspy():
                profiler = _profile.record(meters[name].proc.pid, PROFILE, s)
            per_thread = _profile.threads(meters[name].proc.pid) if args.threads and name == "serve" else None
            t0 = time.monotonic()
            results[name] = {
                "small": run_load(sampler if name == "gate" else None, port, "/", c, s, meters.get(name)),
            }
            if per_thread is not None:
                pid = meters[name].proc.pid
                threads_report = _profile.thread_delta(
                    per_thread, _profile.threads(pid), time.monotonic() - t0, _profile.thread_names(pid)
                )
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
        if threads_report:
            print(f"\n`fsctl serve`'s threads during its {s:g} s run at {c} connections:")
            print("\n".join(threads_report))
        if nginx and args.pairs:
            rounds(args.pairs, args.pair_seconds, c, [(n, p) for n, p in targets if n != "direct"], meters)
        if args.profile and PROFILE.exists():
            print("\n" + _profile.summarize(PROFILE))
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
