"""One request/response exchange through the gate: route, policies, upstream choice (with retry and
passive health), request body streaming, response streaming, upgrade tunnels, accounting.

Theory of operation: `start()` asks the pure admission core (`gate.admission`: `route`, then `decide`)
whether the gate answers itself (ACME token, 404, 405, policy verdict, 429, 413), serves a static file or
proxies, and carries that out — a Basic-auth password not seen before is checked by bcrypt in the worker
pool (`_verify`) while the exchange waits, then `admit()` asks again.
Proxying takes a warm pooled connection when there is one (no task, no await) and otherwise dials in a
task. Body bytes that arrive before the upstream is attached are buffered up to the high-water mark,
after which the client is paused. The response head and body are appended to the downstream's `out`
and written once per upstream read. Every path ends in exactly one `_account()` (metrics and access
log) guarded by `finished`.

The exchange talks to its downstream and its upstream connection only through the Protocols of
`gate.downstream` (`Downstream`, `UpstreamLink`), so an HTTP/2 stream can be a downstream too; it
reads their fields and changes them only by calling their methods.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING

import structlog

from core.errors import Unavailable
from gate._h2rules import request_last_chunk
from gate._static_io import serve_static
from gate._upgrade import switch_matches
from gate.admission import (
    MAX_ATTEMPTS,
    PROXY,
    STATIC,
    Answer,
    decide,
    fail_over,
    loss_counts_against,
    no_target,
    retry_stale,
    route,
    too_large,
    too_many,
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
from gate.policies import Credentials, verify_password

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
                self._verify(d)  # suspended until a worker has checked the password; then `admit()` again
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

    def _verify(self, cred: Credentials) -> None:
        """Check a password in the worker pool; the exchange waits (its connection keeps reading and
        buffering the body under back-pressure, other connections are unaffected) and `_verified` resumes."""
        st = self.state
        wait = st.auth_failures.attempt(self.client.client_ip, st.clock())
        if wait > 0:
            self.answer(too_many(wait, "too many wrong passwords from your address; wait before trying again"))
            return
        try:
            fut = st.workers.submit(verify_password, cred.password, cred.stored)
        except Unavailable:  # PoolBusy (full) or PoolStopped (shutting down): never queue without bound
            st.auth_failures.succeeded(self.client.client_ip, st.clock())  # not checked: not a failure
            log.warning("basic auth refused: worker pool full", request_id=self.request_id)
            self.error(503, "the server is busy checking passwords; retry shortly", headers=((b"Retry-After", b"1"),))
            return
        fut.add_done_callback(partial(self._verified, cred))

    def _verified(self, cred: Credentials, fut: asyncio.Future[bool]) -> None:
        st = self.state
        ok = not fut.cancelled() and fut.exception() is None and fut.result()
        ip = self.client.client_ip
        rt = self.rt
        if ok:
            st.auth_failures.succeeded(ip, st.clock())
            if rt is not None:
                rt.policies.remember(cred)
        if self.finished or self.client.closed or rt is None:
            return  # the client left meanwhile (its failure still counted)
        if fut.cancelled():
            self.error(503, "the server is shutting down", headers=((b"Retry-After", b"1"),))
        elif ok:
            self.admit()
        else:
            verdict = rt.policies.unauthorized()
            self.error(verdict.status, verdict.message, headers=verdict.headers)
        self.client.flush()

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
        st.tasks.spawn("connect", self._connect(t))

    async def _connect(self, t: TargetHealth) -> None:
        st = self.state
        if self.finished or self.client.closed:
            # Gone before this task's first step: an HTTP/2 stream reset in the same read as its HEADERS
            # (rapid reset) dials nothing, instead of leaving the origin one more pooled connection.
            self.force_new = False
            return
        try:
            conn = await st.pool.open(t, st.config.connect_timeout_s)
        except TimeoutError:
            self._connect_failed(t, 504, "the upstream did not accept the connection in time")
            return
        except OSError as e:
            self._connect_failed(t, 502, f"the upstream refused the connection ({e.strerror or e})")
            return
        finally:
            self.force_new = False
        if self.finished or self.client.closed:
            st.pool.release(conn)
            return
        self.attach(conn)
        self.client.flush()

    def _connect_failed(self, t: TargetHealth, status: int, message: str) -> None:
        st = self.state
        if record_failure(t, st.clock(), st.health_policy):
            log.warning("upstream ejected", target=t.key, until_s=round(t.ejected_until - st.clock(), 1))
        log.info("upstream connect failed", target=t.key, status=status, reason=message, request_id=self.request_id)
        if self.finished or self.client.closed:
            return
        self.tried = [*self.tried, t]
        if self.rt is not None and fail_over(self.tried, self.rt.targets(st), st.clock()):
            self.choose()
            self.client.flush()
            return
        self.error(status, message)
        self.client.flush()

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
        """The upstream answered 101: relay it and turn both connections into a raw tunnel."""
        up = self.up
        client = self.client
        if up is None or self.finished:
            return
        if self.info.upgrade is None or self.status != 101:
            self.on_upstream_failed(up, HttpError(502, "the upstream switched protocols unasked"), protocol_error=True)
            return
        if not switch_matches(self.info.upgrade, self.headers_101):
            # A tunnel to a protocol the client did not ask for (h2c, say) would carry requests past the
            # route's rules: refused, both connections closed, nothing relayed. Not counted against the
            # upstream's health: the client chose what to ask for.
            log.warning(
                "upstream switched to a protocol not asked for",
                target=up.target.key,
                asked=self.info.upgrade.decode("latin-1"),
                request_id=self.request_id,
            )
            self._drop_upstream(failed=False)
            self.error(502, "the upstream switched to a protocol the client did not ask for", close=True)
            return
        client.send_switch(list(self.headers_101), self.info.upgrade, rest)
        self.response_started = True
        self.upstream_ms = (self.state.timer() - self.up_started) * 1000
        up.start_tunnel(client)
        client.start_tunnel(up)
        if self.tunnel_buf:
            up.write(b"".join(self.tunnel_buf))
            self.tunnel_buf = ()

    def tunnel_finished(self) -> None:
        if not self.finished:
            self._release_target(True)
            self.up = None
            self._account()

    def on_upstream_failed(self, conn: UpstreamLink | None, exc: BaseException, *, protocol_error: bool) -> None:
        """The upstream sent something unparseable or ambiguous."""
        if conn is not None and conn is self.up:
            log.warning("invalid upstream response", target=conn.target.key, error=str(exc), request_id=self.request_id)
            self._drop_upstream(failed=True)
        if self.finished:
            return
        if not self.response_started:
            self.error(502, "the upstream sent an invalid response")
        else:
            self._account()
            self.client.abort()

    def on_upstream_lost(self, conn: UpstreamLink, exc: Exception | None) -> None:
        if conn is not self.up or self.finished:
            return
        framing = self.framing
        if self.response_started and framing is not None:
            if framing.body and framing.content_length is None and not framing.chunked_in and exc is None:
                conn.refuse_reuse()
                self.on_response_end()  # a close-delimited body ends here
                self.client.flush()
                return
            self._drop_upstream(failed=False)
            self._account()
            self.client.flush()
            self.client.abort()
            return
        self._drop_upstream(failed=False)
        t = conn.target
        if retry_stale(conn.requests, self.retry_ok, self.retried_stale):
            # A pooled connection the upstream had closed just as we sent: try once on a fresh one.
            self.retried_stale = True
            self.force_new = True
            self.state.tasks.spawn("reconnect", self._connect(t))
            return
        if loss_counts_against(self.req_ended) and record_failure(t, self.state.clock(), self.state.health_policy):
            log.warning("upstream ejected", target=t.key)
        self.error(502, "the upstream closed the connection without answering")
        self.client.flush()

    def check_timeouts(self, now: float) -> None:
        up = self.up
        if up is None or not up.deadline or now < up.deadline:
            return
        self.state.metrics.timeouts += 1
        t = up.target
        record_failure(t, now, self.state.health_policy)
        log.info("upstream timed out", target=t.key, request_id=self.request_id)
        self._drop_upstream(failed=False)
        if not self.response_started:
            self.error(504, "the upstream did not answer in time")
            self.client.flush()
        else:
            self._account()
            self.client.abort()

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
