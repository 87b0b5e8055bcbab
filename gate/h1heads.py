"""HTTP/1.1 heads, pure: the exact bytes that go upstream (`upstream_request_head`) and back to the client
(`response_head`, `simple_response`), rendered from fields `gate.h1` checked and framed.

Theory of operation: a request is re-serialized from its parsed fields with the framing the gate chose
(never the client's raw bytes) and the forwarding fields the gate sets; a response head from the
upstream's fields minus hop-by-hop ones, with the framing `gate.h1.response_framing` decided. The small
pieces that repeat (status lines, Content-Length lines, forwarding blocks, drop sets) are memoized, bounded.
"""

from __future__ import annotations

from gate.h1 import COLON, FORWARDING, HOP_BY_HOP, HOP_FIELD, REASONS, RequestInfo, ResponseFraming, connection_tokens

_DROP_RESPONSE = HOP_BY_HOP | {b"content-length"}
_DROP_REQUEST = HOP_BY_HOP | {b"content-length", b"expect", HOP_FIELD}

_UNIONS: dict[tuple[frozenset[bytes], frozenset[bytes], frozenset[bytes]], frozenset[bytes]] = {}
_FORWARDING_BLOCKS: dict[tuple[bytes, str, str], bytes] = {}
_CACHE_MAX = 4096


def drop_set(base: frozenset[bytes], a: frozenset[bytes], b: frozenset[bytes] = frozenset()) -> frozenset[bytes]:
    """`base | a | b`, memoized: the same few sets (hop-by-hop + Connection tokens + a route's removals)
    meet on every request."""
    if not a and not b:
        return base
    key = (base, a, b)
    found = _UNIONS.get(key)
    if found is None:
        if len(_UNIONS) >= _CACHE_MAX:
            _UNIONS.clear()
        found = _UNIONS[key] = base | a | b
    return found


def forwarding_block(host_header: bytes, client_ip: str, proto: str) -> bytes:
    """The `Host` and forwarding header lines the gate sets for a client that is not a trusted proxy
    (memoized: they depend only on these three values)."""
    key = (host_header, client_ip, proto)
    found = _FORWARDING_BLOCKS.get(key)
    if found is None:
        found = _forwarding_lines(host_header, client_ip.encode(), proto.encode(), b"", b"", b"", b"")
        if len(_FORWARDING_BLOCKS) >= _CACHE_MAX:
            _FORWARDING_BLOCKS.clear()
        _FORWARDING_BLOCKS[key] = found
    return found


def _forwarding_lines(
    host_header: bytes, ip: bytes, proto: bytes, prior_xff: bytes, xfp: bytes, xfh: bytes, prior_fwd: bytes
) -> bytes:
    # RFC 7239: an IPv6 node is a quoted "[...]"; the host is always quoted (it may carry a port).
    node = b'"[' + ip + b']"' if COLON in ip else ip
    quoted_host = host_header.replace(b"\\", b"").replace(b'"', b"")
    element = b"for=" + node + b';host="' + quoted_host + b'";proto=' + proto
    return b"".join(
        (
            b"Host: ",
            host_header,
            b"\r\n",
            b"X-Forwarded-For: ",
            prior_xff + b", " + ip if prior_xff else ip,
            b"\r\n",
            b"X-Forwarded-Proto: ",
            xfp or proto,
            b"\r\n",
            b"X-Forwarded-Host: ",
            xfh or host_header,
            b"\r\n",
            b"Forwarded: ",
            prior_fwd + b", " + element if prior_fwd else element,
            b"\r\n",
        )
    )


_LENGTH_LINES: dict[int, bytes] = {}


def content_length_line(length: int) -> bytes:
    """`Content-Length: <length>` (memoized, bounded: the same few sizes come back all the time)."""
    line = _LENGTH_LINES.get(length)
    if line is None:
        line = b"Content-Length: %d\r\n" % length
        if len(_LENGTH_LINES) < _CACHE_MAX:
            _LENGTH_LINES[length] = line
    return line


def header_lines(headers: dict[str, str]) -> bytes:
    """`Name: value` lines for headers a route sets (rendered once per route table)."""
    return b"".join(k.encode("latin-1") + b": " + v.encode("latin-1") + b"\r\n" for k, v in headers.items())


def upstream_request_head(
    method: bytes,
    target: str,
    headers: list[tuple[bytes, bytes]],
    info: RequestInfo,
    client_ip: str,
    proto: str,
    request_id: bytes,
    trusted: bool,
    set_headers: dict[str, str] | None = None,
    remove_headers: frozenset[bytes] = frozenset(),
    set_lines: bytes = b"",
) -> bytes:
    """The request head to send upstream: hop-by-hop headers dropped, forwarding headers set (a client's
    own values kept only when it is a `trusted` proxy), framing chosen by the gate. `set_lines` are
    header lines already rendered by `header_lines` (a route's `set_headers`, precomputed)."""
    out = [method, b" ", target.encode("latin-1"), b" HTTP/1.1\r\n"]
    append = out.append
    if trusted:
        drop = drop_set(_DROP_REQUEST, info.connection_tokens, remove_headers)
        prior_xff = prior_fwd = xfp = xfh = b""
        for name, value in headers:
            n = name.lower()
            if n in drop or n == b"host":
                continue
            if n in FORWARDING:
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
            out += (name, b": ", value, b"\r\n")
        append(_forwarding_lines(info.host_header, client_ip.encode(), proto.encode(), prior_xff, xfp, xfh, prior_fwd))
    elif info.lines is not None:
        if remove_headers:
            lines = info.lines
            for i in range(0, len(lines), 4):
                if lines[i].lower() not in remove_headers:
                    out += lines[i : i + 4]
        else:
            out += info.lines
        append(forwarding_block(info.host_header, client_ip, proto))
    else:
        drop = drop_set(_DROP_REQUEST, info.connection_tokens, remove_headers)
        for name, value in headers:
            n = name.lower()
            if n in drop or n in FORWARDING or n == b"host":
                continue
            out += (name, b": ", value, b"\r\n")
        append(forwarding_block(info.host_header, client_ip, proto))
    out += (b"X-Request-Id: ", request_id, b"\r\n")
    if set_headers:
        append(header_lines(set_headers))
    if set_lines:
        append(set_lines)
    if info.upgrade is not None:
        out += (b"Connection: Upgrade\r\nUpgrade: ", info.upgrade, b"\r\n")
    if info.chunked:
        append(b"Transfer-Encoding: chunked\r\n")
    elif info.content_length is not None and (info.content_length or method in (b"POST", b"PUT", b"PATCH")):
        append(content_length_line(info.content_length))
    append(b"\r\n")
    return b"".join(out)


_STATUS_LINES: dict[tuple[int, bytes], bytes] = {}


def status_line(status: int, reason: bytes) -> bytes:
    """`HTTP/1.1 <status> <reason>` line (memoized; the reason defaults to the standard one)."""
    key = (status, reason)
    line = _STATUS_LINES.get(key)
    if line is None:
        line = b"HTTP/1.1 %d %s\r\n" % (status, reason or REASONS.get(status, "").encode())
        if len(_STATUS_LINES) < 1024:
            _STATUS_LINES[key] = line
    return line


def response_head(
    status: int,
    reason: bytes,
    headers: list[tuple[bytes, bytes]],
    framing: ResponseFraming,
    *,
    extra: list[tuple[bytes, bytes]] | tuple[tuple[bytes, bytes], ...] | None = None,
    remove: frozenset[bytes] = frozenset(),
    via: bytes | None = None,
    extra_lines: bytes = b"",
    scanned: bool = False,
) -> bytes:
    """The response head for the client: hop-by-hop headers dropped, framing and Connection set.
    `extra_lines` are more header lines already rendered (a route's response headers, precomputed).
    `scanned`: `framing` was made by `response_framing` from these same `headers`, so the Connection
    tokens it found can be used instead of scanning again."""
    out = [status_line(status, reason)]
    append = out.append
    if scanned and framing.lines is not None:
        out += framing.lines
    else:
        tokens = framing.connection_drop if scanned else None
        if tokens is None:
            tokens = connection_tokens(headers)
        drop = drop_set(_DROP_RESPONSE, remove, tokens)
        for name, value in headers:
            if name.lower() not in drop:
                out += (name, b": ", value, b"\r\n")
    if extra:
        for name, value in extra:
            out += (name, b": ", value, b"\r\n")
    if extra_lines:
        append(extra_lines)
    if via:
        out += (b"Via: ", via, b"\r\n")
    if framing.content_length is not None and status >= 200 and status != 204:
        append(content_length_line(framing.content_length))
    elif framing.chunked_out:
        append(b"Transfer-Encoding: chunked\r\n")
    if framing.close_after:
        append(b"Connection: close\r\n\r\n")
    elif framing.keep_alive_header:
        append(b"Connection: keep-alive\r\n\r\n")
    else:
        append(b"\r\n")
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
    out = [
        b"HTTP/1.1 ",
        str(status).encode(),
        b" ",
        REASONS.get(status, "").encode(),
        b"\r\n",
        b"Content-Type: ",
        content_type,
        b"\r\nContent-Length: ",
        str(len(body)).encode(),
        b"\r\n",
    ]
    for name, value in headers:
        out += (name, b": ", value, b"\r\n")
    if not keep_alive:
        out.append(b"Connection: close\r\n")
    out.append(b"\r\n")
    if not head_only:
        out.append(body)
    return b"".join(out)
