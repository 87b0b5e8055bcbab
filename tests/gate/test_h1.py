"""HTTP/1 decisions: which request heads are refused (smuggling shapes) and what goes upstream."""

from __future__ import annotations

import pytest

from gate.h1 import HttpError, check_request, response_framing
from gate.h1heads import response_head, upstream_request_head

H = list[tuple[bytes, bytes]]


def hdrs(*pairs: str) -> H:
    return [(a.encode(), b.encode()) for a, b in (p.split(": ", 1) for p in pairs)]


@pytest.mark.parametrize(
    ("method", "url", "version", "headers", "status", "fragment"),
    [
        (
            b"POST",
            b"/",
            "1.1",
            hdrs("Host: a", "Content-Length: 3", "Transfer-Encoding: chunked"),
            400,
            "both Content-Length and Transfer-Encoding",
        ),
        (b"POST", b"/", "1.1", hdrs("Host: a", "Content-Length: 3", "Content-Length: 3"), 400, "more than once"),
        (b"POST", b"/", "1.1", hdrs("Host: a", "Content-Length: 3, 3"), 400, "not a number"),
        (b"POST", b"/", "1.1", hdrs("Host: a", "Content-Length: -1"), 400, "not a number"),
        (b"POST", b"/", "1.1", hdrs("Host: a", "Transfer-Encoding: gzip, chunked"), 501, "only 'Transfer-Encoding"),
        (
            b"POST",
            b"/",
            "1.1",
            hdrs("Host: a", "Transfer-Encoding: chunked", "Transfer-Encoding: chunked"),
            501,
            "only",
        ),
        (b"POST", b"/", "1.0", hdrs("Host: a", "Transfer-Encoding: chunked"), 400, "HTTP/1.0"),
        (b"GET", b"/", "1.1", [(b"Host", b"a"), (b"X", b"a\x00b")], 400, "CR, LF or NUL"),
        (b"GET", b"/", "1.1", [(b"Host", b"a"), (b"X", b"a\rb")], 400, "CR, LF or NUL"),
        (b"GET", b"/", "1.1", hdrs("Host: a", "Host: b"), 400, "Host is given more than once"),
        (b"GET", b"/", "1.1", hdrs("X: y"), 400, "Host header is missing"),
        (b"GET", b"/", "1.1", hdrs("Host: a b"), 400, "not a valid host"),
        (b"GET", b"http://evil.com/", "1.1", hdrs("Host: a.com"), 400, "different host"),
        (b"GET", b"http://u@a.com/", "1.1", hdrs("Host: a.com"), 400, "userinfo"),
        (b"GET", b"/a/../admin", "1.1", hdrs("Host: a"), 400, "dot-segments"),
        (b"GET", b"/a/%2E%2e/admin", "1.1", hdrs("Host: a"), 400, "dot-segments"),
        (b"GET", b"/a\\b", "1.1", hdrs("Host: a"), 400, "backslashes"),
        (b"GET", b"*", "1.1", hdrs("Host: a"), 400, "must be a path"),
        (b"CONNECT", b"a.com:443", "1.1", hdrs("Host: a.com"), 400, "must be a path"),
        (b"GET", b"/", "2.0", hdrs("Host: a"), 505, "not supported"),
        (b"GET", b"/", "1.1", hdrs("Host: a", "Expect: magic"), 417, "Expect"),
    ],
)
def test_refused_heads(method, url, version, headers, status, fragment):
    with pytest.raises(HttpError) as e:
        check_request(method, url, version, headers)
    assert e.value.status == status
    assert fragment in e.value.message


def test_accepted_heads():
    i = check_request(b"POST", b"/x?y=1", "1.1", hdrs("Host: A.com:81", "Content-Length: 12 ", "Expect: 100-continue"))
    assert (i.host, i.target, i.content_length, i.chunked, i.expect_continue) == ("a.com", "/x?y=1", 12, False, True)
    i = check_request(b"GET", b"http://a.com:81/p", "1.1", hdrs("Host: a.com"))
    assert (i.host, i.target) == ("a.com", "/p")
    i = check_request(b"GET", b"/", "1.0", [])
    assert i.host == "" and not i.has_body
    i = check_request(b"GET", b"/ws", "1.1", hdrs("Host: a", "Connection: keep-alive, Upgrade", "Upgrade: websocket"))
    assert i.upgrade == b"websocket"
    i = check_request(b"GET", b"/", "1.1", hdrs("Host: a", "Upgrade: h2c"))
    assert i.upgrade is None
    assert check_request(b"POST", b"/", "1.1", hdrs("Host: a", "Transfer-Encoding: Chunked")).chunked
    assert check_request(b"GET", b"/a/..b/.c", "1.1", hdrs("Host: a")).target == "/a/..b/.c"


def test_upstream_head_drops_hop_by_hop_and_sets_forwarding():
    headers = hdrs(
        "Host: a.com",
        "Connection: close, X-Secret",
        "X-Secret: 1",
        "Keep-Alive: 5",
        "TE: trailers",
        "X-Forwarded-For: 6.6.6.6",
        "X-Request-Id: spoofed",
        "Accept: */*",
        "Transfer-Encoding: chunked",
    )
    info = check_request(b"POST", b"/p", "1.1", headers)
    head = upstream_request_head(
        b"POST", "/q", headers, info, client_ip="10.0.0.1", proto="http", request_id=b"rid1", trusted=False
    )
    assert head == (
        b"POST /q HTTP/1.1\r\nAccept: */*\r\nHost: a.com\r\nX-Forwarded-For: 10.0.0.1\r\n"
        b"X-Forwarded-Proto: http\r\nX-Forwarded-Host: a.com\r\n"
        b'Forwarded: for=10.0.0.1;host="a.com";proto=http\r\nX-Request-Id: rid1\r\n'
        b"Transfer-Encoding: chunked\r\n\r\n"
    )


def test_upstream_head_keeps_trusted_forwarding():
    headers = hdrs(
        "Host: a.com",
        "X-Forwarded-For: 1.2.3.4",
        "X-Forwarded-Proto: https",
        "Content-Length: 0",
        "Forwarded: for=1.2.3.4",
    )
    info = check_request(b"GET", b"/", "1.1", headers)
    head = upstream_request_head(
        b"GET",
        "/",
        headers,
        info,
        client_ip="10.0.0.1",
        proto="http",
        request_id=b"r",
        trusted=True,
        set_headers={"X-Added": "1"},
    )
    assert b"X-Forwarded-For: 1.2.3.4, 10.0.0.1\r\n" in head
    assert b"X-Forwarded-Proto: https\r\n" in head
    assert b'Forwarded: for=1.2.3.4, for=10.0.0.1;host="a.com";proto=http\r\n' in head
    assert b"X-Added: 1\r\n" in head
    assert b"Content-Length" not in head


@pytest.mark.parametrize(
    ("status", "headers", "method", "version", "ka", "expected"),
    [
        (200, hdrs("Content-Length: 5"), b"GET", "1.1", True, (True, 5, False, False, False)),
        (200, hdrs("Transfer-Encoding: chunked"), b"GET", "1.1", True, (True, None, True, True, False)),
        (200, [], b"GET", "1.1", True, (True, None, False, True, False)),
        (200, [], b"GET", "1.0", False, (True, None, False, False, True)),
        (200, hdrs("Transfer-Encoding: chunked"), b"GET", "1.0", True, (True, None, True, False, True)),
        (200, hdrs("Content-Length: 5"), b"HEAD", "1.1", True, (False, 5, False, False, False)),
        (204, [], b"GET", "1.1", False, (False, None, False, False, True)),
        (304, hdrs("Content-Length: 5"), b"GET", "1.1", True, (False, 5, False, False, False)),
    ],
)
def test_response_framing(status, headers, method, version, ka, expected):
    f = response_framing(status, headers, method, version, ka)
    assert (f.body, f.content_length, f.chunked_in, f.chunked_out, f.close_after) == expected


@pytest.mark.parametrize(
    "headers",
    [
        hdrs("Content-Length: 5", "Transfer-Encoding: chunked"),
        hdrs("Content-Length: 5", "Content-Length: 6"),
        hdrs("Content-Length: x"),
    ],
)
def test_ambiguous_upstream_response_is_502(headers):
    with pytest.raises(HttpError) as e:
        response_framing(200, headers, b"GET", "1.1", True)
    assert e.value.status == 502


def test_response_head():
    f = response_framing(200, hdrs("Transfer-Encoding: chunked"), b"GET", "1.1", False)
    head = response_head(
        200,
        b"OK",
        hdrs(
            "Connection: keep-alive, X-Hop",
            "X-Hop: 1",
            "Keep-Alive: t",
            "Transfer-Encoding: chunked",
            "Content-Type: text/plain",
        ),
        f,
        extra=[(b"X-Frame-Options", b"DENY")],
        via=b"1.1 gate",
    )
    assert head == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Frame-Options: DENY\r\nVia: 1.1 gate\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )


def test_http10_keep_alive_is_confirmed():
    f = response_framing(200, hdrs("Content-Length: 2"), b"GET", "1.0", True)
    assert f.keep_alive_header and not f.close_after
    assert response_head(200, b"OK", hdrs("Content-Length: 2"), f).endswith(b"Connection: keep-alive\r\n\r\n")
    assert not response_framing(200, hdrs("Content-Length: 2"), b"GET", "1.1", True).keep_alive_header


def test_forwarded_quotes_ipv6_and_drops_untrusted_values():
    headers = hdrs("Host: [::1]:8080", "Forwarded: for=6.6.6.6")
    info = check_request(b"GET", b"/", "1.1", headers)
    head = upstream_request_head(
        b"GET", "/", headers, info, client_ip="2001:db8::7", proto="https", request_id=b"r", trusted=False
    )
    assert b'Forwarded: for="[2001:db8::7]";host="[::1]:8080";proto=https\r\n' in head
    assert b"6.6.6.6" not in head


def test_trailer_fields_and_last_chunk():
    from gate.h1 import last_chunk, trailer_fields

    trailers = hdrs(
        "X-Checksum: abc",
        "Content-Length: 5",
        "Connection: x-gone",
        "X-Gone: 1",
        "Set-Cookie: a=b",
        "Grpc-Status: 0",
        "X-Removed: 1",
    )
    assert trailer_fields(trailers, frozenset({b"x-removed"})) == [(b"X-Checksum", b"abc"), (b"Grpc-Status", b"0")]
    assert last_chunk(hdrs("X-A: 1")) == b"0\r\nX-A: 1\r\n\r\n"
    assert last_chunk(hdrs("Host: evil")) == b"0\r\n\r\n"


@pytest.mark.parametrize(
    "raw",
    [
        ("Server: x", "Content-Length: 2", "Connection: keep-alive", "X-Frame-Options: SAMEORIGIN", "Date: d"),
        ("Connection: close, X-Hop", "X-Hop: 1", "Keep-Alive: t", "Transfer-Encoding: chunked", "content-type: a/b"),
        ("X-Hop: 1", "Connection: X-Hop", "Content-Length: 0", "Proxy-Authenticate: Basic", "Set-Cookie: a=b"),
    ],
)
def test_response_lines_rendered_while_framing_match_the_filtered_head(raw):
    remove = frozenset({b"x-frame-options"})
    headers = hdrs(*raw)
    rendered = response_framing(200, headers, b"GET", "1.1", True, remove)
    plain = response_framing(200, headers, b"GET", "1.1", True)
    assert plain.lines is None
    assert response_head(200, b"OK", headers, rendered, remove=remove, scanned=True) == response_head(
        200, b"OK", headers, plain, remove=remove
    )
    head = response_head(200, b"OK", headers, rendered, remove=remove, scanned=True)
    assert b"X-Hop" not in head and b"X-Frame-Options" not in head and b"Keep-Alive" not in head


@pytest.mark.parametrize(
    "raw",
    [
        ("Host: a", "User-Agent: u", "Accept: */*", "X-Forwarded-For: 6.6.6.6", "Connection: keep-alive"),
        ("Host: a", "X-Hop: 1", "Connection: keep-alive, X-Hop", "TE: trailers", "Cookie: c=1"),
        ("Host: a", "Connection: close", "X-Drop: 1", "x-real-ip: 1.2.3.4", "Forwarded: for=x"),
    ],
)
def test_upstream_head_from_checked_lines_matches_the_filtered_one(raw):
    headers = hdrs(*raw)
    info = check_request(b"GET", b"/", "1.1", headers)
    if b"X-Hop" in b"".join(v for _, v in headers):
        assert info.lines is None  # a Connection header naming fields: the head filters the list itself
    remove = frozenset({b"x-drop"})
    fast = upstream_request_head(b"GET", "/", headers, info, "10.0.0.1", "http", b"r", False, None, remove)
    info.lines = None
    slow = upstream_request_head(b"GET", "/", headers, info, "10.0.0.1", "http", b"r", False, None, remove)
    assert fast == slow
    assert b"X-Hop" not in fast and b"X-Drop" not in fast and b"6.6.6.6" not in fast and b"TE:" not in fast
