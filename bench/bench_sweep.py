"""The gate's timeout sweeper at many idle keep-alive connections: the longest loop step it causes.

The gate (engine, in this process, with a minimal origin on the same loop) gets `--conns` keep-alive
connections from a child process (one GET each, then idle); a probe task measures how late a 1 ms sleep
wakes (the loop's longest step) while the sweeper walks them, and then while their keep-alive timeout
expires and the sweeper closes them. Loopback only, bounded in connections and time.

    .venv/bin/python bench/bench_sweep.py [--conns 10000] [--keepalive 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CLIENT = r"""
import asyncio, sys
async def main(port, n):
    conns = []
    sem = asyncio.Semaphore(200)
    async def one():
        async with sem:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"GET / HTTP/1.1\r\nHost: sweep\r\n\r\n")
            await r.readuntil(b"ok\n")
            conns.append((r, w))
    await asyncio.gather(*(one() for _ in range(n)))
    print("ready", len(conns), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""


class Lag:
    """How late a 1 ms sleep wakes: the longest time the loop spent in one step (of the others' work)."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            self.lags.append(time.perf_counter() - t - 0.001)

    def start(self) -> None:
        self.lags = []
        self.task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> str:
        assert self.task is not None
        self.task.cancel()
        lags = sorted(self.lags) or [0.0]
        return (
            f"max {lags[-1] * 1000:.1f} ms, p99 {lags[int(len(lags) * 0.99)] * 1000:.1f} ms, "
            f"steps > 20 ms: {sum(x > 0.02 for x in lags)}, > 50 ms: {sum(x > 0.05 for x in lags)} "
            f"({len(lags)} probes)"
        )


async def main(conns: int, keepalive: float) -> None:
    from gate.config import GateConfig
    from gate.routes import Route, RouteSpec
    from gate.server import EdgeServer
    from gate.state import ProxyState

    loop = asyncio.get_running_loop()

    class Origin(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t = transport

        def data_received(self, data: bytes) -> None:
            for _ in range(data.count(b"\r\n\r\n")):
                self.t.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")  # type: ignore[attr-defined]

    origin = await loop.create_server(Origin, "127.0.0.1", 0)
    origin_port = origin.sockets[0].getsockname()[1]
    config = GateConfig(keepalive_timeout_s=keepalive, header_timeout_s=600)
    state = ProxyState(config, clock=loop.time, wall_clock=time.time)
    state.install(state.build_snapshot([Route(1, RouteSpec(host="*", upstreams=[f"127.0.0.1:{origin_port}"]))]))
    server = EdgeServer(state)
    port = await server.listen("127.0.0.1", 0)
    lag = Lag()
    t0 = time.monotonic()
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, str(port), str(conns), stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 300)
        print(f"{line.decode().strip()} after {time.monotonic() - t0:.1f} s; gate holds {len(state.clients)}")
        lag.start()
        await asyncio.sleep(min(4.0, keepalive / 2))
        print(f"idle, sweeps walking {len(state.clients)} connections: {lag.stop()}")
        t = time.perf_counter()
        if hasattr(server, "sweep_once"):
            slices = await server.sweep_once()
            print(f"one pass (sliced): {(time.perf_counter() - t) * 1000:.1f} ms wall in {slices} slices")
        else:
            now = state.clock()
            for conn in list(state.clients):
                conn.check_timeouts(now)
            print(f"one pass (whole): {(time.perf_counter() - t) * 1000:.1f} ms in one step")
        lag.start()
        for _ in range(int((keepalive + 30) / 0.05)):  # bounded: until the gate closed them all
            if not state.clients:
                break
            await asyncio.sleep(0.05)
        print(f"keep-alive expiry (sweeps closing them; {len(state.clients)} left): {lag.stop()}")
    finally:
        if child.returncode is None:
            child.kill()
        await child.wait()
        await server.stop(1.0)
        origin.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conns", type=int, default=10_000)
    ap.add_argument("--keepalive", type=float, default=30.0, help="the gate's keep-alive timeout, s")
    args = ap.parse_args()
    import uvloop

    from gate import accel

    print(f"gate build: {'compiled' if accel.reason() is None else 'pure Python'}; load {os.getloadavg()[0]:.1f}")
    uvloop.run(main(args.conns, args.keepalive))
