"""The gate's access log in batches: entries are appended to a list on the proxy's loop (no lock, no
cross-thread wake-up per request) and rendered to JSON lines in bulk, one intake item per batch.

A line is exactly what `json.dumps(entry_as_dict, separators=(",", ":"))` gives (keys in field order,
ASCII-escaped strings), built with one f-string per entry instead of a dict and an encoder per entry
(~1.4 µs instead of ~8 µs); the writer thread gets one chunk of lines per batch to write as is.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii as _esc  # what json.dumps uses for str (ensure_ascii)

from core.ports import AccessLogEntry

FIELDS = tuple(AccessLogEntry.__dataclass_fields__)

if FIELDS != ("at", "host", "method", "path", "status", "bytes_sent", "duration_ms", "upstream", "client_ip",
              "request_id", "route", "protocol", "bytes_received", "upstream_ms"):
    raise ImportError("logbus.access: AccessLogEntry's fields changed; update `render`")


def render_one(e: AccessLogEntry) -> bytes:
    """The reference rendering (and the fallback for an entry the template cannot take)."""
    return json.dumps({k: getattr(e, k) for k in FIELDS}, separators=(",", ":"), default=str).encode() + b"\n"


def render(entries: list[AccessLogEntry]) -> bytes:
    """The entries as JSON lines, in order, one per entry; never raises for an odd entry (the slow
    path renders it)."""
    out: list[str] = []
    add = out.append
    for e in entries:
        # One f-string per entry (~1.4 µs; a %-template ~1.7, a dict + json.dumps ~8). repr of an int or a
        # finite float is what json writes; a non-finite one never comes (durations, epoch seconds).
        try:
            u, r, um = e.upstream, e.route, e.upstream_ms
            add(f'{{"at":{e.at!r},"host":{_esc(e.host)},"method":{_esc(e.method)},"path":{_esc(e.path)},'
                f'"status":{e.status!r},"bytes_sent":{e.bytes_sent!r},"duration_ms":{e.duration_ms!r},'
                f'"upstream":{"null" if u is None else _esc(u)},"client_ip":{_esc(e.client_ip)},'
                f'"request_id":{_esc(e.request_id)},"route":{"null" if r is None else _esc(r)},'
                f'"protocol":{_esc(e.protocol)},"bytes_received":{e.bytes_received!r},'
                f'"upstream_ms":{"null" if um is None else repr(um)}}}\n')
        except Exception:
            add(render_one(e).decode())
    return "".join(out).encode()
