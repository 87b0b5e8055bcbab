"""`bench_gate.py --micro`: the gate's own Python work per proxied HTTP/1.1 request, in process, on fake
transports (no sockets, no system calls, no other process), alone or with an access-log sink or logbus."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path


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
