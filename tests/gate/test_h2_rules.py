"""The pure HTTP/2 ↔ HTTP/1.1 decisions: request heads (table), response heads, flood budgets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gate._h2rules import FloodBudget, h2_request, h2_response_headers
from gate.h1 import HttpError, ResponseFraming

BASE = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a.test:8443"), (b":path", b"/p?q=1")]


def req(extra=(), *, base=BASE, ended=True, max_count=100):
    return h2_request([*base, *extra], ended=ended, max_count=max_count, max_path_bytes=8192)


def test_plain_get():
    method, headers, info = req([(b"accept", b"*/*"), (b"te", b"trailers"), (b"x-empty", b"")])
    assert method == b"GET"
    assert info.host == "a.test" and info.host_header == b"a.test:8443" and info.target == "/p?q=1"
    assert not info.has_body and info.upgrade is None
    assert (b"host", b"a.test:8443") in headers and (b"accept", b"*/*") in headers
    assert not any(n.startswith(b":") for n, _ in headers)


def test_cookies_joined_and_host_fallback():
    base = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/")]
    _, headers, info = req([(b"host", b"b.test"), (b"cookie", b"a=1"), (b"cookie", b"b=2")], base=base)
    assert info.host == "b.test"
    assert (b"cookie", b"a=1; b=2") in headers


@pytest.mark.parametrize(
    ("ended", "extra", "chunked", "length"),
    [
        (True, [], False, None),
        (False, [(b"content-length", b"10")], False, 10),
        (False, [], True, None),  # a body without a length: forwarded chunked
    ],
)
def test_body_framing(ended, extra, chunked, length):
    _, _, info = req(extra, base=[(b":method", b"POST"), *BASE[1:]], ended=ended)
    assert info.chunked is chunked and info.content_length == length


@pytest.mark.parametrize(
    ("extra", "base", "status", "text"),
    [
        ([], [(b":method", b"CONNECT"), (b":authority", b"a.test:443")], 501, "CONNECT"),
        ([(b":protocol", b"websocket")], BASE, 501, ":protocol"),
        ([(b":bogus", b"1")], BASE, 400, "pseudo-header"),
        ([], [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/")], 400, "neither :authority nor host"),
        ([], [(b":method", b"GET"), (b":scheme", b"ftp"), (b":authority", b"a"), (b":path", b"/")], 400, ":scheme"),
        ([], [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a")], 400, "lacks"),
        ([(b"host", b"other")], BASE, 400, "different host"),
        ([], [*BASE[:3], (b":path", b"/a/../b")], 400, "dot-segments"),
        ([], [*BASE[:3], (b":path", b"x")], 400, "starting with '/'"),
        ([], [*BASE[:3], (b":path", b"/" + b"a" * 9000)], 414, "longer"),
        ([], [*BASE[:2], (b":authority", b"bad!host"), BASE[3]], 400, "not a valid host"),
        ([(b"h%d" % i, b"v") for i in range(5)], BASE, 431, "more than 4 headers"),
        ([(b"content-length", b"1"), (b"content-length", b"2")], BASE, 400, "more than once"),
        ([(b"expect", b"bogus")], BASE, 417, "not supported"),
        ([(b"Accept", b"*/*")], BASE, 400, "uppercase"),
        ([(b"x y", b"1")], BASE, 400, "characters not allowed"),
        ([(b"", b"1")], BASE, 400, "characters not allowed"),
        ([(b"keep-alive", b"5")], BASE, 400, "connection-specific"),
        ([(b"te", b"deflate")], BASE, 400, "te may only be"),
        ([(b"x", b"a\rb")], BASE, 400, "control byte 0x0d"),
        ([(b"x", b"a\t")], BASE, 400, "surrounding whitespace"),
        ([(b"x", b"1"), (b":method", b"GET")], BASE, 400, "after a regular field"),
        ([], [*BASE, (b":path", b"/x")], 400, "repeated"),
        ([], [*BASE[:3], (b":path", b"")], 400, "lacks"),
        ([], [(b":method", b"G\nT"), *BASE[1:]], 400, "not a method name"),
    ],
)
def test_refused(extra, base, status, text):
    with pytest.raises(HttpError) as e:
        req(extra, base=base, max_count=4)
    assert e.value.status == status and text in e.value.message


def test_response_headers():
    framing = ResponseFraming(True, 5, False, False, False)
    out = h2_response_headers(
        200,
        [
            (b"Content-Type", b"text/plain"),
            (b"Connection", b"close, X-Drop"),
            (b"X-Drop", b"1"),
            (b"Keep-Alive", b"5"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Content-Length", b"5"),
            (b"X-Keep", b"k"),
        ],
        framing,
        extra=((b"Strict-Transport-Security", b"max-age=1"),),
        remove=frozenset({b"x-keep"}),
        via=b"1.1 infracore",
    )
    assert out == [
        (b":status", b"200"),
        (b"content-type", b"text/plain"),
        (b"strict-transport-security", b"max-age=1"),
        (b"via", b"2 infracore"),
        (b"content-length", b"5"),
    ]
    assert h2_response_headers(304, [], ResponseFraming(False, 5, False, False, False)) == [(b":status", b"304")]


@given(st.lists(st.tuples(st.binary(min_size=1, max_size=8).map(bytes.lower), st.binary(max_size=8)), max_size=20))
def test_response_headers_never_carry_connection_fields(headers):
    out = h2_response_headers(200, headers, None)
    assert out[0] == (b":status", b"200")
    for name, _ in out[1:]:
        assert name == name.lower()
        assert name not in (
            b"connection",
            b"transfer-encoding",
            b"keep-alive",
            b"upgrade",
            b"te",
            b"proxy-connection",
            b"content-length",
        )


def test_flood_budget_refills():
    b = FloodBudget(rate_per_s=10, burst=5)
    assert all(b.take(0.0) for _ in range(5))
    assert not b.take(0.0)
    assert not b.take(0.05)  # half a token refilled, still in debt
    assert b.take(1.0)  # a second later it has refilled


@given(st.lists(st.floats(min_value=0, max_value=0.001), min_size=1, max_size=300))
def test_flood_budget_bounds_a_burst(gaps):
    b = FloodBudget(rate_per_s=100, burst=50)
    now, allowed = 0.0, 0
    for g in gaps:
        now += g
        allowed += b.take(now)
    assert allowed <= 50 + 100 * now + 1


def _with(name: bytes, value: bytes) -> list[tuple[bytes, bytes]]:
    return [(n, value if n == name else v) for n, v in BASE]


# Issue 13, hole 4: what an HTTP/2 client could use to make the upstream's HTTP/1.1 head differ from
# the request the gate routed and filtered.
@pytest.mark.parametrize(
    ("base", "extra", "status", "text"),
    [
        (_with(b":method", b"GET /private/x HTTP/1.1"), [], 400, "not a method name"),
        (_with(b":method", b"GET\t"), [], 400, "not a method name"),
        (_with(b":method", b"G\x0bT"), [], 400, "not a method name"),
        (_with(b":method", b"GE\x7fT"), [], 400, "not a method name"),
        (_with(b":method", b"GET\x00"), [], 400, "not a method name"),
        (_with(b":method", b"G\xc9T"), [], 400, "not a method name"),
        (_with(b":method", b""), [], 400, "not a method name"),
        (_with(b":method", b"get"), [], 501, "not supported"),  # a token llhttp does not know
        (_with(b":method", b"FOO"), [], 501, "not supported"),
        (_with(b":path", b"/private/x HTTP/1.1\tX: /public"), [], 400, "space, control byte"),
        (_with(b":path", b"/public HTTP/1.1"), [], 400, "space, control byte"),
        (_with(b":path", b"/a\tb"), [], 400, "space, control byte"),
        (_with(b":path", b"/a\x0bb"), [], 400, "space, control byte"),
        (_with(b":path", b"/a\x0cb"), [], 400, "space, control byte"),
        (_with(b":path", b"/a\x01"), [], 400, "space, control byte"),
        (_with(b":path", b"/a\x7f"), [], 400, "space, control byte"),
        (_with(b":path", b"/a\x80"), [], 400, "space, control byte"),
        (_with(b":path", b"/a\r\nx: y"), [], 400, "space, control byte"),
        (_with(b":path", b"http://a.test/x"), [], 400, "starting with '/'"),
        (_with(b":path", b" /x"), [], 400, "starting with '/'"),
        (_with(b":path", b"*"), [], 400, "starting with '/'"),  # asterisk-form is for OPTIONS only
        (_with(b":authority", b"a.test\t"), [], 400, "authority"),
        (_with(b":authority", b"a .test"), [], 400, "authority"),
        (_with(b":authority", b"user@a.test"), [], 400, "authority"),
        (_with(b":authority", b"a.test\x7f"), [], 400, "authority"),
        (_with(b":authority", b"a.t\xe9st"), [], 400, "authority"),
        (_with(b":scheme", b"https "), [], 400, ":scheme"),
        (BASE, [(b"x", b"a\x01b")], 400, "control byte 0x01"),
        (BASE, [(b"x", b"a\x7f")], 400, "control byte 0x7f"),
        (BASE, [(b"x", b"a\x0bb")], 400, "control byte 0x0b"),
        (BASE, [(b"x", b"\x1f")], 400, "control byte 0x1f"),
        (BASE, [(b"x", b"a\nb")], 400, "control byte 0x0a"),
        (BASE, [(b"x", b" a")], 400, "surrounding whitespace"),
        (BASE, [(b"x\x01", b"a")], 400, "characters not allowed"),
        (BASE, [(b"x\x7f", b"a")], 400, "characters not allowed"),
        (BASE, [(b"x\xe9", b"a")], 400, "characters not allowed"),
        (BASE, [(b"x:y", b"a")], 400, "characters not allowed"),
        (BASE, [(b"transfer-encoding", b"chunked")], 400, "connection-specific"),
        (BASE, [(b"connection", b"close")], 400, "connection-specific"),
        (BASE, [(b"upgrade", b"h2c")], 400, "connection-specific"),
        (BASE, [(b"proxy-connection", b"keep-alive")], 400, "connection-specific"),
        (BASE, [(b"te", b"trailers, gzip")], 400, "te may only be"),
        (BASE, [(b"host", b"a.test:8443"), (b"host", b"b.test")], 400, "host field is repeated"),
        ([*BASE[:2], BASE[3]], [(b"host", b"user@a.test")], 400, "authority"),
        ([*BASE, (b":method", b"POST")], [], 400, "repeated"),
        (BASE, [(b"content-length", b"5")], 400, "no body"),  # END_STREAM on HEADERS: no DATA can follow
        ([*BASE, (b":scheme", b"http")], [], 400, "repeated"),
        ([*BASE, (b":authority", b"b.test")], [], 400, "repeated"),
    ],
)
def test_smuggling_shapes_refused(base, extra, status, text):
    with pytest.raises(HttpError) as e:
        req(extra, base=base)
    assert e.value.status == status and text in e.value.message, e.value.message


@pytest.mark.parametrize(
    ("base", "extra"),
    [
        (_with(b":method", b"M-SEARCH"), []),
        (_with(b":method", b"QUERY"), []),
        ([(b":method", b"OPTIONS"), (b":scheme", b"https"), (b":authority", b"a.test"), (b":path", b"*")], []),
        (_with(b":path", b'/a/%20b?q=%00&x="{|}"~'), []),  # visible ASCII, escapes stay escaped
        (_with(b":path", b"//a.test/x"), []),  # origin-form with an empty first segment
        (BASE, [(b"x", b"caf\xe9")]),  # obs-text (RFC 9110 §5.5)
        (BASE, [(b"x", b"a\tb c")]),  # HTAB and SP inside a value
        (BASE, [(b"te", b"Trailers")]),
    ],
)
def test_edge_cases_accepted(base, extra):
    req(extra, base=base)
