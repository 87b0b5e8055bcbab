"""Upstream side of the proxy: one `asyncio.Protocol` per TCP connection to a target, parsing responses
with httptools, and a pool of idle keep-alive connections per target.

Theory of operation: a connection serves one exchange at a time (`exchange` is set while it does and
None while it idles in the pool). It forwards parser events to that exchange, which streams them to
its client; back-pressure flows through `pause_writing`/`resume_writing` (its own buffer full → stop
reading the client) and through `transport.pause_reading()` called by the client side. Idle pooled
connections are taken last-in-first-out (the warmest), dropped when the upstream closes them, and
closed after `idle_s`. A connection is reused only if the previous response ended cleanly and the
upstream did not ask to close.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import httptools

from gate.balancer import TargetHealth
from gate.downstream import PAUSE_UPSTREAM_FULL

if TYPE_CHECKING:
    from gate import exchange
    from gate.downstream import Downstream


class HeadDone(Exception):
    """Raised from a parser callback to stop parsing after a bodiless (HEAD) response head."""


class UpstreamConnection:
    """One connection to a target; an `asyncio.Protocol` by duck typing (compiled, it is a typed extension
    class: see `upstream.pxd`)."""

    __slots__ = (
        "_counted_out",
        "_headers",
        "_reason",
        "closed",
        "deadline",
        "exchange",
        "idle_since",
        "keep_alive",
        "parser",
        "pool",
        "requests",
        "target",
        "transport",
        "tunnel",
    )

    def __init__(self, pool: UpstreamPool, target: TargetHealth) -> None:
        self.pool = pool
        self.target = target
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: exchange.Exchange | None = None
        self.idle_since = 0.0
        self.closed = False
        self.requests = 0  # requests sent on this connection (>1: it was reused)
        self.deadline = 0.0  # loop time by which the upstream must send something (0: none)
        self.keep_alive = True
        self.tunnel: Downstream | None = None  # the client connection once this is a raw tunnel (after 101)
        self._headers: list[tuple[bytes, bytes]] = []
        self._reason = b""
        self._counted_out = False

    # --- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = t = cast(asyncio.Transport, transport)  # (a TCP connection's)
        # (TCP_NODELAY is already set on every TCP transport by uvloop and by asyncio's own loop.)
        t.set_write_buffer_limits(self.pool.high_water, self.pool.low_water)

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.tunnel_write(data)
            return
        ex = self.exchange
        if ex is None:
            # Bytes while idle: the upstream is confused (or answering a request we never sent). Drop it.
            self.close()
            return
        if self.deadline:
            # (An exchange with an upstream has a route: no None check on the hot path.)
            self.deadline = ex.state.clock() + ex.rt.timeout_s  # type: ignore[union-attr]
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            ex.on_upstream_upgrade(data[int(e.args[0]) :] if e.args else b"")
        except httptools.HttpParserCallbackError as e:
            if isinstance(e.__context__, HeadDone):
                self.parser = httptools.HttpResponseParser(self)
                ex.on_response_end()
            else:
                ex.on_upstream_failed(self, e.__context__ or e, protocol_error=True)
        except httptools.HttpParserError as e:
            ex.on_upstream_failed(self, e, protocol_error=True)
        ex.client.flush()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        if self.tunnel is not None:
            self.tunnel.tunnel_closed()
            return
        ex = self.exchange
        if ex is not None:
            ex.on_upstream_lost(self, exc)

    def pause_writing(self) -> None:
        if self.tunnel is not None:
            self.tunnel.pause_reading_for(PAUSE_UPSTREAM_FULL)
        elif self.exchange is not None:
            self.exchange.client.pause_reading_for(PAUSE_UPSTREAM_FULL)

    def resume_writing(self) -> None:
        if self.tunnel is not None:
            self.tunnel.resume_reading_for(PAUSE_UPSTREAM_FULL)
        elif self.exchange is not None:
            self.exchange.client.resume_reading_for(PAUSE_UPSTREAM_FULL)

    # --- httptools callbacks ------------------------------------------------------------------------

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        # The next head (after a 1xx, or the next response) starts afresh: reset here rather than in an
        # on_message_begin callback (one Python call less per response).
        headers, reason = self._headers, self._reason
        self._headers = []
        self._reason = b""
        ex = self.exchange
        if ex is None:
            return
        parser = self.parser
        # An HTTP/1.0 upstream's connection is not reused (its keep-alive is not honoured). Checked on the
        # connection's first response only: a server does not change versions midway.
        if self.requests == 1 and parser.get_http_version() != "1.1":
            self.keep_alive = False
        status = parser.get_status_code()
        if status < 200:
            # (A final response's `Connection: close` is found by `response_framing`; see the exchange.)
            for name, value in headers:
                if name.lower() == b"connection" and value.lower().find(b"close") >= 0:
                    self.keep_alive = False
        if ex.on_response_head(status, reason, headers):
            raise HeadDone

    def on_body(self, data: bytes) -> None:
        ex = self.exchange
        if ex is not None:
            ex.on_response_body(data)

    def on_message_complete(self) -> None:
        # Fields parsed after the head are the trailer section of a chunked body.
        trailers = self._headers
        if trailers:
            self._headers = []
        ex = self.exchange
        if ex is None:
            return
        if ex.interim:
            ex.on_interim_end()
            return
        ex.on_response_end(trailers or None)

    # --- what an exchange asks of it (`gate.downstream.UpstreamLink`) ---------------------------------

    def send_request(self, ex: exchange.Exchange, head: bytes, deadline: float) -> None:
        """Carry `ex` (until the pool takes this connection back or it is dropped): write its head."""
        self.exchange = ex
        self.requests += 1
        self.deadline = deadline
        if self.transport is not None:
            self.transport.write(head)

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def write_chunk(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.writelines((b"%x\r\n" % len(data), data, b"\r\n"))

    def set_deadline(self, deadline: float) -> None:
        self.deadline = deadline

    def pause_reading(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def refuse_reuse(self) -> None:
        self.keep_alive = False

    def start_tunnel(self, client: Downstream) -> None:
        self.exchange = None
        self.deadline = 0.0
        self.tunnel = client

    def detach(self) -> None:
        """The exchange is done with this connection: no exchange, no deadline (before pooling or closing)."""
        self.exchange = None
        self.deadline = 0.0

    def park(self, now: float) -> None:
        """Idle in the pool from `now`; reading, since its exchange may have paused reading for a slow
        client and finished before resuming (an idle connection reads the origin closing it)."""
        self.idle_since = now
        self.resume_reading()

    def count_out(self) -> bool:
        """Whether the pool still counts this (closed) connection as open: True once, then False."""
        if self._counted_out:
            return False
        self._counted_out = True
        return True

    def finish(self, reuse: bool) -> None:
        if reuse and self.keep_alive:
            self.pool.release(self)  # (which also forgets the exchange)
        else:
            self.drop()

    def drop(self) -> None:
        self.exchange = None
        self.close()

    # --- helpers --------------------------------------------------------------------------------------

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()
        self.pool.forget(self)


class UpstreamPool:
    """Idle keep-alive connections per target, and the dialer. Used only on the loop."""

    __slots__ = (
        "clock",
        "created",
        "high_water",
        "idle",
        "idle_s",
        "low_water",
        "max_idle",
        "max_per_target",
        "open_count",
        "reused",
    )

    def __init__(
        self,
        *,
        max_idle_per_target: int,
        max_per_target: int,
        idle_s: float,
        high_water: int,
        low_water: int,
        clock: Callable[[], float],
    ) -> None:
        self.max_idle = max_idle_per_target
        self.max_per_target = max_per_target
        self.idle_s = idle_s
        self.high_water = high_water
        self.low_water = low_water
        self.clock = clock
        self.idle: dict[str, list[UpstreamConnection]] = {}
        self.open_count: dict[str, int] = {}
        self.created = 0
        self.reused = 0

    def take_idle(self, target: TargetHealth) -> UpstreamConnection | None:
        lst = self.idle.get(target.key)
        while lst:
            conn = lst.pop()
            if not conn.closed:
                self.reused += 1
                return conn
        return None

    def at_limit(self, target: TargetHealth) -> bool:
        return self.open_count.get(target.key, 0) >= self.max_per_target

    async def open(self, target: TargetHealth, timeout_s: float) -> UpstreamConnection:
        """Dial a new connection; raises OSError (refused, unreachable) or TimeoutError."""
        loop = asyncio.get_running_loop()
        key = target.key
        # Count it before awaiting so concurrent dials respect the per-target limit.
        self.open_count[key] = self.open_count.get(key, 0) + 1
        try:
            async with asyncio.timeout(timeout_s):
                _, proto = await loop.create_connection(  # type: ignore[type-var]  # (duck-typed Protocol)
                    lambda: UpstreamConnection(self, target), target.host, target.port
                )
        except BaseException:
            self.open_count[key] -= 1
            raise
        self.created += 1
        return proto

    def release(self, conn: UpstreamConnection) -> None:
        """Back to the pool after a cleanly finished exchange (or closed if it cannot be reused)."""
        conn.detach()
        if conn.closed or not conn.keep_alive:
            conn.close()
            return
        lst = self.idle.setdefault(conn.target.key, [])
        if len(lst) >= self.max_idle:
            conn.close()
            return
        conn.park(self.clock())
        lst.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        """Called once a connection is closed (idempotent)."""
        if not conn.count_out():
            return
        key = conn.target.key
        self.open_count[key] = max(0, self.open_count.get(key, 0) - 1)
        lst = self.idle.get(key)
        if lst and conn in lst:
            lst.remove(conn)

    def sweep(self, now: float) -> None:
        """Close idle connections older than `idle_s`."""
        for lst in self.idle.values():
            while lst and now - lst[0].idle_since > self.idle_s:
                lst.pop(0).close()

    def close_all(self) -> None:
        for lst in list(self.idle.values()):
            for conn in list(lst):
                conn.close()
        self.idle.clear()

    def stats(self) -> dict[str, Any]:
        return {
            "idle": {k: len(v) for k, v in self.idle.items() if v},
            "open": dict(self.open_count),
            "created": self.created,
            "reused": self.reused,
        }
