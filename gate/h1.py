"""HTTP/1.1 protocol decisions, pure: is a parsed request head safe to forward, how is its body
framed, and what exact bytes go upstream and back to the client.

Theory of operation: `httptools` (llhttp, strict mode) tokenizes; this module then refuses every shape
where two HTTP implementations could disagree on where a message ends (request smuggling): both
Content-Length and Transfer-Encoding, repeated or non-numeric Content-Length, any transfer coding but
a single `chunked`, Transfer-Encoding on HTTP/1.0, CR/LF/NUL in values, several Host headers, a Host
that is not a host, absolute-form whose authority differs from Host, dot-segments in the path. The
request is then re-serialized from the parsed fields with framing the gate chose (never the client's
raw bytes), so the upstream sees exactly the message the gate saw.
"""

from __future__ import annotations

from dataclasses import dataclass

from gate.router import parse_host_header

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade",
    b"proxy-authenticate", b"proxy-authorization", b"http2-settings",
})
_DROP_RESPONSE = HOP_BY_HOP | {b"content-length"}
_DROP_REQUEST = HOP_BY_HOP | {b"content-length", b"expect"}
FORWARDING = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-request-id",
                        b"forwarded", b"x-real-ip"})
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})
REASONS = {
    100: "Continue", 101: "Switching Protocols", 200: "OK", 204: "No Content", 206: "Partial Content",
    301: "Moved Permanently", 302: "Found", 304: "Not Modified", 308: "Permanent Redirect",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    408: "Request Timeout", 413: "Content Too Large", 414: "URI Too Long", 416: "Range Not Satisfiable",
    417: "Expectation Failed", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout", 505: "HTTP Version Not Supported",
}


class HttpError(Exception):
    """A request the gate answers itself with `status` (the peer's fault when 4xx)."""

    def __init__(self, status: int, message: str, *, code: str = "", headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or REASONS.get(status, "error").lower().replace(" ", "_")
        self.headers = headers


@dataclass(slots=True)
class RequestInfo:
    """What the gate decided about a request head."""

    host: str  # parsed, lowercased, without port
    host_header: bytes  # as received (sent upstream unchanged)
    target: str  # origin-form path + query
    content_length: int | None
    chunked: bool
    expect_continue: bool
    upgrade: bytes | None  # the Upgrade header value when the client asks to switch protocols
    connection_tokens: frozenset[bytes]

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)


def _bad(msg: str, status: int = 400, code: str = "bad_request") -> HttpError:
    return HttpError(status, msg, code=code)


def check_request(method: bytes, url: bytes, version: str, headers: list[tuple[bytes, bytes]]) -> RequestInfo:
    """Validate a parsed request head; returns its framing, or raises HttpError (400/501/505)."""
    if version not in ("1.1", "1.0"):
        raise _bad(f"HTTP/{version} is not supported here", 505, "version_not_supported")
    host_values: list[bytes] = []
    cl_values: list[bytes] = []
    te_values: list[bytes] = []
    expect = b""
    upgrade: bytes | None = None
    conn: set[bytes] = set()
    for name, value in headers:
        if b"\x00" in value or b"\r" in value or b"\n" in value:
            raise _bad(f"header {name.decode('latin-1')!r} has CR, LF or NUL in its value")
        n = name.lower()
        if n == b"host":
            host_values.append(value)
        elif n == b"content-length":
            cl_values.append(value)
        elif n == b"transfer-encoding":
            te_values.append(value)
        elif n == b"connection":
            conn.update(t.strip().lower() for t in value.split(b","))
        elif n == b"expect":
            expect = value.strip().lower()
        elif n == b"upgrade":
            upgrade = value.strip()
    if cl_values and te_values:
        raise _bad("both Content-Length and Transfer-Encoding are present")
    content_length: int | None = None
    if cl_values:
        if len(cl_values) > 1:
            raise _bad("Content-Length is given more than once")
        raw = cl_values[0].strip()
        if not raw.isdigit() or len(raw) > 18:
            raise _bad(f"Content-Length {cl_values[0].decode('latin-1')!r} is not a number")
        content_length = int(raw)
    chunked = False
    if te_values:
        if version == "1.0":
            raise _bad("Transfer-Encoding is not allowed in HTTP/1.0")
        if len(te_values) > 1 or te_values[0].strip().lower() != b"chunked":
            raise _bad("only 'Transfer-Encoding: chunked' is accepted", 501, "not_implemented")
        chunked = True
    if len(host_values) > 1:
        raise _bad("Host is given more than once")
    if not host_values and version == "1.1":
        raise _bad("the Host header is missing")
    host_header = host_values[0].strip() if host_values else b""
    target = url
    if url.startswith(b"/"):
        pass
    elif url[:7].lower() == b"http://" or url[:8].lower() == b"https://":
        rest = url.split(b"://", 1)[1]
        slash = rest.find(b"/")
        authority, target = (rest, b"/") if slash < 0 else (rest[:slash], rest[slash:])
        if b"@" in authority:
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
    if b"#" in target:
        raise _bad("a fragment ('#') is not allowed in the request target")
    path = target.split(b"?", 1)[0]
    if b"/." in path or b"%2e" in path.lower() or b"\\" in path:
        lowered = path.lower().replace(b"%2e", b".")
        for seg in lowered.split(b"/"):
            if seg in (b".", b".."):
                raise _bad("dot-segments ('.' or '..') are not allowed in the path")
        if b"\\" in path:
            raise _bad("backslashes are not allowed in the path")
    if method == b"CONNECT":
        raise _bad("CONNECT is not supported by this gate", 501, "not_implemented")
    if expect and expect != b"100-continue":
        raise HttpError(417, f"Expect: {expect.decode('latin-1')} is not supported", code="expectation_failed")
    if upgrade is not None and b"upgrade" not in conn:
        upgrade = None  # an Upgrade header without `Connection: upgrade` is only informational
    return RequestInfo(
        host=host,
        host_header=host_header,
        target=target.decode("latin-1"),
        content_length=content_length,
        chunked=chunked,
        expect_continue=expect == b"100-continue" and version == "1.1",
        upgrade=upgrade,
        connection_tokens=frozenset(conn),
    )


def upstream_request_head(
    method: bytes,
    target: str,
    headers: list[tuple[bytes, bytes]],
    info: RequestInfo,
    *,
    client_ip: str,
    proto: str,
    request_id: bytes,
    trusted: bool,
    set_headers: dict[str, str] | None = None,
    remove_headers: frozenset[bytes] = frozenset(),
) -> bytes:
    """The request head to send upstream: hop-by-hop headers dropped, forwarding headers set (a client's
    own values kept only when it is a `trusted` proxy), framing chosen by the gate."""
    drop = _DROP_REQUEST
    if info.connection_tokens or remove_headers:
        drop = drop | info.connection_tokens | remove_headers
    out = [method, b" ", target.encode("latin-1"), b" HTTP/1.1\r\n"]
    prior_xff = prior_fwd = b""
    xfp = xfh = b""
    for name, value in headers:
        n = name.lower()
        if n in drop:
            continue
        if n in FORWARDING:
            if trusted:
                if n == b"x-forwarded-for":
                    prior_xff = value if not prior_xff else prior_xff + b", " + value
                elif n == b"x-forwarded-proto":
                    xfp = value
                elif n == b"x-forwarded-host":
                    xfh = value
                elif n == b"forwarded":
                    prior_fwd = value if not prior_fwd else prior_fwd + b", " + value
                elif n == b"x-real-ip":
                    out += (name, b": ", value, b"\r\n")
            continue
        if n == b"host":
            continue
        out += (name, b": ", value, b"\r\n")
    ip = client_ip.encode()
    out += (b"Host: ", info.host_header, b"\r\n")
    out += (b"X-Forwarded-For: ", prior_xff + b", " + ip if prior_xff else ip, b"\r\n")
    out += (b"X-Forwarded-Proto: ", xfp or proto.encode(), b"\r\n")
    out += (b"X-Forwarded-Host: ", xfh or info.host_header, b"\r\n")
    # RFC 7239: an IPv6 node is a quoted "[...]"; the host is always quoted (it may carry a port).
    node = b'"[' + ip + b']"' if b":" in ip else ip
    quoted_host = info.host_header.replace(b"\\", b"").replace(b'"', b"")
    element = b'for=' + node + b';host="' + quoted_host + b'";proto=' + proto.encode()
    out += (b"Forwarded: ", prior_fwd + b", " + element if prior_fwd else element, b"\r\n")
    out += (b"X-Request-Id: ", request_id, b"\r\n")
    if set_headers:
        for k, v in set_headers.items():
            out += (k.encode("latin-1"), b": ", v.encode("latin-1"), b"\r\n")
    if info.upgrade is not None:
        out += (b"Connection: Upgrade\r\nUpgrade: ", info.upgrade, b"\r\n")
    if info.chunked:
        out.append(b"Transfer-Encoding: chunked\r\n")
    elif info.content_length is not None and (info.content_length or method in (b"POST", b"PUT", b"PATCH")):
        out += (b"Content-Length: ", str(info.content_length).encode(), b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)


@dataclass(slots=True)
class ResponseFraming:
    """How the upstream framed a response, and how the gate frames it to its client."""

    body: bool  # whether a body follows at all
    content_length: int | None
    chunked_in: bool
    chunked_out: bool  # re-chunk towards the client
    close_after: bool  # the client connection ends after this response
    keep_alive_header: bool = False  # an HTTP/1.0 client asked for keep-alive: say yes explicitly


def response_framing(
    status: int, headers: list[tuple[bytes, bytes]], request_method: bytes, client_version: str, client_keep_alive: bool
) -> ResponseFraming:
    """Decide framing from the upstream's response head. Raises HttpError(502) on an ambiguous one."""
    cl: list[bytes] = []
    te: list[bytes] = []
    for name, value in headers:
        n = name.lower()
        if n == b"content-length":
            cl.append(value)
        elif n == b"transfer-encoding":
            te.append(value)
    no_body = request_method == b"HEAD" or status in (204, 304) or 100 <= status < 200
    if cl and te:
        raise HttpError(502, "the upstream sent both Content-Length and Transfer-Encoding", code="bad_upstream")
    length: int | None = None
    if cl:
        vals = {v.strip() for v in b",".join(cl).split(b",")}
        if len(vals) != 1 or not next(iter(vals)).isdigit():
            raise HttpError(502, "the upstream sent an invalid Content-Length", code="bad_upstream")
        length = int(next(iter(vals)))
    chunked_in = bool(te)
    ka10 = client_version == "1.0" and client_keep_alive
    if no_body:
        return ResponseFraming(False, length, False, False, not client_keep_alive, ka10)
    if length is not None:
        return ResponseFraming(True, length, False, False, not client_keep_alive, ka10)
    # Chunked or close-delimited upstream: re-chunk for an HTTP/1.1 client, else close-delimit.
    if client_version == "1.1":
        return ResponseFraming(True, None, chunked_in, True, not client_keep_alive)
    return ResponseFraming(True, None, chunked_in, False, True)


def response_head(
    status: int,
    reason: bytes,
    headers: list[tuple[bytes, bytes]],
    framing: ResponseFraming,
    *,
    extra: list[tuple[bytes, bytes]] | None = None,
    remove: frozenset[bytes] = frozenset(),
    via: bytes | None = None,
) -> bytes:
    """The response head for the client: hop-by-hop headers dropped, framing and Connection set."""
    drop = _DROP_RESPONSE | remove if remove else _DROP_RESPONSE
    out = [b"HTTP/1.1 ", str(status).encode(), b" ", reason or REASONS.get(status, "").encode(), b"\r\n"]
    lowered = [name.lower() for name, _ in headers]
    if b"connection" in lowered:
        tokens = {t.strip().lower() for (_, v), n in zip(headers, lowered, strict=True) if n == b"connection"
                  for t in v.split(b",")}
        drop = drop | tokens
    for (name, value), n in zip(headers, lowered, strict=True):
        if n in drop:
            continue
        out += (name, b": ", value, b"\r\n")
    if extra:
        for name, value in extra:
            out += (name, b": ", value, b"\r\n")
    if via:
        out += (b"Via: ", via, b"\r\n")
    if framing.content_length is not None and status >= 200 and status != 204:
        out += (b"Content-Length: ", str(framing.content_length).encode(), b"\r\n")
    elif framing.chunked_out:
        out.append(b"Transfer-Encoding: chunked\r\n")
    if framing.close_after:
        out.append(b"Connection: close\r\n")
    elif framing.keep_alive_header:
        out.append(b"Connection: keep-alive\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def simple_response(
    status: int,
    body: bytes,
    content_type: bytes,
    *,
    keep_alive: bool,
    headers: list[tuple[bytes, bytes]] | tuple[tuple[bytes, bytes], ...] = (),
    head_only: bool = False,
) -> bytes:
    """A complete response the gate makes itself (errors, redirects, ACME answers)."""
    out = [b"HTTP/1.1 ", str(status).encode(), b" ", REASONS.get(status, "").encode(), b"\r\n",
           b"Content-Type: ", content_type, b"\r\nContent-Length: ", str(len(body)).encode(), b"\r\n"]
    for name, value in headers:
        out += (name, b": ", value, b"\r\n")
    if not keep_alive:
        out.append(b"Connection: close\r\n")
    out.append(b"\r\n")
    if not head_only:
        out.append(body)
    return b"".join(out)


def chunk(data: bytes) -> list[bytes]:
    """One chunk of a chunked body (as pieces for writelines)."""
    return [b"%x\r\n" % len(data), data, b"\r\n"]


LAST_CHUNK = b"0\r\n\r\n"
