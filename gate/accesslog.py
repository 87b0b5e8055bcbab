"""The access-log line the gate renders for every request (`core.ports.AccessLogSink`): pure, and compiled
with the hot path (`gate.accel`).

Most of a line's strings repeat from request to request — the route, the upstream, the protocol, the
method, the host, a connection's client address — and escaping each as JSON was half the cost of the
line. Their JSON text is kept in a small bounded cache keyed by the raw string (escaping is a pure
function of it, so a cached fragment is byte for byte what `json.dumps` writes); only the path and the
request id, unique per request, are escaped each time.
"""

from __future__ import annotations

from json.encoder import encode_basestring_ascii as _esc  # json.dumps' own (ensure_ascii) string encoder

# Raw string -> its JSON text. Clients choose hosts and methods, so it is bounded: when full it starts over
# (a flood of distinct values costs what no cache would, never memory).
_QUOTED: dict[str, str] = {}
_QUOTED_MAX = 1024


def _q(s: str) -> str:
    """`s` as a JSON string (quoted, escaped, ASCII), from the cache when seen lately."""
    v = _QUOTED.get(s)
    if v is None:
        v = _esc(s)
        if len(_QUOTED) >= _QUOTED_MAX:
            _QUOTED.clear()
        _QUOTED[s] = v
    return v


def access_line(at_us: int, host: str, method: str, path: str, status: int, bytes_sent: int, duration_us: int,
                upstream: str | None, client_ip: str, request_id: str, route: str | None, protocol: str,
                bytes_received: int, upstream_us: int) -> str:
    """One request's access-log line: a JSON object with the keys of `core.ports.ACCESS_LOG_FIELDS` in
    order, strings escaped exactly as json's own encoder does, in one f-string. The times come as integer
    microseconds (`upstream_us` -1: none) and are written as decimals from them — `at` in seconds with 6
    places, the durations in ms with 3 — since a float's shortest repr (what json.dumps writes) costs half
    the line."""
    return (f'{{"at":{at_us // 1_000_000}.{at_us % 1_000_000:06d},"host":{_q(host)},"method":{_q(method)},'
            f'"path":{_esc(path)},"status":{status},"bytes_sent":{bytes_sent},'
            f'"duration_ms":{duration_us // 1000}.{duration_us % 1000:03d},'
            f'"upstream":{"null" if upstream is None else _q(upstream)},"client_ip":{_q(client_ip)},'
            f'"request_id":{_esc(request_id)},"route":{"null" if route is None else _q(route)},'
            f'"protocol":{_q(protocol)},"bytes_received":{bytes_received},"upstream_ms":'
            f'{"null" if upstream_us < 0 else f"{upstream_us // 1000}.{upstream_us % 1000:03d}"}}}\n')
