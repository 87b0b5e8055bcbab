"""One HTTP/2 stream as the downstream of an `Exchange`: response headers and body queued here and
moved into h2 by `pump` as far as the send windows allow (called from the connection's one flush per
loop iteration); upstream reading paused past the high-water mark and resumed under the low-water
mark; request-body acknowledgements held back while the exchange has paused reading (see
`gate.h2front` for the whole picture)."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

import structlog
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError

from gate._h2rules import h2_response_headers, h2_trailers
from gate.h1 import ResponseFraming

if TYPE_CHECKING:
    from gate.downstream import UpstreamLink
    from gate.exchange import Exchange
    from gate.h2front import H2Front
    from gate.state import ProxyState

log = structlog.get_logger("gate.h2")


class H2Stream:
    """One request/response on an HTTP/2 connection: the downstream an `Exchange` writes to."""

    __slots__ = (
        "_writable",
        "closed",
        "conn",
        "ex",
        "headers_out",
        "last_data",
        "out",
        "out_size",
        "paused",
        "req_ended",
        "response_done_",
        "sent_end",
        "sid",
        "trailers",
        "unacked",
        "up_paused",
        "want_end",
    )

    scheme = "https"
    closing = False  # per-stream: never asks an exchange to close anything but itself
    h1_heads = False  # response heads become HTTP/2 header lists (see `gate.downstream.Downstream`)

    def __init__(
        self, conn: H2Front, sid: int, *, req_ended: bool = False, up_paused: bool = False, now: float = 0.0
    ) -> None:
        self.conn = conn
        self.sid = sid
        self.ex: Exchange | None = None
        self.headers_out: list[tuple[bytes, bytes]] | None = None
        self.trailers: list[tuple[bytes, bytes]] | None = None  # sent in a HEADERS frame after the body
        self.out: deque[bytes] = deque()
        self.out_size = 0
        self.want_end = False
        self.sent_end = False
        self.response_done_ = False
        self.closed = False
        self.paused = 0
        self.unacked = 0
        self.up_paused = up_paused
        self.req_ended = req_ended
        self.last_data = now
        self._writable: asyncio.Future[None] | None = None

    # --- fields the exchange reads ---------------------------------------------------------------

    @property
    def state(self) -> ProxyState:
        return self.conn.state

    @property
    def client_ip(self) -> str:
        return self.conn.client_ip

    @property
    def trusted(self) -> bool:
        return self.conn.trusted

    @property
    def write_paused(self) -> bool:
        return self.conn.write_paused or self.out_size > self.conn.high_water

    # --- downstream contract ----------------------------------------------------------------------------

    def send_head(
        self,
        status: int,
        reason: bytes,
        headers: list[tuple[bytes, bytes]],
        framing: ResponseFraming,
        extra: tuple[tuple[bytes, bytes], ...],
        remove: frozenset[bytes],
        extra_lines: bytes = b"",
    ) -> None:
        self.headers_out = h2_response_headers(status, headers, framing, extra, remove, self.conn.state.via)
        self.conn.mark(self)

    def send_body(self, data: bytes, framing: ResponseFraming | None) -> None:
        if not data or self.closed:
            return
        self.out.append(data)
        self.out_size += len(data)
        self.conn.mark(self)
        if not self.up_paused and self.out_size > self.conn.high_water:
            self._pressure()

    def send_end(
        self,
        framing: ResponseFraming,
        trailers: list[tuple[bytes, bytes]] | None = None,
        remove: frozenset[bytes] = frozenset(),
    ) -> None:
        if trailers and framing.body:
            self.trailers = h2_trailers(trailers, remove) or None
        self.want_end = True
        self.conn.mark(self)

    def send_simple(
        self,
        status: int,
        body: bytes,
        ctype: bytes,
        *,
        keep_alive: bool,
        headers: list[tuple[bytes, bytes]],
        head_only: bool,
    ) -> None:
        hdrs = [(b":status", b"%d" % status), (b"content-type", ctype), (b"content-length", b"%d" % len(body))]
        hdrs += [(n.lower(), v) for n, v in headers]
        self.headers_out = hdrs
        if body and not head_only:
            self.out.append(body)
            self.out_size += len(body)
        self.want_end = True
        self.conn.mark(self)

    def send_continue(self) -> None:
        if not self.closed:
            self.conn.h2.send_headers(self.sid, [(b":status", b"100")])
            self.conn.schedule_flush()

    def send_switch(
        self, headers: list[tuple[bytes, bytes]], upgrade: bytes | None, rest: bytes
    ) -> None:  # pragma: no cover - HTTP/1 only
        raise RuntimeError("HTTP/2 has no Upgrade: an HTTP/2 request never asks to switch protocols")

    def start_tunnel(self, upstream: UpstreamLink) -> None:  # pragma: no cover - HTTP/1 only
        raise RuntimeError("HTTP/2 has no Upgrade: an HTTP/2 request never asks to switch protocols")

    def tunnel_write(self, data: bytes) -> None:  # pragma: no cover - HTTP/1 only
        raise RuntimeError("HTTP/2 has no Upgrade: an HTTP/2 stream is never a tunnel")

    def tunnel_closed(self) -> None:  # pragma: no cover - HTTP/1 only
        raise RuntimeError("HTTP/2 has no Upgrade: an HTTP/2 stream is never a tunnel")

    def flush(self) -> None:
        self.conn.schedule_flush()

    def response_done(self, ex: Exchange, close: bool) -> None:
        self.response_done_ = True
        self.want_end = True
        # The exchange is finished (it calls this last): drop our reference so the stream <-> exchange
        # pair is freed by reference counting when the stream is done, not left to the cyclic GC
        # (which cost ~7 % of the gate's time under h2load, collecting ~13 objects per request).
        self.ex = None
        self.conn.mark(self)

    def pause_reading_for(self, reason: int) -> None:
        self.paused |= reason

    def resume_reading_for(self, reason: int) -> None:
        if not self.paused & reason:
            return
        self.paused &= ~reason
        if not self.paused:
            self.last_data = self.conn.state.clock()  # the body timeout restarts when we read again
            if self.unacked:
                n, self.unacked = self.unacked, 0
                self.conn.ack(self.sid, n)

    async def wait_writable(self) -> None:
        while self.write_paused and not self.closed:
            if self._writable is None or self._writable.done():
                self._writable = asyncio.get_running_loop().create_future()
            await self._writable

    def abort(self) -> None:
        """The response cannot be completed (upstream failed mid-body): reset the stream."""
        self.reset(ErrorCodes.INTERNAL_ERROR)

    def close(self) -> None:
        """Stop this stream. After a complete response (e.g. a 413 while the body still arrives) the
        response is flushed first; the stream then ends with RST_STREAM(NO_ERROR) (see `_ended`)."""
        if not self.response_done_:
            self.reset(ErrorCodes.CANCEL)

    # --- what the connection (gate.h2front) tells its stream ---------------------------------------------

    def attach(self, ex: Exchange) -> None:
        """`ex` carries this stream's request."""
        self.ex = ex

    def answered(self) -> None:
        """The front answered the request itself (a refused header block): no exchange."""
        self.response_done_ = True

    def request_ended(self) -> None:
        self.req_ended = True

    def data_arrived(self, now: float) -> None:
        self.last_data = now  # the body timeout counts from here

    def hold_ack(self, n: int) -> None:
        """`n` bytes received while reading is paused: acknowledged (WINDOW_UPDATE) when it resumes."""
        self.unacked += n

    def connection_gone(self) -> None:
        self.closed = True
        self._wake()

    def gone(self) -> None:
        """The client reset the stream."""
        self._gone()

    def pressure(self) -> None:
        """The connection's writability changed: pause or resume the upstream."""
        self._pressure()

    # --- internals --------------------------------------------------------------------------------------

    def reset(self, code: int) -> None:
        if self.closed:
            return
        self._gone()
        try:
            self.conn.h2.reset_stream(self.sid, code)
        except ProtocolError:
            pass
        self.conn.schedule_flush()

    def _gone(self) -> None:
        self.closed = True
        self.out.clear()
        self.out_size = 0
        self.headers_out = None
        if self.unacked:
            n, self.unacked = self.unacked, 0
            self.conn.ack(self.sid, n)
        self.conn.forget(self)
        self._wake()

    def _wake(self) -> None:
        w = self._writable
        if w is not None and not w.done():
            w.set_result(None)

    def _pressure(self) -> None:
        """Pause or resume the upstream by how much waits here (and whether the connection can write).
        `up_paused` mirrors what the exchange was told, so every pause is matched by one resume."""
        conn = self.conn
        if conn.write_paused or self.out_size > conn.high_water:
            if not self.up_paused:
                self.up_paused = True
                if self.ex is not None:
                    self.ex.pause_upstream()
        elif self.up_paused:
            if self.out_size <= conn.low_water:
                self.up_paused = False
                if self.ex is not None:
                    self.ex.resume_upstream()
                self._wake()
        else:
            self._wake()

    def pump(self) -> None:
        """Move queued headers/body into h2 as far as the send windows allow."""
        if self.closed:
            return
        h2c = self.conn.h2
        sid = self.sid
        try:
            last = self.trailers is None  # with trailers, the stream ends with their HEADERS frame
            if self.headers_out is not None:
                end = self.want_end and not self.out and last
                h2c.send_headers(sid, self.headers_out, end_stream=end)
                self.headers_out = None
                if end:
                    self._ended()
                    return
            out = self.out
            if out:
                window = h2c.local_flow_control_window(sid)
                maxf = h2c.max_outbound_frame_size
                sent = 0
                while out and window > 0:
                    piece = out[0]
                    n = len(piece)
                    if n <= window and n <= maxf:
                        out.popleft()
                        h2c.send_data(sid, piece, end_stream=self.want_end and not out and last)
                    else:
                        n = min(window, maxf)
                        h2c.send_data(sid, piece[:n])
                        out[0] = piece[n:]
                    window -= n
                    sent += n
                self.out_size -= sent
                if not out and self.want_end:
                    if self.trailers is not None:
                        h2c.send_headers(sid, self.trailers, end_stream=True)
                    self._ended()
                    return
            elif self.want_end:
                if self.trailers is None:
                    h2c.end_stream(sid)
                else:
                    h2c.send_headers(sid, self.trailers, end_stream=True)
                self._ended()
                return
        except ProtocolError as e:  # the stream was closed under us (reset by the client)
            log.debug("stream gone while sending", stream_id=sid, error=str(e))
            self._gone()
            return
        if self.up_paused or self._writable is not None:
            self._pressure()

    def _ended(self) -> None:
        self.sent_end = True
        if not self.req_ended:
            # We answered before the request body was complete: stop it (RFC 9113 §8.1).
            try:
                self.conn.h2.reset_stream(self.sid, ErrorCodes.NO_ERROR)
            except ProtocolError:
                pass
        self._gone()
