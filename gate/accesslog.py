"""The gate's access log (`core.ports.AccessLogSink`): each request's line, rendered and collected in a
batch on the proxy's loop, compiled with the hot path (`gate.accel`); the sink gets whole batches.

Most of a line's strings repeat from request to request — the route, the upstream, the protocol, the
method, the host, a connection's client address — and escaping each as JSON was half the cost of the
line. Their JSON text is kept in a small bounded cache keyed by the raw string (escaping is a pure
function of it, so a cached fragment is byte for byte what `json.dumps` writes); only the path and the
request id, unique per request, are escaped each time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from json.encoder import encode_basestring_ascii as _esc  # json.dumps' own (ensure_ascii) string encoder
from typing import TYPE_CHECKING

import structlog

# Raw string -> its JSON text. Clients choose hosts and methods, so it is bounded: when full it starts over
# (a flood of distinct values costs what no cache would, never memory).
_QUOTED: dict[str | bytes, str] = {}
_QUOTED_MAX = 1024


def _q(s: str | bytes) -> str:
    """`s` as a JSON string (quoted, escaped, ASCII), from the cache when seen lately. A request's method
    comes as the parser's bytes (Latin-1): keyed by them, decoded only when not cached (a bytes key never
    equals a str key, so the two kinds cannot mix up)."""
    v = _QUOTED.get(s)
    if v is None:
        v = _esc(s.decode("latin-1") if isinstance(s, bytes) else s)
        if len(_QUOTED) >= _QUOTED_MAX:
            _QUOTED.clear()
        _QUOTED[s] = v
    return v


def access_line(
    at_us: int,
    host: str,
    method: str | bytes,
    path: str,
    status: int,
    bytes_sent: int,
    duration_us: int,
    upstream: str | None,
    client_ip: str,
    request_id: str,
    route: str | None,
    protocol: str,
    bytes_received: int,
    upstream_us: int,
) -> str:
    """One request's access-log line: a JSON object with the keys of `core.ports.ACCESS_LOG_FIELDS` in
    order, strings escaped exactly as json's own encoder does. The times come as integer microseconds
    (`upstream_us` -1: none) and are written as decimals from them — `at` in seconds with 6 places, the
    durations in ms with 3 — since a float's shortest repr (what json.dumps writes) costs half the line."""
    return _render(
        at_us,
        _head(host, method),
        path,
        status,
        bytes_sent,
        duration_us,
        _middle(upstream, client_ip),
        request_id,
        _tail(route, _q(protocol)),
        bytes_received,
        upstream_us,
    )


# A line is fixed text, the per-request values, and three fragments of the values that repeat from request
# to request, each with the keys around it: rendering joins 20 pieces instead of 36 (the join was half the
# line's cost), and a batch keeps the last fragments it made (see `AccessBatch.add`).
def _head(host: str, method: str | bytes) -> str:
    return f',"host":{_q(host)},"method":{_q(method)},"path":'


def _middle(upstream: str | None, client_ip: str) -> str:
    return f',"upstream":{"null" if upstream is None else _q(upstream)},"client_ip":{_q(client_ip)},"request_id":'


def _tail(route: str | None, protocol_q: str) -> str:
    return f',"route":{"null" if route is None else _q(route)},"protocol":{protocol_q},"bytes_received":'


def _render(
    at_us: int,
    head: str,
    path: str,
    status: int,
    bytes_sent: int,
    duration_us: int,
    middle: str,
    request_id: str,
    tail: str,
    bytes_received: int,
    upstream_us: int,
) -> str:
    """`access_line` with the repeating values already as their fragments (`_head`, `_middle`, `_tail`)."""
    if upstream_us < 0:
        return (
            f'{{"at":{at_us // 1_000_000}.{at_us % 1_000_000:06d}{head}{_esc(path)},"status":{status},'
            f'"bytes_sent":{bytes_sent},"duration_ms":{duration_us // 1000}.{duration_us % 1000:03d}{middle}'
            f'{_esc(request_id)}{tail}{bytes_received},"upstream_ms":null}}\n'
        )
    return (
        f'{{"at":{at_us // 1_000_000}.{at_us % 1_000_000:06d}{head}{_esc(path)},"status":{status},'
        f'"bytes_sent":{bytes_sent},"duration_ms":{duration_us // 1000}.{duration_us % 1000:03d}{middle}'
        f'{_esc(request_id)}{tail}{bytes_received},"upstream_ms":{upstream_us // 1000}.{upstream_us % 1000:03d}}}\n'
    )


if TYPE_CHECKING:
    from core.ports import AccessLogSink

log = structlog.get_logger("gate.accesslog")

# An HTTP version as the parsers give it -> its `protocol` field's JSON text.
_PROTOCOLS = {"1.1": '"HTTP/1.1"', "1.0": '"HTTP/1.0"', "2": '"HTTP/2"'}


class AccessBatch:
    """The open batch of access-log lines, in front of the sink; compiled, a typed class (`accesslog.pxd`).
    `add` renders a finished request's line into it (a C call from the exchange, nothing boxed but the
    line); the sink gets the lines as one list (`record_lines`) once the batch has the sink's
    `access_batch_lines` lines or `access_batch_chars` characters, `access_batch_s` after its first line
    (a loop timer, armed only while a batch is open), and at `close()` (the gate's stop). The loop thread
    only."""

    __slots__ = (
        "at_offset",
        "chars",
        "closed",
        "first_at",
        "head",
        "head_host",
        "head_method",
        "lines",
        "max_chars",
        "max_lines",
        "max_s",
        "middle",
        "middle_client",
        "middle_upstream",
        "sink",
        "tail",
        "tail_route",
        "tail_version",
        "timer",
        "timer_handle",
        "wall_clock",
    )

    def __init__(self, sink: AccessLogSink, wall_clock: Callable[[], float], timer: Callable[[], float]) -> None:
        self.sink = sink
        self.wall_clock = wall_clock
        self.timer = timer  # the exchanges' duration timer: a line's wall time is derived from its start on it
        self.max_lines = max(1, int(sink.access_batch_lines))
        self.max_chars = max(1, int(sink.access_batch_chars))
        self.max_s = float(sink.access_batch_s)
        self.lines: list[str] = []
        self.chars = 0
        self.first_at = 0.0  # wall time the open batch's first line came (its chunk's stamp)
        # wall clock - timer, read when a batch opens: one clock read per batch, not per request (the two
        # drift apart by far less than a microsecond within one batch interval).
        self.at_offset = 0.0
        self.timer_handle: asyncio.TimerHandle | None = None
        self.closed = False
        # The last fragments made and the values they were made from: consecutive requests mostly repeat
        # them (a keep-alive connection, a busy route), so a line usually costs six string compares
        # instead of six cache lookups and three joins. Compared by value, never trusted by identity.
        self.head_host, self.head_method, self.head = "", b"", _head("", b"")
        self.middle_upstream: str | None = None
        self.middle_client, self.middle = "", _middle(None, "")
        self.tail_route: str | None = None
        self.tail_version, self.tail = "", _tail(None, _esc("HTTP/"))  # as `add` renders version ""

    def add(
        self,
        started: float,
        ended: float,
        host: str,
        method: bytes,
        path: str,
        status: int,
        bytes_sent: int,
        upstream: str | None,
        client_ip: str,
        request_id: str,
        route: str | None,
        version: str,
        bytes_received: int,
        upstream_ms: float | None,
    ) -> None:
        """One finished request: `started`/`ended` on `timer`, `upstream_ms` from sending upstream to its
        response head (None: none); the rest as `access_line` takes them. Never raises."""
        lines = self.lines
        if not lines:
            self._open()
        at = started + self.at_offset
        if host != self.head_host or method != self.head_method:
            self.head_host, self.head_method, self.head = host, method, _head(host, method)
        if upstream != self.middle_upstream or client_ip != self.middle_client:
            self.middle_upstream, self.middle_client = upstream, client_ip
            self.middle = _middle(upstream, client_ip)
        if route != self.tail_route or version != self.tail_version:
            self.tail_route, self.tail_version = route, version
            self.tail = _tail(route, _PROTOCOLS.get(version) or _esc(f"HTTP/{version}"))
        line = _render(
            int(at * 1_000_000 + 0.5),
            self.head,
            path,
            status,
            bytes_sent,
            int((ended - started) * 1_000_000 + 0.5),
            self.middle,
            request_id,
            self.tail,
            bytes_received,
            -1 if upstream_ms is None else int(upstream_ms * 1000 + 0.5),
        )
        lines.append(line)
        self.chars += len(line)
        if len(lines) >= self.max_lines or self.chars >= self.max_chars or self.closed:
            self.flush()

    def _open(self) -> None:
        now = self.wall_clock()
        self.first_at = now
        self.at_offset = now - self.timer()
        if self.max_lines > 1 and not self.closed:
            try:
                self.timer_handle = asyncio.get_running_loop().call_later(self.max_s, self.flush)
            except RuntimeError:  # no loop (a direct call): the line is handed over at once
                self.closed = True

    def flush(self) -> None:
        """Hand the open batch to the sink now (the timer's callback, and `close`). Never raises."""
        handle = self.timer_handle
        if handle is not None:
            self.timer_handle = None
            handle.cancel()
        lines = self.lines
        if not lines:
            return
        self.lines = []
        self.chars = 0
        try:
            self.sink.record_lines(lines, self.first_at)
        except Exception as e:  # the sink must not raise; if it does, the requests still succeed
            log.warning("access log sink failed", error=repr(e), lines=len(lines))

    def close(self) -> None:
        """The gate stops: the open batch goes now, and any line after this at once (no timer)."""
        self.closed = True
        self.flush()
