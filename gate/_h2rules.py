"""HTTP/2 ↔ HTTP/1.1 decisions, pure: an HTTP/2 request head (already validated by h2 for pseudo-header
order, lowercase names and connection-specific fields) turned into the header list and `RequestInfo`
the HTTP/1.1 exchange forwards; an HTTP/1.1 response head turned into an HTTP/2 header list; and the
flood budgets that cut off rapid-reset and control-frame floods.

`:authority` plays the role of Host (a `host` field that disagrees with it is refused); several
`cookie` fields are joined with "; " for the HTTP/1.1 upstream (RFC 9113 §8.2.3); a request without
`content-length` that has a body is forwarded chunked.
"""

from __future__ import annotations

import re

from gate.h1 import CR, HOP_BY_HOP, LF, NUL, HttpError, RequestInfo, ResponseFraming, check_request, trailer_fields

_DROP_RESPONSE = HOP_BY_HOP | {b"content-length"}
# RFC 9113 §8.2: lowercase names; we also require HTTP/1.1 token characters, since names go upstream as is.
_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+\Z")
_VALUE_BAD = re.compile(rb"[\x00\r\n]|\A[ \t]|[ \t]\Z")
_CONNECTION_SPECIFIC = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
                                  b"upgrade"})
_PSEUDO = frozenset({b":method", b":path", b":authority", b":scheme", b":protocol"})
# Regular fields that passed `check_field` (a pure function of the field), so the ones every request
# repeats (user-agent, accept...) are checked once per process. Bounded; credentials never kept.
_CHECKED: set[tuple[bytes, bytes]] = set()
_CHECKED_MAX_ENTRIES = 4096
_CHECKED_MAX_FIELD_BYTES = 256
_NOT_KEPT = frozenset({b"authorization", b"proxy-authorization", b"cookie"})


def _malformed(msg: str) -> HttpError:
    return HttpError(400, f"malformed HTTP/2 request: {msg}", code="malformed_request")


def check_field(name: bytes, value: bytes) -> None:
    """One regular field of an HTTP/2 header block (RFC 9113 §8.2.1, §8.2.2); raises HttpError(400)."""
    if not _NAME.match(name):
        shown = name.decode("latin-1")
        if name.lower() != name:
            raise _malformed(f"field name {shown!r} has uppercase letters")
        raise _malformed(f"field name {shown!r} has characters not allowed in a field name")
    if _VALUE_BAD.search(value):
        raise _malformed(f"field {name.decode('latin-1')!r} has NUL, CR or LF, or surrounding whitespace in its value")
    if name in _CONNECTION_SPECIFIC:
        raise _malformed(f"connection-specific field {name.decode('latin-1')!r} is not allowed in HTTP/2")
    if name == b"te" and value.lower() != b"trailers":
        raise _malformed("te may only be 'trailers' in HTTP/2")


def h2_request(headers: list[tuple[bytes, bytes]], *, ended: bool, max_count: int,
               max_path_bytes: int) -> tuple[bytes, list[tuple[bytes, bytes]], RequestInfo]:
    """(method, HTTP/1.1-style header list with `host`, RequestInfo), or HttpError (400/414/431/501).

    Also does in one pass the checks h2's own (per-byte, generator-chained) inbound validation would:
    field names and values, pseudo-headers first and once, no connection-specific fields."""
    method = path = authority = scheme = host = None
    out: list[tuple[bytes, bytes]] = []
    cookies: list[bytes] = []
    seen: set[bytes] = set()
    checked = _CHECKED
    for field in headers:
        name, value = field
        if name[:1] == b":":
            if out or cookies or host is not None:
                raise _malformed(f"pseudo-header {name.decode('latin-1')} after a regular field")
            if name in seen and name in _PSEUDO:
                raise _malformed(f"pseudo-header {name.decode('latin-1')} is repeated")
            seen.add(name)
            if NUL in value or CR in value or LF in value:
                raise _malformed(f"pseudo-header {name.decode('latin-1')} has NUL, CR or LF in its value")
            if name == b":method":
                method = value
            elif name == b":path":
                path = value
            elif name == b":authority":
                authority = value
            elif name == b":scheme":
                scheme = value
            elif name == b":protocol":
                raise HttpError(501, "extended CONNECT (:protocol) is not supported by this gate",
                                code="not_implemented")
            else:
                raise HttpError(400, f"unknown pseudo-header {name.decode('latin-1')}")
        else:
            if field not in checked:
                check_field(name, value)
                if len(name) + len(value) <= _CHECKED_MAX_FIELD_BYTES and name not in _NOT_KEPT:
                    if len(checked) >= _CHECKED_MAX_ENTRIES:
                        checked.clear()
                    checked.add((name, value))
            if name == b"cookie":
                cookies.append(value)
                continue
            if name == b"host":
                host = value
                continue
            out.append((name, value))
    if method == b"CONNECT":
        raise HttpError(501, "CONNECT is not supported by this gate", code="not_implemented")
    if method is None or not path or scheme is None:
        raise _malformed("the request lacks :method, :path or :scheme")
    if scheme not in (b"https", b"http"):
        raise HttpError(400, f":scheme {scheme.decode('latin-1')!r} is not http or https")
    if len(path) > max_path_bytes:
        raise HttpError(414, f"the request target is longer than {max_path_bytes} bytes")
    if authority is None:
        authority = host
    elif host is not None and host != authority:
        raise _malformed("the host field names a different host than :authority")
    if not authority:
        raise HttpError(400, "the request has neither :authority nor host")
    if cookies:
        out.append((b"cookie", b"; ".join(cookies)))
    out.append((b"host", authority))
    if len(out) > max_count:
        raise HttpError(431, f"the request has more than {max_count} headers")
    info = check_request(method, path, "1.1", out)
    if ended:
        info.chunked = False
        info.expect_continue = False
    elif info.content_length is None:
        info.chunked = True  # a body of unannounced length: forwarded chunked
    info.upgrade = None  # HTTP/2 has no Upgrade
    return method, out, info


def h2_response_headers(status: int, headers: list[tuple[bytes, bytes]] | tuple[tuple[bytes, bytes], ...],
                        framing: ResponseFraming | None, extra: tuple[tuple[bytes, bytes], ...] = (),
                        remove: frozenset[bytes] = frozenset(), via: bytes | None = None,
                        ) -> list[tuple[bytes, bytes]]:
    """An HTTP/1.1 response head as HTTP/2 fields: `:status` first, names lowercased, hop-by-hop and
    Connection-named fields dropped, the length kept when it is known."""
    out: list[tuple[bytes, bytes]] = [(b":status", b"%d" % status)]
    drop = _DROP_RESPONSE | remove if remove else _DROP_RESPONSE
    named: set[bytes] | None = None  # fields the Connection header names: dropped too
    for name, value in headers:
        n = name.lower()
        if n in drop:
            if n == b"connection":
                named = (named or set()) | {t.strip().lower() for t in value.split(b",")}
        else:
            out.append((n, value))
    if named:
        out = [out[0], *(f for f in out[1:] if f[0] not in named)]
    for name, value in extra:
        out.append((name.lower(), value))
    if via:
        out.append((b"via", b"2 " + via.split(b" ", 1)[-1]))
    if framing is not None and framing.content_length is not None and status >= 200 and status not in (204, 304):
        out.append((b"content-length", b"%d" % framing.content_length))
    return out


def h2_trailers(trailers: list[tuple[bytes, bytes]],
                remove: frozenset[bytes] = frozenset()) -> list[tuple[bytes, bytes]]:
    """An upstream's HTTP/1.1 trailer fields as HTTP/2 trailer fields: lowercase names, only the fields
    a trailer section may carry (`gate.h1.trailer_fields`), no pseudo-headers."""
    return [(n.lower(), v) for n, v in trailer_fields(trailers, remove) if _NAME.match(n.lower())]


class FloodBudget:
    """A token bucket over events a peer can send cheaply and make us work for (stream resets of
    unfinished streams, PINGs, SETTINGS). `take(now)` is False once the peer is over budget."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp: float | None = None

    def take(self, now: float, n: float = 1.0) -> bool:
        if self.stamp is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= n
        return self.tokens >= 0
