"""HTTP/2 ↔ HTTP/1.1 decisions, pure: an HTTP/2 request head turned into the header list and
`RequestInfo` the HTTP/1.1 exchange forwards; an HTTP/1.1 response head turned into an HTTP/2 header
list; and the flood budgets that cut off rapid-reset and control-frame floods.

An HTTP/2 request arrives as separate fields, and the gate writes it upstream as an HTTP/1.1 text head:
any byte that means something in that text (a space or tab in `:method` or `:path`, a control byte in a
value) would let the request the upstream parses differ from the one the gate routed and filtered.
So a request is accepted only when its HTTP/1.1 head parses back to exactly the same method, target and
fields (the rules of RFC 9113 §8.2-8.3 and RFC 9110 §5.5, 5.6.2, 7.1, which are what llhttp, the
gate's own HTTP/1.1 parser, enforces for HTTP/1.1 clients; `tests/gate/test_h2_head_roundtrip.py` checks
it with httptools):
- pseudo-headers: each of `:method`, `:scheme`, `:path`, `:authority` at most once, before every
  regular field; `:method`, `:scheme`, `:path` present (CONNECT and `:protocol` are answered 501);
- `:method`: a token (RFC 9110 §5.6.2), and one of the methods llhttp knows (others: 501);
- `:path`: origin-form `/` + visible ASCII (no space, control byte, DEL or byte ≥ 0x80), or `*` for
  OPTIONS; never absolute-form (RFC 9113 §8.3.1);
- `:authority` (or `host` without it): visible ASCII, no userinfo; a `host` that disagrees is refused;
- regular fields: lowercase token names; values without NUL, CR, LF, other control bytes (HTAB
  excepted) or DEL, and without leading or trailing whitespace; no connection-specific fields; `te`
  only `trailers`; one `host` at most; a `content-length` above 0 only when a body follows.
A violation answers 400 on its stream (501 for an unknown method) and nothing goes upstream. Several
`cookie` fields are joined with "; " (RFC 9113 §8.2.3); a request without `content-length` that has a
body is forwarded chunked.
"""

from __future__ import annotations

import re

from gate.h1 import HOP_BY_HOP, HttpError, RequestInfo, ResponseFraming, check_request, trailer_fields

_DROP_RESPONSE = HOP_BY_HOP | {b"content-length"}
# RFC 9113 §8.2: lowercase names; we also require HTTP/1.1 token characters, since names go upstream as is.
_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+\Z")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
# RFC 9110 §5.5: field-value = visible ASCII, SP, HTAB, obs-text (0x80-0xff); no surrounding whitespace.
_VALUE_BAD = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]|\A[ \t]|[ \t]\Z")
_ORIGIN_FORM = re.compile(rb"/[\x21-\x7e]*\Z")
_AUTHORITY = re.compile(rb"[\x21-\x3f\x41-\x7e]+\Z")  # visible ASCII without '@' (no userinfo)
# The methods llhttp accepts in an HTTP/1.x request line (httptools 0.9 refuses every other token, as
# the gate's own HTTP/1.1 front does); CONNECT is refused before this set is consulted.
H1_METHODS = frozenset(
    {
        b"GET",
        b"HEAD",
        b"POST",
        b"PUT",
        b"DELETE",
        b"OPTIONS",
        b"TRACE",
        b"PATCH",
        b"COPY",
        b"LOCK",
        b"MKCOL",
        b"MOVE",
        b"PROPFIND",
        b"PROPPATCH",
        b"SEARCH",
        b"UNLOCK",
        b"BIND",
        b"REBIND",
        b"UNBIND",
        b"ACL",
        b"REPORT",
        b"MKACTIVITY",
        b"CHECKOUT",
        b"MERGE",
        b"M-SEARCH",
        b"NOTIFY",
        b"SUBSCRIBE",
        b"UNSUBSCRIBE",
        b"PURGE",
        b"MKCALENDAR",
        b"LINK",
        b"UNLINK",
        b"SOURCE",
        b"QUERY",
    }
)
_CONNECTION_SPECIFIC = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})
_PSEUDO = frozenset({b":method", b":path", b":authority", b":scheme", b":protocol"})
# Regular fields that passed `check_field` (a pure function of the field), so the ones every request
# repeats (user-agent, accept...) are checked once per process. Bounded; credentials never kept.
_CHECKED: set[tuple[bytes, bytes]] = set()
_CHECKED_MAX_ENTRIES = 4096
_CHECKED_MAX_FIELD_BYTES = 256
_NOT_KEPT = frozenset({b"authorization", b"proxy-authorization", b"cookie"})


def _malformed(msg: str) -> HttpError:
    return HttpError(400, f"malformed HTTP/2 request: {msg}", code="malformed_request")


def _show(value: bytes, limit: int = 60) -> str:
    """A client-supplied value for an error message: quoted, escaped, cut short."""
    return repr(value[:limit].decode("latin-1")) + ("..." if len(value) > limit else "")


def check_field(name: bytes, value: bytes) -> None:
    """One regular field of an HTTP/2 header block (RFC 9113 §8.2.1, §8.2.2); raises HttpError(400)."""
    if not _NAME.match(name):
        shown = name.decode("latin-1")
        if name.lower() != name:
            raise _malformed(f"field name {shown!r} has uppercase letters")
        raise _malformed(f"field name {shown!r} has characters not allowed in a field name")
    bad = _VALUE_BAD.search(value)
    if bad is not None:
        c = bad.group()[0]
        if c == 0x20 or c == 0x09:
            raise _malformed(f"field {name.decode('latin-1')!r} has surrounding whitespace in its value")
        raise _malformed(
            f"field {name.decode('latin-1')!r} has the control byte 0x{c:02x} in its value "
            "(no control characters but HTAB, and no DEL)"
        )
    if name in _CONNECTION_SPECIFIC:
        raise _malformed(f"connection-specific field {name.decode('latin-1')!r} is not allowed in HTTP/2")
    if name == b"te" and value.lower() != b"trailers":
        raise _malformed("te may only be 'trailers' in HTTP/2")


def h2_request(
    headers: list[tuple[bytes, bytes]], *, ended: bool, max_count: int, max_path_bytes: int
) -> tuple[bytes, list[tuple[bytes, bytes]], RequestInfo]:
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
            if name == b":method":
                method = value
            elif name == b":path":
                path = value
            elif name == b":authority":
                authority = value
            elif name == b":scheme":
                scheme = value
            elif name == b":protocol":
                raise HttpError(
                    501, "extended CONNECT (:protocol) is not supported by this gate", code="not_implemented"
                )
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
                if host is not None:
                    raise _malformed("the host field is repeated")
                host = value
                continue
            out.append((name, value))
    if method == b"CONNECT":
        raise HttpError(501, "CONNECT is not supported by this gate", code="not_implemented")
    if method is None or not path or scheme is None:
        raise _malformed("the request lacks :method, :path or :scheme")
    if method not in H1_METHODS:
        if not _TOKEN.match(method):
            raise _malformed(f":method {_show(method)} is not a method name (letters, digits and !#$%&'*+-.^_`|~ only)")
        raise HttpError(501, f"method {method.decode('ascii')} is not supported by this gate", code="not_implemented")
    if scheme not in (b"https", b"http"):
        raise HttpError(400, f":scheme {_show(scheme)} is not http or https")
    if len(path) > max_path_bytes:
        raise HttpError(414, f"the request target is longer than {max_path_bytes} bytes")
    if not _ORIGIN_FORM.match(path) and path != b"*":
        if path[:1] != b"/":
            raise _malformed(f":path {_show(path)} must be a path starting with '/' (or * for OPTIONS)")
        raise _malformed(f":path {_show(path)} has a space, control byte, DEL or non-ASCII byte; percent-encode them")
    if authority is None:
        authority = host
    elif host is not None and host != authority:
        raise _malformed("the host field names a different host than :authority")
    if not authority:
        raise HttpError(400, "the request has neither :authority nor host")
    if not _AUTHORITY.match(authority):
        raise _malformed(f"the authority {_show(authority)} has a space, control byte, '@' or non-ASCII byte")
    if cookies:
        out.append((b"cookie", b"; ".join(cookies)))
    out.append((b"host", authority))
    if len(out) > max_count:
        raise HttpError(431, f"the request has more than {max_count} headers")
    info = check_request(method, path, "1.1", out)
    if ended:
        if info.content_length:
            # HEADERS with END_STREAM: no DATA follows, and h2 checks a length only against DATA frames.
            # Forwarded, the upstream would wait for (or take the next request as) the missing body.
            raise _malformed(f"content-length is {info.content_length} but the request has no body (RFC 9113 §8.1.1)")
        info.chunked = False
        info.expect_continue = False
    elif info.content_length is None:
        info.chunked = True  # a body of unannounced length: forwarded chunked
    info.upgrade = None  # HTTP/2 has no Upgrade
    return method, out, info


def request_last_chunk(fields: list[tuple[bytes, bytes]]) -> bytes:
    """An HTTP/2 request's trailer fields as the last chunk of the chunked body sent upstream: malformed
    and pseudo fields, and fields that must not be trailers (content-length, host, te), left out."""
    lines = [b"0\r\n"]
    for name, value in fields:
        try:
            check_field(name, value)
        except HttpError:
            continue
        if name not in (b"content-length", b"host", b"te"):
            lines += (name, b": ", value, b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


def h2_response_headers(
    status: int,
    headers: list[tuple[bytes, bytes]] | tuple[tuple[bytes, bytes], ...],
    framing: ResponseFraming | None,
    extra: tuple[tuple[bytes, bytes], ...] = (),
    remove: frozenset[bytes] = frozenset(),
    via: bytes | None = None,
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


def h2_trailers(
    trailers: list[tuple[bytes, bytes]], remove: frozenset[bytes] = frozenset()
) -> list[tuple[bytes, bytes]]:
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
