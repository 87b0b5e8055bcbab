"""HTTP/1.1 protocol decisions, pure: is a parsed request head safe to forward, how is its body
framed, and how is a response framed (the exact bytes of both heads: `gate.h1heads`).

Theory of operation: `httptools` (llhttp, strict mode) tokenizes; this module then refuses every shape
where two HTTP implementations could disagree on where a message ends (request smuggling): both
Content-Length and Transfer-Encoding, repeated or non-numeric Content-Length, any transfer coding but
a single `chunked`, Transfer-Encoding on HTTP/1.0, CR/LF/NUL in values, several Host headers, a Host
that is not a host, absolute-form whose authority differs from Host, dot-segments in the path. The
request is then re-serialized from the parsed fields with framing the gate chose (never the client's
raw bytes), so the upstream sees exactly the message the gate saw.
"""

from __future__ import annotations

from gate._upgrade import strip_h2c
from gate.router import parse_host_header

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"http2-settings",
    }
)
# The gate's own hop field (loop detection): the client's value is re-sent with this gate's id appended.
HOP_FIELD = b"x-infracore-hop"
FORWARDING = frozenset(
    {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-request-id", b"forwarded", b"x-real-ip"}
)
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})
REASONS = {
    100: "Continue",
    101: "Switching Protocols",
    200: "OK",
    204: "No Content",
    206: "Partial Content",
    301: "Moved Permanently",
    302: "Found",
    304: "Not Modified",
    308: "Permanent Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    414: "URI Too Long",
    416: "Range Not Satisfiable",
    417: "Expectation Failed",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
    508: "Loop Detected",
}


class HttpError(Exception):
    """A request the gate answers itself with `status` (the peer's fault when 4xx)."""

    def __init__(self, status: int, message: str, *, code: str = "", headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or REASONS.get(status, "error").lower().replace(" ", "_")
        self.headers = headers


class RequestInfo:
    """What the gate decided about a request head. (A plain class rather than a dataclass: compiled, it
    is a typed extension class, see `h1.pxd`, built in a fraction of a dataclass's time.)"""

    __slots__ = (
        "chunked",
        "connection_tokens",
        "content_length",
        "expect_continue",
        "hop",
        "host",
        "host_header",
        "lines",
        "target",
        "upgrade",
    )

    def __init__(
        self,
        host: str,
        host_header: bytes,
        target: str,
        content_length: int | None,
        chunked: bool,
        expect_continue: bool,
        upgrade: bytes | None,
        connection_tokens: frozenset[bytes],
        lines: list[bytes] | None = None,
        hop: bytes | None = None,
    ) -> None:
        self.host = host  # parsed, lowercased, without port
        self.host_header = host_header  # as received (sent upstream unchanged)
        self.target = target  # origin-form path + query
        self.content_length = content_length
        self.chunked = chunked
        self.expect_continue = expect_continue
        self.upgrade = upgrade  # the Upgrade header value when the client asks to switch protocols
        self.connection_tokens = connection_tokens
        # The fields forwarded as they are, as header-line pieces (name, ": ", value, CRLF): all but Host,
        # framing, hop-by-hop and forwarding fields. None when a Connection header names other fields
        # (which may come before it): the upstream head then filters the header list itself.
        self.lines = lines
        self.hop = hop  # the X-Infracore-Hop value received: ids of the gates the request passed through

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    def __repr__(self) -> str:
        return _repr(self)


def _repr(obj: object) -> str:
    fields = ", ".join(f"{name}={getattr(obj, name)!r}" for name in type(obj).__slots__)  # type: ignore[attr-defined]
    return f"{type(obj).__name__}({fields})"


# Single bytes as ints: `13 in data` is a plain memchr, while `b"\r" in data` first tries to read its
# argument as an int and raises/clears a TypeError inside CPython (~9x slower on short values).
NUL, LF, CR, HASH, PERCENT, COMMA, COLON, AT, BACKSLASH = 0, 10, 13, 35, 37, 44, 58, 64, 92


def _bad(msg: str, status: int = 400, code: str = "bad_request") -> HttpError:
    return HttpError(status, msg, code=code)


# Request header names (lowercase) → what check_request does with them; absent: forwarded as they are.
_H_HOST, _H_CL, _H_TE, _H_CONN, _H_EXPECT, _H_UPGRADE, _H_HOP, _H_FWD, _H_LOOP = 1, 2, 3, 4, 5, 6, 7, 8, 9
_REQ_KIND = {
    b"host": _H_HOST,
    b"content-length": _H_CL,
    b"transfer-encoding": _H_TE,
    b"connection": _H_CONN,
    b"expect": _H_EXPECT,
    b"upgrade": _H_UPGRADE,
}
_REQ_KIND |= {n: _H_HOP for n in HOP_BY_HOP if n not in _REQ_KIND}
_REQ_KIND |= {n: _H_FWD for n in FORWARDING}
_REQ_KIND[HOP_FIELD] = _H_LOOP
# The same keyed by names as received: clients repeat a few spellings, and one lookup of the raw name
# is cheaper than lowercasing it first. Bounded; names past the bound are lowercased every time.
_REQ_KIND_SEEN: dict[bytes, int] = {}
_NAMES_MAX = 2048
# Connection values clients send all the time (lowercased) → their tokens.
_REQ_CONNECTION = {v: frozenset({v}) for v in (b"keep-alive", b"close", b"upgrade")}
# Connection tokens that name no field the upstream head could still contain.
_STANDARD_TOKENS = HOP_BY_HOP | {b"close"}


def _req_kind(name: bytes) -> int:
    kind = _REQ_KIND.get(name.lower(), 0)
    if len(_REQ_KIND_SEEN) < _NAMES_MAX and len(name) <= 64:
        _REQ_KIND_SEEN[name] = kind
    return kind


def list_tokens(value: bytes) -> frozenset[bytes]:
    """The members of a comma-separated field value (`a, b,c` → {a, b, c}), as they are."""
    return frozenset([t.strip() for t in value.split(b",")])


def _bad_value(headers: list[tuple[bytes, bytes]]) -> HttpError:
    for name, value in headers:
        if NUL in value or CR in value or LF in value:
            return _bad(f"header {name.decode('latin-1')!r} has CR, LF or NUL in its value")
    return _bad("a header has CR, LF or NUL in its value")  # pragma: no cover - the caller found one


def check_request(method: bytes, url: bytes, version: str, headers: list[tuple[bytes, bytes]]) -> RequestInfo:
    """Validate a parsed request head; returns its framing, or raises HttpError (400/501/505)."""
    if version != "1.1" and version != "1.0":
        raise _bad(f"HTTP/{version} is not supported here", 505, "version_not_supported")
    # One scan of all values for CR/LF/NUL (llhttp already refuses them; this is the second line).
    values = b"\t".join([value for _, value in headers])
    if NUL in values or CR in values or LF in values:
        raise _bad_value(headers)
    host_header: bytes | None = None
    cl: bytes | None = None
    te: bytes | None = None
    repeated = 0  # bit (1 << kind) set: a Host, Content-Length or Transfer-Encoding seen again
    expect = b""
    upgrade: bytes | None = None
    hop: bytes | None = None
    conn: frozenset[bytes] = frozenset()
    lines: list[bytes] = []
    seen = _REQ_KIND_SEEN
    for name, value in headers:
        kind = seen.get(name, -1)
        if kind < 0:
            kind = _req_kind(name)
        if not kind:
            # (Four appends: compiled, each is a C list append; `+= (...)` would build a tuple per field.)
            lines.append(name)
            lines.append(b": ")
            lines.append(value)
            lines.append(b"\r\n")
        elif kind == _H_HOST:
            if host_header is not None:
                repeated |= 1 << _H_HOST
            host_header = value
        elif kind == _H_CL:
            if cl is not None:
                repeated |= 1 << _H_CL
            cl = value
        elif kind == _H_TE:
            if te is not None:
                repeated |= 1 << _H_TE
            te = value
        elif kind == _H_CONN:
            lv = value.lower()
            tokens = _REQ_CONNECTION.get(lv)
            conn = conn.union(tokens if tokens is not None else list_tokens(lv))
        elif kind == _H_EXPECT:
            expect = value.strip().lower()
        elif kind == _H_UPGRADE:
            upgrade = value.strip()
        elif kind == _H_LOOP:
            hop = value if hop is None else hop + b", " + value
    if cl is not None and te is not None:
        raise _bad("both Content-Length and Transfer-Encoding are present")
    content_length: int | None = None
    if cl is not None:
        if repeated & (1 << _H_CL):
            raise _bad("Content-Length is given more than once")
        raw = cl.strip()
        if not raw.isdigit() or len(raw) > 18:
            raise _bad(f"Content-Length {cl.decode('latin-1')!r} is not a number")
        content_length = int(raw)
    chunked = False
    if te is not None:
        if version == "1.0":
            raise _bad("Transfer-Encoding is not allowed in HTTP/1.0")
        if repeated & (1 << _H_TE) or te.strip().lower() != b"chunked":
            raise _bad("only 'Transfer-Encoding: chunked' is accepted", 501, "not_implemented")
        chunked = True
    if repeated & (1 << _H_HOST):
        raise _bad("Host is given more than once")
    if host_header is None:
        if version == "1.1":
            raise _bad("the Host header is missing")
        host_header = b""
    else:
        host_header = host_header.strip()
    target = url
    if url[:1] == b"/":
        pass
    elif url[:7].lower() == b"http://" or url[:8].lower() == b"https://":
        rest = url.split(b"://", 1)[1]
        slash = rest.find(b"/")
        authority, target = (rest, b"/") if slash < 0 else (rest[:slash], rest[slash:])
        if AT in authority:
            raise _bad("userinfo in the request target is not allowed")
        if not host_header:
            host_header = authority
        elif parse_host_header(authority) != parse_host_header(host_header):
            raise _bad("the absolute-form request target names a different host than the Host header")
    elif url == b"*" and method == b"OPTIONS":
        target = b"*"
    else:
        raise _bad("the request target must be a path starting with '/'")
    host = parse_host_header(host_header) if host_header else ""
    if host is None:
        raise _bad(f"Host {host_header.decode('latin-1')!r} is not a valid host")
    if HASH in target:
        raise _bad("a fragment ('#') is not allowed in the request target")
    if target.find(b"/.") >= 0 or PERCENT in target or BACKSLASH in target:
        path = target.split(b"?", 1)[0]
        if path.find(b"/.") >= 0 or path.lower().find(b"%2e") >= 0 or BACKSLASH in path:
            lowered = path.lower().replace(b"%2e", b".")
            for seg in lowered.split(b"/"):
                if seg in (b".", b".."):
                    raise _bad("dot-segments ('.' or '..') are not allowed in the path")
            if BACKSLASH in path:
                raise _bad("backslashes are not allowed in the path")
    if method == b"CONNECT":
        raise _bad("CONNECT is not supported by this gate", 501, "not_implemented")
    if expect and expect != b"100-continue":
        raise HttpError(417, f"Expect: {expect.decode('latin-1')} is not supported", code="expectation_failed")
    if upgrade is not None:
        if b"upgrade" not in conn:
            upgrade = None  # an Upgrade header without `Connection: upgrade` is only informational
        elif upgrade.lower().find(b"h2c") >= 0:
            upgrade = strip_h2c(upgrade)
    return RequestInfo(
        host,
        host_header,
        target.decode("latin-1"),
        content_length,
        chunked,
        expect == b"100-continue" and version == "1.1",
        upgrade,
        conn,
        lines if conn <= _STANDARD_TOKENS else None,
        hop,
    )


class ResponseFraming:
    """How the upstream framed a response, and how the gate frames it to its client (a plain class for
    the same reason as `RequestInfo`)."""

    __slots__ = (
        "body",
        "chunked_in",
        "chunked_out",
        "close_after",
        "connection_drop",
        "content_length",
        "keep_alive_header",
        "lines",
        "upstream_close",
    )

    def __init__(
        self,
        body: bool,
        content_length: int | None,
        chunked_in: bool,
        chunked_out: bool,
        close_after: bool,
        keep_alive_header: bool = False,
        connection_drop: frozenset[bytes] | None = None,
        upstream_close: bool = False,
        lines: list[bytes] | None = None,
    ) -> None:
        self.body = body  # whether a body follows at all
        self.content_length = content_length
        self.chunked_in = chunked_in
        self.chunked_out = chunked_out  # re-chunk towards the client
        self.close_after = close_after  # the client connection ends after this response
        self.keep_alive_header = keep_alive_header  # an HTTP/1.0 client asked for keep-alive: say yes explicitly
        # The response's Connection tokens beyond the standard hop-by-hop names (None: not scanned, e.g. a
        # framing made by the gate itself; the head builders then scan for themselves).
        self.connection_drop = connection_drop
        self.upstream_close = upstream_close  # the upstream said `Connection: close`: its connection is not reused
        # The upstream's fields an HTTP/1.1 client gets, as header-line pieces (name, ": ", value, CRLF),
        # rendered while framing (`response_framing(render=...)`); None: not rendered.
        self.lines = lines

    def close_after_response(self) -> None:
        """The client connection ends after this response (the exchange knows why: a closing client, an
        upgrade, a request body not read to its end)."""
        self.close_after = True

    def __repr__(self) -> str:
        return _repr(self)


# Response header names (lowercase) response_framing looks at; _R_DROP: other hop-by-hop fields.
_R_CL, _R_TE, _R_CONN, _R_DROP = 1, 2, 3, 4
_RESP_KIND = {n: _R_DROP for n in HOP_BY_HOP} | {
    b"content-length": _R_CL,
    b"transfer-encoding": _R_TE,
    b"connection": _R_CONN,
}
# Names as received → lowercased (upstreams repeat a few spellings; bounded like _REQ_KIND_SEEN).
_LOWER: dict[bytes, bytes] = {}
_NO_TOKENS: frozenset[bytes] = frozenset()
_COMMON_CONNECTION = {b"keep-alive": _NO_TOKENS, b"close": frozenset({b"close"})}  # lowered value → extra tokens


def _lower(name: bytes) -> bytes:
    lowered = name.lower()
    if len(_LOWER) < _NAMES_MAX and len(name) <= 64:
        _LOWER[name] = lowered
    return lowered


def response_framing(
    status: int,
    headers: list[tuple[bytes, bytes]],
    request_method: bytes,
    client_version: str,
    client_keep_alive: bool,
    render: frozenset[bytes] | None = None,
) -> ResponseFraming:
    """Decide framing from the upstream's response head. Raises HttpError(502) on an ambiguous one.
    With `render` (the names a route removes), the fields an HTTP/1.1 client gets are also rendered
    into `lines` in the same pass (see `ResponseFraming.lines`)."""
    cl: bytes | None = None
    te = False
    tokens = _NO_TOKENS
    close = False
    kinds = _RESP_KIND
    lower = _LOWER
    lines: list[bytes] | None = [] if render is not None else None
    for name, value in headers:
        ln = lower.get(name)
        if ln is None:
            ln = _lower(name)
        kind = kinds.get(ln)
        if kind is None:
            if lines is not None and ln not in render:  # type: ignore[operator]
                lines.append(name)
                lines.append(b": ")
                lines.append(value)
                lines.append(b"\r\n")
            continue
        if kind == _R_CL:
            # Repeated identical values ("5, 5" or two headers) are one length (RFC 9110 §8.6).
            cl = value if cl is None else cl + b"," + value
        elif kind == _R_TE:
            te = True
        elif kind == _R_CONN:
            lv = value.lower()
            if lv.find(b"close") >= 0:
                close = True
            extra = _COMMON_CONNECTION.get(lv)
            if extra is None:
                extra = list_tokens(lv) - HOP_BY_HOP
            if extra:
                tokens = tokens | extra
    if lines is not None and tokens and not tokens <= {b"close"}:
        lines = None  # the Connection header names fields, maybe ones rendered before it: filter later
    no_body = request_method == b"HEAD" or status == 204 or status == 304 or 100 <= status < 200
    if cl is not None and te:
        raise HttpError(502, "the upstream sent both Content-Length and Transfer-Encoding", code="bad_upstream")
    length: int | None = None
    if cl is not None:
        if COMMA in cl:
            vals = list_tokens(cl)
            raw = next(iter(vals)) if len(vals) == 1 else b""
        else:
            raw = cl.strip()
        if not raw.isdigit():
            raise HttpError(502, "the upstream sent an invalid Content-Length", code="bad_upstream")
        length = int(raw)
    ka10 = client_version == "1.0" and client_keep_alive
    if no_body:
        return ResponseFraming(False, length, False, False, not client_keep_alive, ka10, tokens, close, lines)
    if length is not None:
        return ResponseFraming(True, length, False, False, not client_keep_alive, ka10, tokens, close, lines)
    # Chunked or close-delimited upstream: re-chunk for an HTTP/1.1 client, else close-delimit.
    if client_version == "1.1":
        return ResponseFraming(True, None, te, True, not client_keep_alive, False, tokens, close, lines)
    return ResponseFraming(True, None, te, False, True, False, tokens, close, lines)


def connection_tokens(headers: list[tuple[bytes, bytes]] | tuple[tuple[bytes, bytes], ...]) -> frozenset[bytes]:
    """The (lowercased) tokens of a message's Connection headers."""
    return frozenset(
        t.strip().lower() for name, value in headers if name.lower() == b"connection" for t in value.split(b",")
    )


# Fields that never travel in a trailer section (RFC 9110 §6.5.1): framing, routing, controls and
# authentication; plus everything hop-by-hop.
NOT_IN_TRAILERS = HOP_BY_HOP | {
    b"content-length",
    b"content-type",
    b"content-encoding",
    b"content-range",
    b"host",
    b"expect",
    b"max-forwards",
    b"cache-control",
    b"age",
    b"expires",
    b"location",
    b"retry-after",
    b"vary",
    b"set-cookie",
    b"range",
    b"authorization",
    b"www-authenticate",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"cookie",
}


def trailer_fields(
    trailers: list[tuple[bytes, bytes]] | tuple[tuple[bytes, bytes], ...], remove: frozenset[bytes] = frozenset()
) -> list[tuple[bytes, bytes]]:
    """The trailer fields an upstream sent that the gate passes on (names as received): none that
    frame, route or control the message, none a Connection field names, none the route removes."""
    drop = NOT_IN_TRAILERS | connection_tokens(trailers) | remove
    return [(n, v) for n, v in trailers if n.lower() not in drop and CR not in v and LF not in v and NUL not in v]


def last_chunk(trailers: list[tuple[bytes, bytes]] | None, remove: frozenset[bytes] = frozenset()) -> bytes:
    """The end of a chunked body: the zero-size chunk, the allowed trailer fields, the empty line."""
    fields = trailer_fields(trailers, remove) if trailers else ()
    return b"".join([b"0\r\n", *(n + b": " + v + b"\r\n" for n, v in fields), b"\r\n"])


LAST_CHUNK = b"0\r\n\r\n"
