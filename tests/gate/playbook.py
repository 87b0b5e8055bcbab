"""A conversation harness for the gate's HTTP/1.1 shells (after mitmproxy's `Playbook`): bytes in on fake
transports, bytes out on both sides, no sockets and no sleeps. Only the OS is faked (transports, the
dialer, the clock); the connection classes, exchange, pool and parsers are the real gate."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from gate.config import GateConfig
from gate.proxy import ClientConnection
from gate.routes import Route, RouteSpec
from gate.state import ProxyState
from gate.upstream import UpstreamConnection

ORIGIN = ("10.9.9.9", 8080)


class FakeTransport(asyncio.Transport):
    """What the kernel side of a TCP connection would do, recorded: writes, pauses, closes."""

    def __init__(self, peer: tuple[str, int] = ("203.0.113.7", 50000)) -> None:
        super().__init__()
        self.peer = peer
        self.written = bytearray()
        self.reading = True
        self.closed = False
        self.aborted = False
        self.eof_written = False
        self.protocol: Any = None

    def take(self) -> bytes:
        out = bytes(self.written)
        self.written.clear()
        return out

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "write after close"
        self.written += data

    def writelines(self, list_of_data: Any) -> None:
        for d in list_of_data:
            self.write(d)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.protocol.connection_lost(None)

    def abort(self) -> None:
        self.aborted = True
        self.close()

    def is_closing(self) -> bool:
        return self.closed


class _Loop(asyncio.SelectorEventLoop):
    """An event loop whose dialer connects to fake transports (the gate's `UpstreamPool.open` calls it)."""

    def __init__(self) -> None:
        super().__init__()
        self.dialed: list[FakeTransport] = []
        self.refuse = False

    async def create_connection(
        self, protocol_factory: Callable[[], Any], host: Any = None, port: Any = None, **kw: Any
    ) -> Any:
        if self.refuse:
            raise ConnectionRefusedError(111, "Connection refused")
        proto = protocol_factory()
        t = FakeTransport((host, port))
        t.protocol = proto
        proto.connection_made(t)
        self.dialed.append(t)
        return t, proto


class Conversation:
    """One gate with one route to a fake origin, and a client connection to it."""

    def __init__(self, *, spec: dict[str, Any] | None = None, config: dict[str, Any] | None = None) -> None:
        self.now = 1000.0
        self.loop = _Loop()
        asyncio.set_event_loop(self.loop)
        self.state = ProxyState(
            GateConfig(**(config or {})), clock=lambda: self.now, wall_clock=lambda: 1.7e9, timer=lambda: self.now
        )
        route = RouteSpec(**{"host": "app.test", "upstreams": [f"{ORIGIN[0]}:{ORIGIN[1]}"], **(spec or {})})
        self.state.install(self.state.build_snapshot([Route(1, route)]))
        self.client_t = FakeTransport()
        self.client = ClientConnection(self.state)
        self.client_t.protocol = self.client
        self.client.connection_made(self.client_t)

    def close(self) -> None:
        self.loop.run_until_complete(self.state.tasks.close(1.0))
        self.loop.close()
        asyncio.set_event_loop(None)

    # --- driving --------------------------------------------------------------------------------------

    def run(self, fn: Callable[[], object]) -> None:
        """Call `fn` on the loop (as a protocol callback would be), then run what the gate spawned (dials,
        file reads) until nothing is ready: loop turns, no waiting."""

        async def turn() -> None:
            fn()
            for _ in range(8):
                await asyncio.sleep(0)

        self.loop.run_until_complete(turn())

    def settle(self) -> None:
        self.run(lambda: None)

    def send(self, data: bytes) -> None:
        self.run(lambda: self.client.data_received(data))

    def upstreams(self) -> list[FakeTransport]:
        return self.loop.dialed

    def upstream(self, i: int = -1) -> FakeTransport:
        return self.loop.dialed[i]

    def reply(self, data: bytes, i: int = -1) -> None:
        up = self.loop.dialed[i]
        self.run(lambda: up.protocol.data_received(data))

    def upstream_closes(self, i: int = -1) -> None:
        self.run(self.loop.dialed[i].close)

    def pooled(self) -> UpstreamConnection:
        """Put an already-used keep-alive connection in the pool (as after an earlier request)."""
        t = self.state.target(*ORIGIN)
        conn = UpstreamConnection(self.state.pool, t)
        ft = FakeTransport(ORIGIN)
        ft.protocol = conn
        conn.connection_made(ft)
        self.state.pool.open_count[t.key] = self.state.pool.open_count.get(t.key, 0) + 1
        conn.requests = 1
        self.state.pool.release(conn)
        self.loop.dialed.append(ft)
        return conn

    def advance(self, seconds: float) -> None:
        """The sweeper's view of time passing: deadlines are acted on."""
        self.now += seconds
        self.run(lambda: self.client.check_timeouts(self.now))

    def received(self) -> bytes:
        return self.client_t.take()

    def sent_upstream(self, i: int = -1) -> bytes:
        return self.loop.dialed[i].take()
