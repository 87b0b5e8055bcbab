"""Malformed and smuggling-shaped requests, sent as exact bytes on raw sockets: each is refused with the
right status, the connection is closed, and nothing reaches the origin."""

from __future__ import annotations

import asyncio

import pytest

from tests.gate.conftest import Gate, Origin

SMUGGLING = [
    (
        "cl_and_te",
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\nGET /echo/smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        400,
    ),
    (
        "te_and_cl",
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
        400,
    ),
    ("duplicate_cl", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde", 400),
    ("same_duplicate_cl", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd", 400),
    ("cl_list", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4, 4\r\n\r\nabcd", 400),
    ("cl_plus", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: +4\r\n\r\nabcd", 400),
    ("cl_hex", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 0x4\r\n\r\nabcd", 400),
    ("te_gzip_chunked", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    (
        "te_chunked_identity",
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        400,
    ),
    ("te_xchunked", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 501),
    (
        "te_twice",
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    ("te_space_name", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400),
    ("te_http10", b"POST /echo HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    (
        "bad_chunk_size",
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    (
        "chunk_size_overflow",
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFF1\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    ("chunk_bare_lf", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n", 400),
    ("obs_fold", b"GET /echo HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400),
    ("nul_in_value", b"GET /echo HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n", 400),
    ("cr_in_value", b"GET /echo HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n", 400),
    ("bare_lf_head", b"GET /echo HTTP/1.1\nHost: a\n\n", 400),
    ("two_hosts", b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("no_host", b"GET /echo HTTP/1.1\r\n\r\n", 400),
    ("absolute_form_other_host", b"GET http://evil.test/echo HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("dot_segments", b"GET /echo/../admin HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("encoded_dot_segments", b"GET /echo/%2e%2e/admin HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("http2_preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
    ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
    ("space_in_target", b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("http09", b"GET /\r\n\r\n", 505),
]


@pytest.mark.parametrize(("name", "data", "status"), SMUGGLING, ids=[s[0] for s in SMUGGLING])
async def test_smuggling_shapes_are_refused(gate_factory, origin: Origin, name, data, status):
    g: Gate = await gate_factory()
    g.set_routes({"host": "a", "upstreams": [origin.addr]})
    out = await g.raw(data)
    assert out.startswith(b"HTTP/1.1 %d " % status), out[:200]
    assert b"Connection: close\r\n" in out
    assert out.count(b"HTTP/1.1 ") == 1  # nothing after the refusal (no smuggled second response)
    assert origin.requests == []


async def test_absolute_form_same_host_is_rewritten_to_origin_form(gate_factory, origin: Origin):
    g = await gate_factory()
    g.set_routes({"host": "a", "upstreams": [origin.addr]})
    out = await g.raw(b"GET http://a/echo/abs HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 OK") and b'"path": "/echo/abs"' in out


async def test_chunked_body_is_reframed_exactly(gate_factory, origin: Origin):
    g = await gate_factory()
    g.set_routes({"host": "a", "upstreams": [origin.addr]})
    out = await g.raw(
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer-X: 1\r\n\r\n"
    )
    assert out.startswith(b"HTTP/1.1 200 OK") and b'"body": "abcde"' in out
    assert b"Trailer-X" not in out


@pytest.mark.parametrize(
    ("data", "status", "config"),
    [
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414, {}),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * 40000 + b"\r\n\r\n", 431, {}),
        (b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(120)) + b"\r\n", 431, {}),
        (
            b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2000\r\n\r\n" + b"x" * 2000,
            413,
            {"max_body_bytes": 1000},
        ),
        (
            b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n"
            + b"x" * 2048
            + b"\r\n0\r\n\r\n",
            413,
            {"max_body_bytes": 1000},
        ),
        (b"GET / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n", 417, {}),
        (b"GET / HTTP/3.0\r\nHost: a\r\n\r\n", 400, {}),
    ],
    ids=[
        "long_target",
        "big_header",
        "many_headers",
        "body_too_large_cl",
        "body_too_large_chunked",
        "expect",
        "version",
    ],
)
async def test_limits(gate_factory, origin: Origin, data, status, config):
    g = await gate_factory(**config)
    g.set_routes({"host": "a", "upstreams": [origin.addr]})
    out = await g.raw(data)
    assert out.startswith(b"HTTP/1.1 %d " % status), out[:300]


async def test_slowloris_is_cut_by_header_timeout_without_starving_others(gate_factory, origin: Origin):
    g = await gate_factory(header_timeout_s=0.5)
    g.set_routes({"host": "a", "upstreams": [origin.addr]})
    slow = []
    for _ in range(20):
        r, w = await asyncio.open_connection("127.0.0.1", g.port)
        w.write(b"GET /echo HTTP/1.1\r\nHost: a\r\n")
        slow.append((r, w))
    # Others are served meanwhile.
    for _ in range(5):
        out = await g.raw(b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 200")
    # The slow ones drip a header byte at a time and still get cut off by the deadline.
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _r, w in slow:
        w.write(b"X")
    answers = []
    for r, w in slow:
        async with asyncio.timeout(10):
            answers.append(await r.read())
        w.close()
    assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers), answers[:2]
    assert loop.time() - start < 5
    assert g.state.metrics.timeouts >= 20


async def test_idle_connection_without_bytes_is_closed_silently(gate_factory):
    g = await gate_factory(header_timeout_s=0.3)
    r, w = await asyncio.open_connection("127.0.0.1", g.port)
    async with asyncio.timeout(10):
        assert await r.read() == b""
    w.close()
