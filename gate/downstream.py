"""The seams of an `Exchange`: what it needs from its downstream (an HTTP/1.1 `ClientConnection` or an
HTTP/2 `H2Stream`) and from its upstream connection, as `typing.Protocol`s, and why reading stops.

An exchange reads only these members and changes the other objects only through these methods; each
connection class owns its fields. The type checker proves the two downstreams and the upstream
connection satisfy them (the `_conforms` check at the bottom). Typing only, apart from the `PAUSE_*`
ints the hot paths pass (plain ints: `Pause` arithmetic runs through the enum module's Python code);
nothing here is compiled, and the Protocols are never base classes of the hot (compiled) classes.
"""

from __future__ import annotations

from enum import IntFlag
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from gate.balancer import TargetHealth
    from gate.exchange import Exchange
    from gate.h1 import ResponseFraming
    from gate.state import ProxyState


class Pause(IntFlag):
    """Reasons a downstream stops reading its client, a bit each; it reads again when none is left."""

    PIPELINE = 1  # a pipelined request waits for the responses before it (HTTP/1.1)
    UPSTREAM_FULL = 2  # the upstream connection's write buffer is over its high-water mark
    BUFFERED = 4  # body bytes held before an upstream is attached (or before a tunnel) passed the high-water mark
    ERROR = 8  # a protocol error is being answered: nothing more is read


# The same bits as plain ints, for the hot paths (`paused` is an int; an IntFlag's `|`, `&`, `~` cost ~40x).
PAUSE_PIPELINE: Final = int(Pause.PIPELINE)
PAUSE_UPSTREAM_FULL: Final = int(Pause.UPSTREAM_FULL)
PAUSE_BUFFERED: Final = int(Pause.BUFFERED)
PAUSE_ERROR: Final = int(Pause.ERROR)


class Downstream(Protocol):
    """Where an exchange's response goes and whose reading it may pause."""

    @property
    def state(self) -> ProxyState: ...
    @property
    def client_ip(self) -> str: ...
    @property
    def trusted(self) -> bool: ...
    @property
    def scheme(self) -> str: ...
    @property
    def closing(self) -> bool: ...  # the connection closes after this response
    @property
    def closed(self) -> bool: ...
    @property
    def write_paused(self) -> bool: ...  # the client is not taking bytes as fast as they come
    @property
    def h1_heads(self) -> bool: ...  # response heads are HTTP/1.1 bytes (the exchange has fields rendered)

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
        """Queue a response head (it leaves with the next `flush`)."""

    def send_body(self, data: bytes, framing: ResponseFraming | None) -> None:
        """Queue body bytes (framed as `framing` says: chunked or not)."""

    def send_end(
        self,
        framing: ResponseFraming,
        trailers: list[tuple[bytes, bytes]] | None = None,
        remove: frozenset[bytes] = frozenset(),
    ) -> None:
        """End the body, with the upstream's trailer fields when there are any."""

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

    def send_continue(self) -> None:
        """An interim 100 Continue, now."""

    def send_switch(self, headers: list[tuple[bytes, bytes]], upgrade: bytes | None, rest: bytes) -> None:
        """The 101 head and the first tunnelled bytes (only asked of a downstream that took an Upgrade)."""

    def start_tunnel(self, upstream: UpstreamLink) -> None:
        """From now on, relay raw bytes both ways with `upstream`."""

    def tunnel_write(self, data: bytes) -> None:
        """Bytes from the upstream of a tunnel."""

    def tunnel_closed(self) -> None:
        """The upstream of a tunnel closed."""

    def flush(self) -> None:
        """Write what was queued."""

    def response_done(self, ex: Exchange, close: bool) -> None:
        """`ex` is finished (accounted); `close`: the connection must not carry another request."""

    def pause_reading_for(self, reason: int) -> None: ...
    def resume_reading_for(self, reason: int) -> None: ...

    async def wait_writable(self) -> None:
        """Returns once the client takes bytes again (or is gone)."""

    def abort(self) -> None:
        """The response cannot be completed: break the connection (or stream) off."""

    def close(self) -> None: ...


class UpstreamLink(Protocol):
    """The connection to an origin that carries one exchange at a time."""

    @property
    def target(self) -> TargetHealth: ...
    @property
    def requests(self) -> int: ...  # requests sent on it (>1: it was reused from the pool)
    @property
    def keep_alive(self) -> bool: ...  # it may carry another request after this response
    @property
    def deadline(self) -> float: ...  # loop time by which the origin must send something (0: none)

    def send_request(self, ex: Exchange, head: bytes, deadline: float) -> None:
        """Carry `ex`: write its request head (and what of the body is already here)."""

    def write(self, data: bytes) -> None: ...
    def write_chunk(self, data: bytes) -> None:
        """One chunk of a chunked request body."""

    def set_deadline(self, deadline: float) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def refuse_reuse(self) -> None:
        """The origin asked to close: not pooled after this response."""

    def start_tunnel(self, client: Downstream) -> None:
        """After a 101: relay raw bytes with `client` (no exchange, no deadline)."""

    def finish(self, reuse: bool) -> None:
        """The exchange is done with it: back to the pool when `reuse` and the origin allows, else closed."""

    def drop(self) -> None:
        """Close it, no longer carrying the exchange."""


if TYPE_CHECKING:
    from gate._h2stream import H2Stream
    from gate.proxy import ClientConnection
    from gate.upstream import UpstreamConnection

    def _conforms(
        c: ClientConnection, s: H2Stream, u: UpstreamConnection
    ) -> tuple[Downstream, Downstream, UpstreamLink]:
        return c, s, u  # mypy fails here if a class drifts from its Protocol
