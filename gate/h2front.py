"""The HTTP/2 front end: a sans-IO `h2` connection driven by a thin `asyncio.Protocol`, each stream a
downstream of the same `Exchange` the HTTP/1.1 proxy uses, so streams are proxied independently to
pooled HTTP/1.1 upstream connections.

Theory of operation:
- The sans-IO connection is `gate._h2conn.GateH2Connection`: h2's `H2Connection` with the per-frame
  and per-field work the gate does not need taken out (a stateless, cached HPACK encoder, a lean
  decoder, response frames written as bytes); h2's state machines, flow-control windows, frame
  buffer and limits are unchanged.
- Bytes in → `h2.receive_data` → events → streams. Output is never written per frame: streams queue
  response headers and body pieces, mark themselves dirty, and one `_flush` per loop iteration
  (scheduled with `call_soon`) moves what each stream's send window allows into h2 and writes
  `data_to_send()` with one `transport.write`.
- Flow control both ways. Request bodies: received DATA is acknowledged (WINDOW_UPDATE) only while
  the stream is not paused, i.e. while the upstream takes bytes; when the exchange pauses the stream
  (upstream write buffer full, or body buffered before the upstream is attached) the bytes stay
  unacknowledged, so the client can have at most one stream window in flight. Response bodies: what
  the client's window does not admit waits in the stream; past the high-water mark the stream pauses
  its upstream's reading and resumes it under the low-water mark; the TLS transport's own
  `pause_writing` pauses every stream's upstream.
- Errors: a request the gate refuses (including a malformed header block) gets its error page on its
  stream; an upstream failure after the response head is out resets the stream with INTERNAL_ERROR;
  a framing error found by h2 ends the connection with GOAWAY (h2 builds it). Rapid resets and
  floods of PING / SETTINGS / PRIORITY / empty DATA frames exhaust a budget and end the connection
  with GOAWAY(ENHANCE_YOUR_CALM); CONTINUATION floods and oversized header lists are refused by h2
  itself (its 64-frame backlog; the decoder's header-list limit, `max_header_bytes`).
- Shutdown (`drain`): a GOAWAY(NO_ERROR) naming the last stream we accept is written without moving
  h2's state machine to CLOSED (so in-flight streams keep flowing); later streams are refused with
  REFUSED_STREAM; the connection closes once the last stream is done.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    PingReceived,
    PriorityUpdated,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes, Settings
from hyperframe.frame import GoAwayFrame

from gate._h2conn import GateH2Connection
from gate._h2rules import FloodBudget, h2_request
from gate._h2stream import H2Stream
from gate.exchange import Exchange
from gate.h1 import HttpError
from gate.pages import error_page
from gate.state import ProxyState

log = structlog.get_logger("gate.h2")

MAX_CONCURRENT_STREAMS = 100
STREAM_WINDOW = 256 * 1024
CONNECTION_WINDOW = 1024 * 1024
RESET_RATE_PER_S, RESET_BURST = 100.0, 200
FRAMES_PER_TURN = 32  # HTTP/2 frames handled per loop iteration (see `H2Front.data_received`)
PREFACE_BYTES = 24  # the client connection preface, before the first frame
CONTROL_RATE_PER_S, CONTROL_BURST = 200.0, 1000


class H2Front(asyncio.Protocol):
    """One HTTP/2 client connection (after ALPN chose h2)."""

    def __init__(self, state: ProxyState) -> None:
        self.state = state
        self.config = state.config
        self.high_water = state.config.high_water_bytes
        self.low_water = state.config.low_water_bytes
        self.transport: asyncio.Transport | None = None
        self.h2 = GateH2Connection()
        self.h2.local_settings = Settings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
                SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                SettingCodes.MAX_HEADER_LIST_SIZE: state.config.max_header_bytes,
            },
        )
        self.h2.decoder.max_header_list_size = state.config.max_header_bytes
        self.streams: dict[int, H2Stream] = {}
        self.dirty: list[H2Stream] = []
        self.client_ip = "-"
        self.trusted = False
        self.scheme = "https"
        self.write_paused = False
        self.closing = False
        self.closed = False
        self.goaway_last: int | None = None  # last stream id accepted once draining
        self._tail = b""  # a GOAWAY to write after h2's own bytes
        self._backlog = b""  # received bytes not handled yet (see `data_received`)
        self._scan = (PREFACE_BYTES, b"")  # where the next frame starts: see `frame_cut`
        self._scheduled = False
        self.deadline = 0.0
        self.write_deadline = 0.0
        self.resets = FloodBudget(RESET_RATE_PER_S, RESET_BURST)
        self.control = FloodBudget(CONTROL_RATE_PER_S, CONTROL_BURST)
        self.requests = 0
        self.out: list[bytes] = []  # (for tools that sum pending output across connections)

    # --- asyncio.Protocol -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.client_ip = str(peer[0]) if isinstance(peer, tuple) and peer else "local"
        if self.client_ip.startswith("::ffff:"):
            self.client_ip = self.client_ip[7:]
        self.trusted = self.state.is_trusted(self.client_ip)
        # (TCP_NODELAY is already set on every TCP transport by uvloop and by asyncio's own loop.)
        transport.set_write_buffer_limits(self.high_water, self.low_water)  # type: ignore[attr-defined]
        st = self.state
        st.clients.add(self)
        st.metrics.connection_opened()
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self.deadline = st.clock() + self.config.header_timeout_s
        if st.draining:
            self.drain()
        self.schedule_flush()

    def data_received(self, data: bytes) -> None:
        # At most FRAMES_PER_TURN frames are handled per loop iteration: h2 parses all it is given before
        # the first event is handled, and one read can hold thousands of small frames (a rapid-reset
        # burst: ~100 ms of h2 parsing). The rest waits, reading paused, for the next iteration, so other
        # connections' events interleave and a flood is cut off (GOAWAY) a few frames past its budget.
        # Bulk DATA (16 KiB frames) is not cut: a read holds few frames.
        if self._backlog:
            self._backlog += data
            return
        cut, self._scan = frame_cut(data, self._scan, FRAMES_PER_TURN)
        if cut < len(data):
            self._backlog = data[cut:]
            data = data[:cut]
            if self.transport is not None:
                self.transport.pause_reading()
            asyncio.get_running_loop().call_soon(self._continue)
        self._receive(data)

    def _continue(self) -> None:
        data = self._backlog
        self._backlog = b""
        if self.closed or self.transport is None:
            return
        cut, self._scan = frame_cut(data, self._scan, FRAMES_PER_TURN)
        if cut < len(data):
            self._backlog = data[cut:]
            data = data[:cut]
            asyncio.get_running_loop().call_soon(self._continue)
        else:
            self.transport.resume_reading()
        self._receive(data)

    def _receive(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            events = self.h2.receive_data(data)
        except ProtocolError as e:
            self.state.metrics.count_protocol_error()
            log.info("http/2 protocol error; closing", client_ip=self.client_ip, error=str(e) or type(e).__name__)
            self._fatal()
            return
        for ev in events:
            try:
                if not self._dispatch(ev):
                    return
            except Exception as e:  # a bug handling one event must not take the connection down with it
                log.error("http/2 event handling failed", error=repr(e), exc_info=e, client_ip=self.client_ip)
                st = self.streams.get(getattr(ev, "stream_id", 0) or 0)
                if st is not None:
                    st.abort()
                    if st.ex is not None and not st.ex.finished:
                        st.ex.on_client_lost()
                else:
                    self._close_after_flush()
                    return
        self.schedule_flush()

    def _dispatch(self, ev: object) -> bool:
        """Handle one h2 event; False when the connection is being closed."""
        t = type(ev)
        if t is DataReceived:
            self._on_data(ev)  # type: ignore[arg-type]
            if self.closed:
                return False
        elif t is RequestReceived:
            self._on_request(ev)  # type: ignore[arg-type]
        elif t is StreamEnded:
            s = self.streams.get(ev.stream_id)  # type: ignore[attr-defined]
            if s is not None:
                self._on_request_end(s)
        elif t is WindowUpdated:
            sid = ev.stream_id  # type: ignore[attr-defined]
            if sid:
                s = self.streams.get(sid)
                if s is not None:
                    self.mark(s)
            else:
                self.dirty.extend(s for s in self.streams.values() if s.out)
        elif t is StreamReset:
            self._on_reset(ev)  # type: ignore[arg-type]
            if self.closed:
                return False
        elif t is TrailersReceived:
            self._on_trailers(ev)  # type: ignore[arg-type]
        elif t is PingReceived or t is RemoteSettingsChanged or t is PriorityUpdated:
            if not self.control.take(self.state.clock()):
                self._calm("control frame flood")
                return False
            if t is RemoteSettingsChanged:
                self.dirty.extend(self.streams.values())
        elif t is ConnectionTerminated:
            self.closing = True  # the client is going away: finish what is in flight, accept nothing new
            if not self.streams:
                self._close_after_flush()
        return True

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        st = self.state
        st.clients.discard(self)
        st.metrics.connection_closed()
        for s in list(self.streams.values()):
            s.connection_gone()
            if s.ex is not None:
                s.ex.on_client_lost()
        self.streams.clear()
        self.dirty.clear()
        if st.drained is not None and not st.clients:
            st.drained.set()

    def pause_writing(self) -> None:
        self.write_paused = True
        self.write_deadline = self.state.clock() + self.config.send_timeout_s
        for s in self.streams.values():
            s.pressure()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.write_deadline = 0.0
        for s in list(self.streams.values()):
            s.pressure()

    # --- events -------------------------------------------------------------------------------------

    def _on_request(self, ev: RequestReceived) -> None:
        sid = ev.stream_id
        assert sid is not None and ev.headers is not None
        if self.goaway_last is not None and sid > self.goaway_last:
            self.h2.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
            return
        st = self.state
        self.requests += 1
        self.deadline = 0.0
        ended = ev.stream_ended is not None
        # (`up_paused`: the exchange pauses a fresh upstream itself while we cannot write.)
        s = H2Stream(self, sid, req_ended=ended, up_paused=self.write_paused, now=st.clock())
        self.streams[sid] = s
        c = self.config
        try:
            method, headers, info = h2_request(
                ev.headers, ended=ended, max_count=c.max_header_count, max_path_bytes=c.max_request_line_bytes
            )
        except HttpError as e:
            st.metrics.count_protocol_error()
            rid = st.request_id()
            body, ctype = error_page(e.status, e.message, rid, code=e.code)
            s.send_simple(
                e.status, body, ctype, keep_alive=True, headers=[(b"x-request-id", rid.encode())], head_only=False
            )
            s.answered()
            log.info(
                "refused request",
                status=e.status,
                reason=e.message,
                client_ip=self.client_ip,
                request_id=rid,
                protocol="HTTP/2",
            )
            return
        ex = Exchange(s, method, "2", headers, info, True, ended)
        s.attach(ex)
        ex.start()

    def _on_request_end(self, s: H2Stream) -> None:
        s.request_ended()
        ex = s.ex
        if ex is not None and not ex.req_ended:
            ex.on_request_end()

    def _on_data(self, ev: DataReceived) -> None:
        sid = ev.stream_id
        n = ev.flow_controlled_length or 0
        if not n and ev.stream_ended is None and not self.control.take(self.state.clock()):
            self._calm("empty DATA frame flood")  # frames that carry nothing but cost us a parse each
            return
        s = self.streams.get(sid)
        ex = s.ex if s is not None else None
        if s is None or ex is None or s.closed:
            if n:
                self.ack(sid, n)
            return
        s.data_arrived(self.state.clock())
        if ev.data:
            ex.on_request_body(ev.data)
        if s.closed:
            return
        if s.paused:
            s.hold_ack(n)
        elif n:
            self.ack(sid, n)

    def _on_trailers(self, ev: TrailersReceived) -> None:
        """Request trailers: handed to the exchange (it forwards them as chunked trailers, at the stream's
        end, when the body is chunked upstream)."""
        s = self.streams.get(ev.stream_id)
        if s is None or s.ex is None:
            return
        s.ex.on_request_trailers(list(ev.headers or ()))

    def _on_reset(self, ev: StreamReset) -> None:
        s = self.streams.get(ev.stream_id)
        if s is None:
            return
        unfinished = not s.response_done_
        s.gone()
        if s.ex is not None and not s.ex.finished:
            s.ex.on_client_lost()
        if unfinished and not self.resets.take(self.state.clock()):
            self._calm("rapid reset")

    # --- output ---------------------------------------------------------------------------------------

    def mark(self, s: H2Stream) -> None:
        self.dirty.append(s)

    def schedule_flush(self) -> None:
        if not self._scheduled and not self.closed:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def ack(self, sid: int, n: int) -> None:
        try:
            self.h2.acknowledge_received_data(n, sid)
        except ProtocolError:
            pass
        self.schedule_flush()

    def forget(self, s: H2Stream) -> None:
        if self.streams.get(s.sid) is s:
            del self.streams[s.sid]
            self.h2.retire(s.sid)
            if not self.streams:
                self.deadline = self.state.clock() + self.config.keepalive_timeout_s
                if self.closing:
                    self._close_after_flush()

    def _flush(self) -> None:
        self._scheduled = False
        if self.closed or self.transport is None:
            return
        dirty = self.dirty
        if dirty:
            self.dirty = []
            seen: set[int] = set()
            for s in dirty:
                if id(s) not in seen:
                    seen.add(id(s))
                    s.pump()
        data = self.h2.data_to_send()
        if self._tail:
            data += self._tail
            self._tail = b""
        if data:
            self.transport.write(data)
        if self.closing and not self.streams:
            self._close_after_flush()

    def _close_after_flush(self) -> None:
        if self.transport is not None and not self.closed:
            data = self.h2.data_to_send() + self._tail
            self._tail = b""
            if data:
                self.transport.write(data)
            self.closed = True
            self.transport.close()

    def _goaway_frame(self, last: int, code: int) -> bytes:
        f = GoAwayFrame(0)
        f.last_stream_id = last
        f.error_code = code
        return f.serialize()

    def _fatal(self) -> None:
        """h2 has queued a GOAWAY for a protocol error: send it and close."""
        self._close_after_flush()

    def _calm(self, why: str) -> None:
        self.state.metrics.count_protocol_error()
        log.warning("http/2 flood; closing", reason=why, client_ip=self.client_ip)
        try:
            self.h2.close_connection(ErrorCodes.ENHANCE_YOUR_CALM)
        except ProtocolError:
            pass
        self._close_after_flush()

    # --- timeouts, draining, closing -------------------------------------------------------------------

    def check_timeouts(self, now: float) -> None:
        if self.write_deadline and now >= self.write_deadline:
            self.state.metrics.count_timeout()
            log.info("client stopped reading; closing", client_ip=self.client_ip, protocol="HTTP/2")
            self.abort()
            return
        if self.deadline and now >= self.deadline and not self.streams:
            self.deadline = 0.0
            self.drain()
            return
        body_limit = self.config.body_timeout_s
        for s in list(self.streams.values()):
            ex = s.ex
            if ex is None:
                continue
            if not s.req_ended and not s.paused and now - s.last_data > body_limit and not ex.finished:
                self.state.metrics.count_timeout()
                ex.on_request_aborted(HttpError(408, "the request body stalled"))
                continue
            ex.check_timeouts(now)

    def drain(self) -> None:
        """Shutdown or idle: GOAWAY(NO_ERROR) naming the last accepted stream; finish what is in flight."""
        if self.closed:
            return
        if self.goaway_last is None:
            self.goaway_last = self.h2.highest_inbound_stream_id
            self._tail += self._goaway_frame(self.goaway_last, ErrorCodes.NO_ERROR)
        self.closing = True
        if not self.streams:
            self._close_after_flush()
        else:
            self.schedule_flush()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.closed = True
            self.transport.abort()

    def __repr__(self) -> str:  # pragma: no cover
        return f"<H2Front {self.client_ip} streams={len(self.streams)}>"


__all__: list[Any] = ["H2Front", "H2Stream"]


def frame_cut(data: bytes, scan: tuple[int, bytes], limit: int) -> tuple[int, tuple[int, bytes]]:
    """Where to cut `data` so that at most `limit` HTTP/2 frames start before the cut (`len(data)` when
    fewer do), following frame lengths across reads. `scan` is (bytes of the current frame, or of the
    connection preface, still to come; the start of a frame header split across reads); the second
    value returned is the scan state after the cut. Pure: only frame headers' lengths are read."""
    n = len(data)
    skip, head = scan
    i = 0
    frames = 0
    if head:
        h = head + data[: 9 - len(head)]
        if len(h) < 9:
            return n, (0, h)
        i = 9 - len(head) + ((h[0] << 16) | (h[1] << 8) | h[2])
        frames = 1
    else:
        i = skip
    while i < n:
        if frames >= limit:
            return i, (0, b"")
        if i + 9 > n:
            return n, (0, data[i:])
        i += 9 + ((data[i] << 16) | (data[i + 1] << 8) | data[i + 2])
        frames += 1
    return n, (i - n, b"")
