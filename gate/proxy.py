"""The client side of the HTTP/1.1 proxy: one `asyncio.Protocol` per client connection, parsing with
httptools, keeping pipelined requests in order, enforcing limits and timeouts, and being the
*downstream* an `Exchange` writes its response to.

Theory of operation: parser callbacks build a request head; at its end the head is checked
(`h1.check_request`) and an `Exchange` is queued. Only the first queued exchange is active; while a
later (pipelined) one waits, reading from the socket is paused, so at most one read's worth of
pipelined bytes is held. Reading is paused for several independent reasons at once (a bit each:
pipelining, the upstream's write buffer, body buffering before the upstream is connected, shutdown)
and resumes only when none is left. Response bytes produced while handling one upstream read are
gathered in `out` and written with one `write` (`flush`), so a small response's head and body leave
in one segment. Timeouts are deadlines checked by the service's sweeper, not timers per request.

This class is the `gate.downstream.Downstream` an `Exchange` uses (an HTTP/2 stream implements the
same Protocol with frames instead of HTTP/1 bytes). A TLS listener reuses it as is, with
`scheme="https"`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, cast

import httptools
import structlog

from gate._body_first import BodyFirst
from gate.downstream import PAUSE_ERROR, PAUSE_PIPELINE
from gate.exchange import Exchange
from gate.h1 import (
    HOP_BY_HOP,
    LAST_CHUNK,
    HttpError,
    ResponseFraming,
    check_request,
    last_chunk,
)
from gate.h1heads import response_head, simple_response
from gate.pages import error_page
from gate.pipeline import (
    ABORT_ACTIVE,
    ANSWER_NOW,
    CLOSE,
    DROP_AND_DEFER,
    IDLE,
    LINGER,
    NEXT,
    START,
    after_response,
    on_error,
    on_request,
)
from gate.state import ProxyState

if TYPE_CHECKING:
    from gate.downstream import UpstreamLink

log = structlog.get_logger("gate.proxy")

# Deadline kinds.
D_NONE, D_IDLE, D_HEADER, D_BODY = 0, 1, 2, 3


class ClientConnection:
    """One HTTP/1.1 client connection, plain or TLS (`scheme`); an `asyncio.Protocol` by duck typing
    (compiled, it is a typed extension class: see `proxy.pxd`)."""

    __slots__ = (
        "_head_bytes",
        "_headers",
        "_in_body",
        "_keepalive_s",
        "_max_head_bytes",
        "_max_headers",
        "_max_url",
        "_url",
        "_writable",
        "client_ip",
        "closed",
        "closing",
        "config",
        "deadline",
        "dkind",
        "lingering",
        "out",
        "out_size",
        "parser",
        "paused",
        "pending_error",
        "plain_upgrade",
        "queue",
        "scheme",
        "state",
        "transport",
        "trusted",
        "tunnel",
        "upgrading",
        "write_deadline",
        "write_paused",
    )
    h1_heads = True  # response heads are HTTP/1.1 bytes (an exchange lets `response_framing` render them)

    def __init__(self, state: ProxyState, scheme: str = "http") -> None:
        self.state = state
        self.config = state.config
        self.scheme = scheme
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.client_ip = "-"
        self.trusted = False
        self.queue: deque[Exchange] = deque()
        self.out: list[bytes] = []
        self.out_size = 0
        self.paused = 0
        self.write_paused = False
        self.closing = False
        self.closed = False
        self.deadline = 0.0
        self.dkind = D_NONE
        self.write_deadline = 0.0
        self.pending_error: HttpError | None = None
        self.tunnel: UpstreamLink | None = None  # the upstream connection once the connection is a tunnel
        self.upgrading = False
        self.plain_upgrade = 0  # the parser took a request for an upgrade the gate dropped (h2c): 1, 2 (body)
        self.lingering = False
        self._writable: asyncio.Future[None] | None = None
        # the head being parsed
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._in_body = False
        # The limits read on every request, copied out of the (pydantic) config once: compiled, they are C
        # fields, where each `self.config.x` is a generic attribute lookup through the model's type.
        cfg = self.config
        self._max_url = cfg.max_request_line_bytes
        self._max_head_bytes = cfg.max_header_bytes
        self._max_headers = cfg.max_header_count
        self._keepalive_s = cfg.keepalive_timeout_s

    # --- asyncio.Protocol ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = t = cast(asyncio.Transport, transport)  # (a TCP or TLS connection's)
        peer = transport.get_extra_info("peername")
        self.client_ip = str(peer[0]) if isinstance(peer, tuple) and peer else "local"
        if self.client_ip.startswith("::ffff:"):
            self.client_ip = self.client_ip[7:]
        self.trusted = self.state.is_trusted(self.client_ip)
        # (TCP_NODELAY is already set on every TCP transport by uvloop and by asyncio's own loop.)
        t.set_write_buffer_limits(self.config.high_water_bytes, self.config.low_water_bytes)
        self.state.clients.add(self)
        m = self.state.metrics
        m.connection_opened()
        self.set_deadline(D_HEADER, self.config.header_timeout_s)
        if self.state.draining:
            self.closing = True

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return
        if self.tunnel is not None:
            self.tunnel.write(data)
            return
        if self.upgrading:
            if self.queue:
                self.queue[0].tunnel_buffer(data)
            return
        if self.dkind == D_IDLE:
            self.dkind = D_HEADER
            self.deadline = self.state.clock() + self.config.header_timeout_s
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            offset = int(e.args[0]) if e.args else len(data)
            if self.plain_upgrade:
                self._resume_plain(data[offset:])
                return
            self.upgrading = True
            if self.queue:
                self.queue[-1].tunnel_buffer(data[offset:])
        except httptools.HttpParserCallbackError as e:
            err = e.__context__
            if isinstance(err, HttpError):
                self.protocol_error(err)
            else:
                log.error("proxy callback failed", error=repr(err), exc_info=err)
                self.protocol_error(HttpError(500, "the gate failed on this request"))
        except httptools.HttpParserError as e:
            self.protocol_error(HttpError(400, f"malformed request: {e}"))
        if self.out:
            self.flush()

    def eof_received(self) -> bool | None:
        # The client half-closed. With nothing in flight close now. A request whose body is incomplete
        # can never complete, and one whose response has not begun is abandoned (nginx and HAProxy read
        # EOF there as the client going away): close, so the exchanges end as 499 and free their upstream
        # connections now instead of holding them until the origin times out. Once a response is under
        # way it is finished (a half-closing client still reads it).
        queue = self.queue
        if not queue:
            return None
        if (
            self.tunnel is None
            and not self.upgrading
            and (not queue[-1].request_complete or not queue[0].response_started)
        ):
            self.abort()
            return None
        self.closing = True
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        st = self.state
        st.clients.discard(self)
        st.metrics.connection_closed()
        if st.drained is not None and not st.clients:
            st.drained.set()
        if self.tunnel is not None:
            up = self.tunnel
            self.tunnel = None
            up.drop()
        for ex in list(self.queue):
            ex.on_client_lost()
        self.queue.clear()
        self._wake_writer()

    def pause_writing(self) -> None:
        self.write_paused = True
        self.write_deadline = self.state.clock() + self.config.send_timeout_s
        if self.tunnel is not None:
            self.tunnel.pause_reading()
        elif self.queue:
            self.queue[0].pause_upstream()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.write_deadline = 0.0
        self._wake_writer()
        if self.tunnel is not None:
            self.tunnel.resume_reading()
        elif self.queue:
            self.queue[0].resume_upstream()

    # --- httptools callbacks ------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._head_bytes = 0
        self._in_body = False
        if self.dkind != D_HEADER:
            self.set_deadline(D_HEADER, self.config.header_timeout_s)

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self._max_url:
            raise HttpError(414, f"the request target is longer than {self._max_url} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > self._max_head_bytes:
            raise HttpError(431, f"the request headers are larger than {self._max_head_bytes} bytes")
        if self._in_body:
            return  # trailers of a chunked body: dropped (they are not forwarded)
        headers = self._headers
        headers.append((name, value))
        if len(headers) > self._max_headers:
            raise HttpError(431, f"the request has more than {self._max_headers} headers")

    def on_headers_complete(self) -> None:
        p = self.parser
        method = p.get_method()
        version = p.get_http_version()
        info = check_request(method, self._url, version, self._headers)
        self._in_body = True
        keep_alive = p.should_keep_alive() and not self.closing
        ex = Exchange(self, method, version, self._headers, info, keep_alive)
        if info.upgrade is None and b"upgrade" in info.connection_tokens and p.should_upgrade():
            # llhttp treats this head as an upgrade (its body, if any, unparsed); the gate removed the only
            # protocol asked for (h2c), so the request goes on as an ordinary one: see `_resume_plain`.
            self.plain_upgrade = 2 if info.has_body else 1
        if info.chunked or info.content_length:
            self.set_deadline(D_BODY, self.config.body_timeout_s)
        else:
            self.dkind = D_NONE
            self.deadline = 0.0
        self.queue.append(ex)
        if on_request(len(self.queue)) == START:
            ex.start()
        else:
            self.pause_reading_for(PAUSE_PIPELINE)

    def on_body(self, data: bytes) -> None:
        if self.dkind == D_BODY:
            self.deadline = self.state.clock() + self.config.body_timeout_s
        if self.queue:
            self.queue[-1].on_request_body(data)

    def on_message_complete(self) -> None:
        if self.plain_upgrade == 2:
            return  # llhttp ends an upgrade request at its head; its body is still to come
        if self.dkind == D_BODY:
            self.set_deadline(D_NONE, 0)
        if self.queue:
            self.queue[-1].on_request_end()

    def _resume_plain(self, rest: bytes) -> None:
        """Continue after a request whose Upgrade the gate dropped: a fresh parser for what follows; a body
        of that request is parsed through a synthetic head of the same framing (see `gate._body_first.BodyFirst`)."""
        mode = self.plain_upgrade
        self.plain_upgrade = 0
        if mode == 2 and self.queue:
            info = self.queue[-1].info
            self.parser = httptools.HttpRequestParser(BodyFirst(self))
            framing = (
                b"Transfer-Encoding: chunked" if info.chunked else b"Content-Length: %d" % (info.content_length or 0)
            )
            self.parser.feed_data(b"POST / HTTP/1.1\r\nHost: x\r\n" + framing + b"\r\n\r\n")
        else:
            self.parser = httptools.HttpRequestParser(self)
        if rest:
            self.data_received(rest)

    # --- downstream interface (used by Exchange) ------------------------------------------------------

    def flush(self) -> None:
        out = self.out
        if not out:
            return
        if self.transport is None:
            self.out = []
            return
        if len(out) == 1:
            self.transport.write(out[0])
        elif self.out_size < 65536:
            self.transport.write(b"".join(out))
        else:
            self.transport.writelines(out)
        self.out = []
        self.out_size = 0

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
        """Queue a response head (written at the next `flush`, together with the first body bytes).
        `extra_lines`, when given, is `extra` already rendered as header lines."""
        # (Compiled, `response_head` is a direct C call: `proxy.pxd` cimports it.)
        self.out.append(
            response_head(
                status,
                reason,
                headers,
                framing,
                extra=None if extra_lines else extra,
                remove=remove,
                via=self.state.via,
                extra_lines=extra_lines,
                scanned=True,
            )
        )

    def send_body(self, data: bytes, framing: ResponseFraming | None) -> None:
        if framing is not None and framing.chunked_out:
            self.out += (b"%x\r\n" % len(data), data, b"\r\n")
        else:
            self.out.append(data)
        self.out_size += len(data)

    def send_end(
        self,
        framing: ResponseFraming,
        trailers: list[tuple[bytes, bytes]] | None = None,
        remove: frozenset[bytes] = frozenset(),
    ) -> None:
        """End the body; an upstream's trailer fields follow the last chunk when the body is chunked."""
        if framing.chunked_out:
            self.out.append(last_chunk(trailers, remove) if trailers else LAST_CHUNK)

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
        """A whole response the gate makes itself."""
        self.out.append(
            simple_response(status, body, ctype, keep_alive=keep_alive, headers=headers, head_only=head_only)
        )

    def send_continue(self) -> None:
        self.send_raw(b"HTTP/1.1 100 Continue\r\n\r\n")

    def send_switch(self, headers: list[tuple[bytes, bytes]], upgrade: bytes | None, rest: bytes) -> None:
        """The 101 head and the first tunnelled bytes (HTTP/1.1 only: HTTP/2 has no Upgrade)."""
        out = [b"HTTP/1.1 101 Switching Protocols\r\n"]
        upgrade_value = upgrade or b""
        for name, value in headers:
            n = name.lower()
            if n == b"upgrade":
                upgrade_value = value
            elif n not in HOP_BY_HOP:
                out += (name, b": ", value, b"\r\n")
        out += (b"Connection: Upgrade\r\nUpgrade: ", upgrade_value, b"\r\n\r\n")
        self.out.append(b"".join(out))
        if rest:
            self.out.append(rest)

    def send_raw(self, data: bytes) -> None:
        """Write now (interim responses such as 100 Continue)."""
        if self.transport is not None and not self.closed:
            self.flush()
            self.transport.write(data)

    def response_done(self, ex: Exchange, close: bool) -> None:
        """The active exchange's response is complete (its bytes are in `out` or written)."""
        queue = self.queue
        if queue and queue[0] is ex:
            queue.popleft()
        turn = after_response(
            close, self.closing, ex.keep_alive, ex.req_ended, len(queue), self.pending_error is not None
        )
        if turn == NEXT:
            nxt = queue[0]
            if len(queue) == 1:
                self.resume_reading_for(PAUSE_PIPELINE)
            self.flush()
            nxt.start()
            return
        if turn != IDLE:
            self.flush()
            if turn == CLOSE:
                self.close()
            elif turn == LINGER:
                self.linger()
            elif self.pending_error is not None:  # SEND_ERROR
                self._send_error(self.pending_error)
            return
        self.dkind = D_IDLE
        self.deadline = self.state.clock() + self._keepalive_s
        if self.paused:
            self.resume_reading_for(PAUSE_PIPELINE)

    async def wait_writable(self) -> None:
        """Returns once the transport's buffer is under the low-water mark (or the connection is gone)."""
        if not self.write_paused or self.closed:
            return
        if self._writable is None or self._writable.done():
            self._writable = asyncio.get_running_loop().create_future()
        await self._writable

    def _wake_writer(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_reading_for(self, reason: int) -> None:
        if not self.paused and self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self.paused |= reason

    def resume_reading_for(self, reason: int) -> None:
        if not self.paused & reason:
            return
        self.paused &= ~reason
        if not self.paused and self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def tunnel_write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def tunnel_closed(self) -> None:
        self.tunnel = None
        if self.queue:
            self.queue[0].tunnel_finished()
        self.close()

    def start_tunnel(self, upstream: UpstreamLink) -> None:
        self.tunnel = upstream
        self.upgrading = False
        self.set_deadline(D_NONE, 0)
        self.paused = 0
        if self.transport is not None:
            self.transport.resume_reading()

    # --- errors, timeouts, closing ------------------------------------------------------------------

    def protocol_error(self, err: HttpError) -> None:
        """The client sent something we refuse. Answer it (in order, after earlier responses) and close."""
        if err.status != 408:
            self.state.metrics.count_protocol_error()
        self.pause_reading_for(PAUSE_ERROR)
        queue = self.queue
        turn = on_error(len(queue), bool(queue) and queue[-1].request_complete)
        if turn == ABORT_ACTIVE:
            queue[-1].on_request_aborted(err)  # the bad bytes were in the body of the request being answered
            return
        if turn == DROP_AND_DEFER:
            queue.pop().on_client_lost()  # ... of a pipelined request not started yet: dropped
        if turn != ANSWER_NOW:
            self.pending_error = err  # answered (then the connection closes) once the earlier responses are out
            return
        self.closing = True
        self._send_error(err)

    def _send_error(self, err: HttpError) -> None:
        rid = self.state.request_id()
        body, ctype = error_page(err.status, err.message, rid, code=err.code)
        headers = [(b"X-Request-Id", rid.encode())] + [(k.encode(), v.encode()) for k, v in err.headers]
        self.send_raw(simple_response(err.status, body, ctype, keep_alive=False, headers=headers))
        log.info("refused request", status=err.status, reason=err.message, client_ip=self.client_ip, request_id=rid)
        self.linger()

    def set_deadline(self, kind: int, seconds: float) -> None:
        self.dkind = kind
        self.deadline = self.state.clock() + seconds if kind != D_NONE else 0.0

    def check_timeouts(self, now: float) -> None:
        """Called by the sweeper: act on a passed deadline."""
        if self.write_deadline and now >= self.write_deadline:
            self.state.metrics.count_timeout()
            log.info("client stopped reading; closing", client_ip=self.client_ip)
            self.abort()
            return
        if self.deadline and now >= self.deadline:
            kind = self.dkind
            self.set_deadline(D_NONE, 0)
            if kind == D_IDLE:
                self.close()
            elif kind == D_HEADER:
                self.state.metrics.count_timeout()
                if self._head_bytes or self._url:
                    self.protocol_error(HttpError(408, "the request head was not received in time"))
                else:
                    self.close()
            elif kind == D_BODY:
                self.state.metrics.count_timeout()
                self.protocol_error(HttpError(408, "the request body stalled"))
        if self.queue:
            self.queue[0].check_timeouts(now)

    def linger(self) -> None:
        """Close after a response while the client may still be sending: half-close our side and read
        (and drop) its remaining bytes for a moment, so its kernel does not reset the connection before
        the client has read our response."""
        if self.transport is None or self.closed:
            return
        self.flush()
        if not self.transport.can_write_eof():
            self.close()
            return
        self.lingering = True
        self.transport.write_eof()
        self.set_deadline(D_IDLE, 2.0)
        self.paused = 0
        self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.closed = True
            self.transport.abort()

    def drain(self) -> None:
        """Shutdown: idle connections close now, busy ones after their current response."""
        self.closing = True
        if not self.queue and self.tunnel is None:
            self.close()
