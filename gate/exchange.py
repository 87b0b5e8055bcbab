"""One request/response exchange through the gate: route, policies, upstream choice (with retry and
passive health), request body streaming, response streaming, upgrade tunnels, accounting.

Theory of operation: `start()` asks the pure admission core (`gate.admission`: `route`, then `decide`)
whether the gate answers itself (ACME token, 404, 405, policy verdict, 429, 413), serves a static file or
proxies, and carries that out — a Basic-auth password not seen before is checked by bcrypt in the worker
pool (`gate._auth_io`) while the exchange waits, then `admit()` asks again.
Proxying takes a warm pooled connection when there is one (no task, no await) and otherwise dials in a
task. The rarer upstream events — a failed dial (failover), an invalid or lost response (the stale-
connection retry), a timeout, a `101` — are handled in `gate._upstream_events`, the exchange's own code
split out by size, like the static-file half in `gate._static_io`. Body bytes that arrive before the
upstream is attached are buffered up to the high-water mark, after which the client is paused. The
response head and body are appended to the downstream's `out` and written once per upstream read.
Every path ends in exactly one `_account()` (metrics and access log) guarded by `finished`.

The exchange talks to its downstream and its upstream connection only through the Protocols of
`gate.downstream` (`Downstream`, `UpstreamLink`), so an HTTP/2 stream can be a downstream too; it
reads their fields and changes them only by calling their methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from gate._auth_io import verify
from gate._h2rules import request_last_chunk
from gate._static_io import serve_static
from gate._upstream_events import connect, switched, timed_out, upstream_failed, upstream_lost
from gate.admission import (
    MAX_ATTEMPTS,
    PROXY,
    STATIC,
    Answer,
    decide,
    no_target,
    route,
    too_large,
)
from gate.balancer import TargetHealth, begin_request, end_request, pick, record_failure
from gate.downstream import PAUSE_BUFFERED
from gate.h1 import (
    IDEMPOTENT,
    LAST_CHUNK,
    HttpError,
    RequestInfo,
    ResponseFraming,
    response_framing,
)
from gate.h1heads import upstream_request_head
from gate.metrics import Stats, record_request
from gate.pages import error_page
from gate.policies import Credentials

if TYPE_CHECKING:
    from gate.downstream import Downstream, UpstreamLink
    from gate.state import RouteRuntime

log = structlog.get_logger("gate.exchange")


class Exchange:
    """One request and its response; compiled, a typed extension class (see `exchange.pxd`)."""

    __slots__ = (
        "body_buf",
        "body_buf_size",
        "buffering",
        "bytes_out",
        "client",
        "finished",
        "force_new",
        "framing",
        "headers",
        "headers_101",
        "info",
        "interim",
        "keep_alive",
        "method",
        "req_bytes",
        "req_ended",
        "req_trailers",
        "request_id",
        "response_started",
        "retried_stale",
        "retry_ok",
        "rt",
        "sent_continue",
        "started",
        "state",
        "status",
        "target",
        "target_stats",
        "tried",
        "tunnel_buf",
        "up",
        "up_started",
        "upstream_key",
        "upstream_ms",
        "upstream_target",
        "version",
    )

    def __init__(
        self,
        client: Downstream,
        method: bytes,
        version: str,
        headers: list[tuple[bytes, bytes]],
        info: RequestInfo,
        keep_alive: bool,
        ended: bool = False,
    ) -> None:
        self.client = client
        self.state = state = client.state
        self.method = method
        self.version = version
        self.headers = headers
        self.info = info
        self.keep_alive = keep_alive
        self.started = state.timer()  # durations: the precise timer (the access log's wall time derives from it)
        rid = ""
        if client.trusted:
            for name, value in headers:
                if name.lower() == b"x-request-id" and 0 < len(value) <= 128:
                    rid = value.decode("latin-1")
        self.request_id = rid or state.request_id()
        self.upstream_target = info.target
        self.rt: RouteRuntime | None = None
        self.up: UpstreamLink | None = None
        self.target: TargetHealth | None = None
        self.target_stats: Stats | None = None
        self.tried: tuple[TargetHealth, ...] | list[TargetHealth] = ()
        self.body_buf: list[bytes] | tuple[()] = ()  # lists are made on first use
        self.body_buf_size = 0
        self.buffering = False  # receiving the request body whole (up to the route's buffer) before choosing
        self.tunnel_buf: list[bytes] | tuple[()] = ()
        self.req_bytes = 0
        self.req_ended = ended  # (an HTTP/2 request without a body has ended with its head)
        self.req_trailers = b""  # a chunked request's last chunk with trailer fields (HTTP/2 trailers)
        self.bytes_out = 0
        self.status = 0
        self.framing: ResponseFraming | None = None
        self.response_started = False
        self.finished = False
        self.interim = False
        self.sent_continue = False
        self.retry_ok = False
        self.retried_stale = False
        self.force_new = False
        self.up_started = 0.0
        self.upstream_ms: float | None = None
        self.upstream_key: str | None = None
        self.headers_101: list[tuple[bytes, bytes]] | tuple[()] = ()

    # --- helpers ------------------------------------------------------------------------------------

    @property
    def upstream_timeout_s(self) -> float:
        return self.rt.timeout_s if self.rt is not None else self.state.config.upstream_timeout_s

    @property
    def request_complete(self) -> bool:
        return self.req_ended

    def header(self, name: bytes) -> bytes:
        for n, v in self.headers:
            if n.lower() == name:
                return v
        return b""

    # --- deciding --------------------------------------------------------------------------------------

    def start(self) -> None:
        """Ask `gate.admission` which route takes the request and what to do with it, and do it."""
        st = self.state
        info = self.info
        snap = st.snapshot
        m = route(snap, self.client.scheme, info, st.hop_id, st.challenges)
        if type(m) is not tuple:
            assert isinstance(m, Answer)
            if m.status == 508:
                log.warning("request loop", host=info.host, target=info.target, request_id=self.request_id)
            self.answer(m)
            return
        r, upstream_target = m
        rt = snap.runtimes[r.id]
        self.rt = rt
        self.upstream_target = upstream_target
        rt.metrics.enter()
        self.admit(False)

    def admit(self, checked: bool = True) -> None:
        """Carry out the route's admission decision (`checked`: the access policies passed already)."""
        st = self.state
        info = self.info
        client = self.client
        rt = self.rt
        assert rt is not None
        d = decide(rt, self.method, client.scheme, client.client_ip, info, self.headers, st.clock, checked)
        if d is not PROXY:
            if d is STATIC:
                assert rt.static_root is not None
                serve_static(self, rt.static_root, rt.route.spec.static_spa)
            elif type(d) is Credentials:
                verify(self, d)  # suspended until a worker has checked the password; then `admit()` again
            else:
                assert isinstance(d, Answer)
                self.answer(d)
            return
        has_body = info.has_body
        self.retry_ok = self.method in IDEMPOTENT and not has_body
        if has_body and rt.buffer_bytes and not self.req_ended and self.body_buf_size <= rt.buffer_bytes:
            # Receive the body (whole, when it fits) before taking an upstream connection: a malformed body
            # is refused with nothing sent upstream, and a slow client holds no origin connection meanwhile.
            self.buffering = True
            if info.expect_continue:
                self.sent_continue = True
                client.send_continue()
            return
        self.choose()

    # --- Basic auth off the loop ---------------------------------------------------------------------

    def choose(self) -> None:
        st = self.state
        rt = self.rt
        assert rt is not None
        targets = rt.static_targets if not rt.services else rt.targets(st)
        now = st.clock()
        tried = self.tried
        if len(tried) >= MAX_ATTEMPTS:
            t = None
        elif len(targets) == 1 and not tried:
            # One target, none tried yet (most routes, every first attempt): what `pick` would return,
            # without its call (a cursor over one target only ever points at it).
            t = targets[0]
            if t.ejected_until > now:
                t = None
        else:
            t = pick(targets, now, rt.balance, rt.cursor, tried)
        if t is None:
            self.answer(no_target(targets, tried, now))
            return
        pool = st.pool
        conn = None if self.force_new else pool.take_idle(t)
        if conn is not None:
            self.attach(conn, now)
            return
        if pool.at_limit(t):
            self.error(503, "the upstream has too many open connections", headers=((b"Retry-After", b"1"),))
            return
        st.tasks.spawn("connect", connect(self, t))

    # --- proxying the request -------------------------------------------------------------------------

    def attach(self, conn: UpstreamLink, now: float | None = None) -> None:
        st = self.state
        rt = self.rt
        assert rt is not None
        self.up = conn
        t = conn.target
        self.target = t
        begin_request(t)
        key = self.upstream_key = t.key
        ts = st.metrics.targets.get(key)
        if ts is None:
            ts = st.metrics.target(key)
        self.target_stats = ts
        ts.enter()
        if now is None:
            now = st.clock()
        self.up_started = st.timer()
        client = self.client
        info = self.info
        hop = info.hop
        # Our hop id after those of the gates the request already passed (precomputed when it had none).
        set_lines = (
            rt.req_set_lines
            if hop is None
            else rt.req_set_base + b"X-Infracore-Hop: " + hop + b", " + st.hop_id + b"\r\n"
        )
        head = upstream_request_head(
            self.method,
            self.upstream_target,
            self.headers,
            info,
            client.client_ip,
            client.scheme,
            self.request_id.encode(),
            client.trusted,
            None,
            rt.policies.req_remove,
            set_lines,
        )
        req_ended = self.req_ended
        if self.body_buf or (req_ended and info.chunked):
            pieces = [head]
            chunked = info.chunked
            for data in self.body_buf:
                if chunked:
                    pieces += (b"%x\r\n" % len(data), data, b"\r\n")
                else:
                    pieces.append(data)
            if self.body_buf:
                self.body_buf = ()
                self.body_buf_size = 0
                client.resume_reading_for(PAUSE_BUFFERED)
            if req_ended and chunked:
                pieces.append(self.req_trailers or LAST_CHUNK)
            head = b"".join(pieces)
        # The upstream's answer is due once the whole request is sent; during a long upload the client's
        # body timeout (and back-pressure) govern instead.
        conn.send_request(self, head, now + rt.timeout_s if req_ended or not info.has_body else 0.0)
        if info.expect_continue and not req_ended and self.req_bytes == 0 and not self.sent_continue:
            self.sent_continue = True
            client.send_continue()
        if client.write_paused:
            self.pause_upstream()

    def on_request_body(self, data: bytes) -> None:
        self.req_bytes += len(data)
        rt = self.rt
        if rt is not None and rt.max_body is not None and self.req_bytes > rt.max_body:
            self.on_request_aborted(HttpError(413, too_large(rt.max_body).message))
            return
        if self.finished:
            return
        up = self.up
        if up is not None:
            if self.info.chunked:
                up.write_chunk(data)
            else:
                up.write(data)
            return
        if isinstance(self.body_buf, list):
            self.body_buf.append(data)
        else:
            self.body_buf = [data]
        self.body_buf_size += len(data)
        if self.buffering:
            if rt is not None and self.body_buf_size > rt.buffer_bytes:
                self.buffering = False  # larger than the buffer: streamed from here on
                self.choose()
        elif self.body_buf_size > self.state.config.high_water_bytes:
            self.client.pause_reading_for(PAUSE_BUFFERED)

    def on_request_end(self) -> None:
        self.req_ended = True
        if self.buffering:
            self.buffering = False
            if not self.finished:
                self.choose()  # the whole body is here (and well-formed): now the upstream
            return
        up = self.up
        if up is not None and not self.finished:
            if self.info.chunked:
                up.write(self.req_trailers or LAST_CHUNK)
            if not up.deadline and not self.client.write_paused:
                up.set_deadline(self.state.clock() + self.upstream_timeout_s)

    def on_request_trailers(self, fields: list[tuple[bytes, bytes]]) -> None:
        """An HTTP/2 request's trailer fields (before its end): forwarded as the chunked body's trailer
        section when the body is chunked upstream, else dropped (HTTP/1.1 upstreams rarely read them)."""
        if self.info.chunked and not self.req_ended and not self.finished:
            self.req_trailers = request_last_chunk(fields)  # written in place of the last chunk

    def on_request_aborted(self, err: HttpError) -> None:
        """The client's request cannot be completed (bad chunk, too large, stalled)."""
        self._drop_upstream(failed=False)
        if self.finished:
            self.client.close()
            return
        if not self.response_started:
            self.error(err.status, err.message, close=True)
            self.client.flush()
        else:
            self.status = self.status or err.status
            self._account()
            self.client.abort()

    def tunnel_buffer(self, data: bytes) -> None:
        if data:
            self.tunnel_buf = [*self.tunnel_buf, data]
            if sum(len(x) for x in self.tunnel_buf) > self.state.config.high_water_bytes:
                self.client.pause_reading_for(PAUSE_BUFFERED)

    # --- upstream events ----------------------------------------------------------------------------

    def on_response_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> bool:
        """Returns True when no body follows that the parser would wait for (HEAD)."""
        if self.finished:
            return False
        if status < 200:
            self.interim = True  # 1xx: swallowed (we sent our own 100); 101 continues in on_upstream_upgrade
            if status == 101:
                self.status = 101
                self.headers_101 = headers
            return False
        if self.upstream_ms is None:
            self.upstream_ms = (self.state.timer() - self.up_started) * 1000
        client = self.client
        rt = self.rt
        assert rt is not None
        remove = rt.policies.resp_remove
        try:
            # An HTTP/1.1 downstream has the kept fields rendered in the same pass (`send_head` uses them).
            framing = response_framing(
                status, headers, self.method, self.version, self.keep_alive, remove if client.h1_heads else None
            )
        except HttpError as e:
            self.on_upstream_failed(self.up, e, protocol_error=True)
            return False
        if framing.upstream_close and self.up is not None:
            self.up.refuse_reuse()
        if client.closing or self.info.upgrade is not None or not self.req_ended:
            framing.close_after_response()
        self.framing = framing
        self.status = status
        scheme = client.scheme
        client.send_head(status, reason, headers, framing, rt.resp_extra[scheme], remove, rt.resp_lines[scheme])
        self.response_started = True
        return self.method == b"HEAD"

    def on_interim_end(self) -> None:
        """A 1xx response (swallowed) ended; the final one follows."""
        self.interim = False

    def on_response_body(self, data: bytes) -> None:
        if self.finished:
            return
        self.bytes_out += len(data)
        self.client.send_body(data, self.framing)

    def on_response_end(self, trailers: list[tuple[bytes, bytes]] | None = None) -> None:
        if self.finished:
            return
        framing = self.framing
        client = self.client
        if framing is not None:
            if trailers:
                client.send_end(framing, trailers, self.rt.policies.resp_remove if self.rt else frozenset())
            else:
                client.send_end(framing)
        client.flush()  # the response leaves before the bookkeeping below
        up = self.up
        if up is not None:
            self.up = None
            self._release_target(True)
            up.finish(self.req_ended)
        self._account()
        client.response_done(self, framing.close_after if framing is not None else True)

    def on_upstream_upgrade(self, rest: bytes) -> None:
        """The upstream answered 101 (`gate._upstream_events.switched`: a raw tunnel, or refused)."""
        switched(self, rest)

    def tunnel_finished(self) -> None:
        if not self.finished:
            self._release_target(True)
            self.up = None
            self._account()

    def on_upstream_failed(self, conn: UpstreamLink | None, exc: BaseException, *, protocol_error: bool) -> None:
        """The upstream sent something unparseable or ambiguous (`gate._upstream_events.upstream_failed`)."""
        upstream_failed(self, conn, exc, protocol_error=protocol_error)

    def on_upstream_lost(self, conn: UpstreamLink, exc: Exception | None) -> None:
        """The upstream connection closed (`gate._upstream_events.upstream_lost`: retry, end, or an error)."""
        upstream_lost(self, conn, exc)

    def check_timeouts(self, now: float) -> None:
        up = self.up
        if up is not None and up.deadline and now >= up.deadline:
            timed_out(self, now)

    def pause_upstream(self) -> None:
        up = self.up
        if up is not None:
            up.pause_reading()
            up.set_deadline(0.0)

    def resume_upstream(self) -> None:
        up = self.up
        if up is not None:
            up.resume_reading()
            up.set_deadline(self.state.clock() + self.upstream_timeout_s)

    def on_client_lost(self) -> None:
        if self.finished:
            return
        self._drop_upstream(failed=False)
        if not self.status or not self.response_started:
            self.status = 499
        self._account()

    # --- answering ourselves ----------------------------------------------------------------------------

    def answer(self, a: Answer) -> None:
        """Execute an admission decision (`gate.admission`): an error page, or a small plain response."""
        if a.status >= 400:
            self.error(a.status, a.message, headers=a.headers, close=a.close)
        else:
            self.respond(a.status, a.body, b"text/plain", headers=a.headers, close=a.close)

    def error(
        self, status: int, message: str, *, headers: tuple[tuple[bytes, bytes], ...] = (), close: bool = False
    ) -> None:
        body, ctype = error_page(status, message, self.request_id, accept=self.header(b"accept"))
        self.respond(status, body, ctype, headers=headers, close=close)

    def respond(
        self,
        status: int,
        body: bytes,
        ctype: bytes,
        *,
        headers: tuple[tuple[bytes, bytes], ...] = (),
        close: bool = False,
    ) -> None:
        if self.finished:
            return
        info = self.info
        # (A request that asked to switch protocols has left its connection expecting a tunnel: closed.)
        close = (
            close
            or not self.keep_alive
            or self.client.closing
            or (not self.req_ended and info.has_body)
            or info.upgrade is not None
        )
        hdrs = [(b"X-Request-Id", self.request_id.encode()), *headers]
        self.client.send_simple(
            status, body, ctype, keep_alive=not close, headers=hdrs, head_only=self.method == b"HEAD"
        )
        self.status = status
        self.response_started = True
        self.bytes_out = len(body)
        self._account()
        self.client.response_done(self, close)

    # --- a response from a file (gate._static_io streams it through these) -------------------------------

    def static_head(self, status: int, headers: list[tuple[bytes, bytes]], length: int | None) -> None:
        """Queue the head of a response the gate makes from a file; `length` bytes follow (None: no body)."""
        close = not self.keep_alive or self.client.closing or not self.req_ended
        self.framing = framing = ResponseFraming(length is not None, length, False, False, close)
        self.client.send_head(status, b"", headers, framing, (), frozenset())
        self.status = status
        self.response_started = True

    def static_body(self, data: bytes) -> None:
        self.client.send_body(data, self.framing)
        self.bytes_out += len(data)

    def static_end(self) -> None:
        """The file's response is complete."""
        self._account()
        self.client.response_done(self, self.framing.close_after if self.framing else True)

    def static_abort(self) -> None:
        """The file could not be sent whole: break the response off."""
        self._account()
        self.client.abort()

    # --- bookkeeping ----------------------------------------------------------------------------------

    def _release_target(self, success: bool) -> None:
        t = self.target
        if t is not None:
            end_request(t, success)
            ts = self.target_stats
            if ts is not None:
                ts.leave()
            self.target = None

    def _drop_upstream(self, *, failed: bool) -> None:
        up = self.up
        self.up = None
        if up is not None:
            up.drop()
            if failed:
                record_failure(up.target, self.state.clock(), self.state.health_policy)
        self._release_target(False)

    def _account(self) -> None:
        if self.finished:
            return
        self.finished = True
        st = self.state
        now = st.clock()  # the metric windows' time base
        ended = st.timer()
        ms = (ended - self.started) * 1000
        status = self.status
        rt = self.rt
        ts = self.target_stats
        metrics = st.metrics
        route_name = upstream = None
        if ts is not None:
            upstream = self.upstream_key
        if rt is not None:
            rt.metrics.leave()
            route_name = rt.name
            stats, cell = rt.stats_for(upstream, ts, metrics)
        else:
            stats = (metrics.total, ts) if ts is not None else (metrics.total,)
            cell = metrics.cell(None, upstream)
        record_request(stats, cell, status, self.req_bytes, self.bytes_out, ms, now)
        access_log = st.access_log
        if access_log is not None:  # rendered into the open batch (never raises)
            info = self.info
            access_log.add(
                self.started,
                ended,
                info.host,
                self.method,
                info.target,
                status,
                self.bytes_out,
                upstream,
                self.client.client_ip,
                self.request_id,
                route_name,
                self.version,
                self.req_bytes,
                self.upstream_ms,
            )
