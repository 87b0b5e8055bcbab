"""The edge's listeners and housekeeping: bind sockets with a protocol factory per listener, sweep
deadlines (header/body/idle/upstream timeouts, pooled connection expiry), and drain on stop.

A TLS listener (HTTP/1.1 over TLS, or HTTP/2 chosen by ALPN) is another `listen(...)` call with an
`ssl` context and its own protocol factory over the same `ProxyState`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_mod
import time
from collections.abc import Callable
from typing import cast

import structlog

from core.errors import StartupError
from gate.proxy import ClientConnection
from gate.state import ProxyState

log = structlog.get_logger("gate.server")

# The sweeper walks every open connection; at tens of thousands (idle keep-alive clients), or when many
# expire together and are closed, one pass took a loop step of 100+ ms. It gives the loop back after
# this much of its own time (checked every SWEEP_CHECK_EVERY connections) and goes on where it stopped.
SWEEP_SLICE_S = 0.002
SWEEP_CHECK_EVERY = 16


def http1_protocol(state: ProxyState, scheme: str) -> asyncio.Protocol:
    """A new HTTP/1 connection. `ClientConnection` has `asyncio.Protocol`'s methods without deriving from it:
    its compiled form is a cdef class, which cannot derive from a Python class."""
    return cast(asyncio.Protocol, ClientConnection(state, scheme))


class EdgeServer:
    def __init__(self, state: ProxyState) -> None:
        self.state = state
        self.servers: list[asyncio.Server] = []
        self._sweeper: asyncio.Task[None] | None = None

    async def listen(
        self,
        host: str,
        port: int,
        *,
        scheme: str = "http",
        ssl: ssl_mod.SSLContext | None = None,
        factory: Callable[[], asyncio.Protocol] | None = None,
    ) -> int:
        """Bind and serve; returns the bound port. Raises StartupError when the address is taken."""
        loop = asyncio.get_running_loop()
        make = factory or (lambda: http1_protocol(self.state, scheme))
        try:
            server = await loop.create_server(make, host, port, ssl=ssl, backlog=2048, reuse_address=True)
        except OSError as e:
            raise StartupError(
                f"the gate cannot listen on {host}:{port}: {e.strerror or e}",
                hint="another program uses that port; stop it or choose another with --http-port",
            ) from e
        self.servers.append(server)
        bound = server.sockets[0].getsockname()[1]
        log.info("gate listening", host=host, port=bound, scheme=scheme)
        self.start_sweeper()
        return int(bound)

    def start_sweeper(self) -> None:
        """The one task that checks every connection's deadlines (started by the first listener)."""
        if self._sweeper is None:
            self._sweeper = self.state.tasks.spawn("sweeper", self._sweep())

    def _interval(self) -> float:
        c = self.state.config
        shortest = min(
            c.header_timeout_s, c.body_timeout_s, c.keepalive_timeout_s, c.upstream_timeout_s, c.send_timeout_s
        )
        return min(1.0, max(0.05, shortest / 4))

    async def _sweep(self) -> None:
        interval = self._interval()
        while True:
            await asyncio.sleep(interval)
            await self.sweep_once()

    async def sweep_once(self, slice_s: float = SWEEP_SLICE_S) -> int:
        """One pass over the connections' deadlines and the upstream pool, in slices of at most about
        `slice_s` of loop time; returns how many slices it took. A connection closed while the pass
        was away is skipped; the clock is read again after each pause."""
        clients = self.state.clients
        clock = self.state.clock
        now = clock()
        slices = 1
        resumed = False
        until = time.perf_counter() + slice_s
        for i, conn in enumerate(list(clients)):
            if i % SWEEP_CHECK_EVERY == 0 and i and time.perf_counter() >= until:
                await asyncio.sleep(0)
                slices += 1
                resumed = True
                now = clock()
                until = time.perf_counter() + slice_s
            if resumed and conn not in clients:
                continue
            try:
                conn.check_timeouts(now)
            except Exception as e:  # one broken connection must not stop the sweeper
                log.error("timeout check failed", error=repr(e), exc_info=e)
                conn.abort()
        self.state.pool.sweep(clock())
        return slices

    async def stop(self, drain_timeout_s: float) -> None:
        """Stop accepting, let in-flight requests finish (bounded), then close everything."""
        st = self.state
        drained = st.start_draining()
        for server in self.servers:
            server.close()
        for conn in list(st.clients):
            conn.drain()
        if st.clients:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(drained.wait(), drain_timeout_s)
        for conn in list(st.clients):
            conn.abort()
        st.pool.close_all()
        for server in self.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        self.servers.clear()
        await st.tasks.close()
        if st.access_log is not None:  # the last requests' lines (the sink stops after the gate)
            st.access_log.close()
        if st.owns_workers:
            await st.workers.stop(1.0)
        self._sweeper = None
