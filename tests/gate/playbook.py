"""A conversation harness for the gate's HTTP/1.1 and HTTP/2 shells (after mitmproxy's `Playbook`): bytes
in on fake transports, bytes out on both sides, no sockets and no sleeps. Only the OS is faked
(transports, the dialer, the clock); the connection classes, exchange, pool and parsers are the real
gate. The HTTP/2 client side is the `h2` library, making and reading real frames."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
import h2.events
from h2.settings import SettingCodes

from gate.config import GateConfig
from gate.h2front import H2Front
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
        self._gate(spec, config)
        self.client_t = FakeTransport()
        self.client = ClientConnection(self.state)
        self.client_t.protocol = self.client
        self.client.connection_made(self.client_t)

    def _gate(self, spec: dict[str, Any] | None, config: dict[str, Any] | None) -> None:
        self.now = 1000.0
        self.loop = _Loop()
        asyncio.set_event_loop(self.loop)
        self.state = ProxyState(
            GateConfig(**(config or {})), clock=lambda: self.now, wall_clock=lambda: 1.7e9, timer=lambda: self.now
        )
        route = RouteSpec(**{"host": "app.test", "upstreams": [f"{ORIGIN[0]}:{ORIGIN[1]}"], **(spec or {})})
        self.state.install(self.state.build_snapshot([Route(1, route)]))

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


class H2StreamSeen:
    """What the HTTP/2 client saw on one stream."""

    def __init__(self) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.data = b""
        self.trailers: dict[bytes, bytes] = {}
        self.ended = False
        self.reset: int | None = None  # the error code of a RST_STREAM from the gate

    @property
    def status(self) -> int:
        return int(self.headers.get(b":status", b"0"))


class H2Conversation(Conversation):
    """The same gate, with an HTTP/2 client connection (`H2Front`, as after ALPN chose h2) driven by an
    `h2` client: requests are made with h2's API, frames go in as bytes, and what comes back is read by
    h2 into per-stream records. Received DATA is acknowledged as a client would, and request bodies are
    sent as far as the gate's flow-control windows allow (the rest as its WINDOW_UPDATEs arrive)."""

    def __init__(self, *, spec: dict[str, Any] | None = None, config: dict[str, Any] | None = None) -> None:
        self._gate(spec, config)
        self.client_t = FakeTransport()
        self.front = H2Front(self.state)
        self.client_t.protocol = self.front
        self.run(lambda: self.front.connection_made(self.client_t))
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.h2.initiate_connection()
        self.seen: dict[int, H2StreamSeen] = {}
        self.events: list[h2.events.Event] = []
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.bodies: dict[int, list[Any]] = {}  # stream → [bytes still to send, end the stream after]
        self.exchange()

    def exchange(self) -> None:
        """Move bytes both ways until neither side has anything more to say (loop turns, no waiting)."""
        for _ in range(64):
            self._pump_bodies()
            out = self.h2.data_to_send()
            if out:
                self.run(lambda out=out: self.front.data_received(out))
            else:
                self.settle()
            got = self.client_t.take()
            if not got and not out:
                return
            if got:
                self._read(got)

    def _read(self, data: bytes) -> None:
        for ev in self.h2.receive_data(data):
            self.events.append(ev)
            sid = getattr(ev, "stream_id", None)
            s = self.seen.setdefault(sid, H2StreamSeen()) if sid else None
            if isinstance(ev, h2.events.ResponseReceived) and s is not None:
                s.headers = dict(ev.headers)
            elif isinstance(ev, h2.events.DataReceived) and s is not None:
                s.data += ev.data
                if ev.flow_controlled_length:
                    self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.TrailersReceived) and s is not None:
                s.trailers = dict(ev.headers)
            elif isinstance(ev, h2.events.StreamEnded) and s is not None:
                s.ended = True
            elif isinstance(ev, h2.events.StreamReset) and s is not None:
                s.reset = ev.error_code
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway = ev

    def _pump_bodies(self) -> None:
        for sid, pending in list(self.bodies.items()):
            data, end = pending
            window = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
            while data and window > 0:
                piece, data = data[:window], data[window:]
                self.h2.send_data(sid, piece, end_stream=end and not data)
                window = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
            pending[0] = data
            if not data:
                del self.bodies[sid]

    # --- the client's moves -----------------------------------------------------------------------------

    def request(
        self,
        sid: int,
        method: str = "GET",
        path: str = "/x",
        *,
        end: bool = True,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> None:
        head = [(":method", method), (":path", path), (":scheme", "https"), (":authority", "app.test"), *extra]
        self.h2.send_headers(sid, [(k.encode(), v.encode()) for k, v in head], end_stream=end)
        self.exchange()

    def body(self, sid: int, data: bytes, *, end: bool = True) -> None:
        """Send `data` on `sid` as the windows allow; the rest goes as the gate opens them."""
        if data:
            self.bodies[sid] = [data, end]
        elif end:
            self.h2.end_stream(sid)
        self.exchange()

    def trailers(self, sid: int, fields: list[tuple[str, str]]) -> None:
        self.h2.send_headers(sid, [(k.encode(), v.encode()) for k, v in fields], end_stream=True)
        self.exchange()

    def open_streams(self, n: int, first: int = 1) -> None:
        """Open `n` streams (GET, no body) in one write, past the gate's MAX_CONCURRENT_STREAMS if `n`
        is: as a hostile client would, the h2 client is made to ignore the limit the gate announced."""
        limits = self.h2.remote_settings._settings  # h2 keeps no public way to disobey its peer
        limits[SettingCodes.MAX_CONCURRENT_STREAMS] = collections.deque([2**31 - 1])
        head = [(b":method", b"GET"), (b":path", b"/x"), (b":scheme", b"https"), (b":authority", b"app.test")]
        for i in range(n):
            self.h2.send_headers(first + 2 * i, head, end_stream=True)
        self.exchange()

    def reset(self, sid: int, code: int = 8) -> None:  # 8: CANCEL
        self.h2.reset_stream(sid, code)
        self.exchange()

    def reply(self, data: bytes, i: int = -1) -> None:
        super().reply(data, i)
        self.exchange()

    def upstream_closes(self, i: int = -1) -> None:
        super().upstream_closes(i)
        self.exchange()
