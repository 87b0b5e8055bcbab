"""Round trips through the gate to a real origin: routing, keep-alive reuse, streaming, framing."""

from __future__ import annotations

import httpx

from tests.gate.conftest import Gate, Origin


async def test_get_round_trip_and_forwarded_headers(gate_factory, origin: Origin):
    g: Gate = await gate_factory()
    g.set_routes({"host": "app.test", "upstreams": [origin.addr]})
    async with httpx.AsyncClient() as c:
        r = await c.get(
            f"http://127.0.0.1:{g.port}/echo/x?y=1", headers={"Host": "app.test", "X-Forwarded-For": "6.6.6.6"}
        )
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["path"] == "/echo/x?y=1"
    h = data["headers"]
    assert h["x-forwarded-for"] == "127.0.0.1"
    assert h["x-forwarded-proto"] == "http"
    assert h["x-forwarded-host"] == "app.test"
    assert h["host"] == "app.test"
    assert len(h["x-request-id"]) == 16
    assert len(g.sink.entries) == 1 and g.sink.entries[0].status == 200


async def test_keep_alive_reuses_upstream_connections(gate_factory, origin: Origin):
    g = await gate_factory()
    g.set_routes({"host": "app.test", "upstreams": [origin.addr]})
    async with httpx.AsyncClient() as c:
        for i in range(20):
            r = await c.post(f"http://127.0.0.1:{g.port}/echo", headers={"Host": "app.test"}, content=b"x" * i)
            assert r.status_code == 200 and r.json()["body_len"] == i
    assert len(origin.requests) == 20
    assert len(origin.connections) == 1
    assert g.state.pool.created == 1 and g.state.pool.reused == 19


async def test_unknown_host_is_404_page_with_request_id(gate_factory):
    g = await gate_factory()
    async with httpx.AsyncClient() as c:
        r = await c.get(f"http://127.0.0.1:{g.port}/", headers={"Host": "nobody.test"})
        assert r.status_code == 404
        assert "no site is configured for nobody.test" in r.text and r.headers["content-type"].startswith("text/html")
        assert r.headers["x-request-id"] in r.text
        r = await c.get(f"http://127.0.0.1:{g.port}/", headers={"Host": "nobody.test", "Accept": "application/json"})
        assert r.json()["error"]["status"] == 404


async def test_chunked_response_streams_and_head(gate_factory, origin: Origin):
    g = await gate_factory()
    g.set_routes({"host": "app.test", "upstreams": [origin.addr]})
    async with httpx.AsyncClient() as c:
        r = await c.get(f"http://127.0.0.1:{g.port}/stream?n=5&size=3", headers={"Host": "app.test"})
        assert r.status_code == 200 and r.content == b"AAABBBCCCDDDEEE"
        assert r.headers["transfer-encoding"] == "chunked"
        r = await c.head(f"http://127.0.0.1:{g.port}/big?bytes=1000", headers={"Host": "app.test"})
        assert r.status_code == 200 and r.headers["content-length"] == "1000" and r.content == b""
        r = await c.get(f"http://127.0.0.1:{g.port}/big?bytes=300000", headers={"Host": "app.test"})
        assert r.content == b"x" * 300000


async def test_strip_prefix_and_longest_match(gate_factory, origin: Origin):
    g = await gate_factory()
    g.set_routes(
        {"host": "app.test", "path": "/api", "strip_prefix": True, "upstreams": [origin.addr]},
        {"host": "app.test", "upstreams": ["127.0.0.1:1"]},
    )
    async with httpx.AsyncClient() as c:
        r = await c.get(f"http://127.0.0.1:{g.port}/api/echo/a?b=c", headers={"Host": "app.test"})
    assert r.json()["path"] == "/echo/a?b=c"


async def test_pipelined_requests_answered_in_order(gate_factory, origin: Origin):
    g = await gate_factory()
    g.set_routes({"host": "a", "upstreams": [origin.addr]})
    req = b"".join(b"GET /echo/%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(5))
    out = await g.raw(req + b"GET /echo/last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    paths = [p.split(b'"')[0] for p in out.split(b'"path": "')[1:]]
    assert paths == [b"/echo/0", b"/echo/1", b"/echo/2", b"/echo/3", b"/echo/4", b"/echo/last"]
    assert out.count(b"HTTP/1.1 200 OK") == 6


async def test_durations_are_finer_than_the_loop_clock(gate_factory, origin: Origin):
    # uvloop's loop time moves in whole milliseconds; latency metrics and the access log must not.
    g = await gate_factory()
    g.set_routes({"host": "app.test", "upstreams": [origin.addr]})
    async with httpx.AsyncClient() as c:
        for _ in range(5):
            r = await c.get(f"http://127.0.0.1:{g.port}/slow?s=0.0033", headers={"Host": "app.test"})
            assert r.status_code == 200
    entries = g.sink.entries
    assert len(entries) == 5
    # (The origin's 3.3 ms sleep is itself a loop timer, whole milliseconds: it may end after 3 ms.)
    assert all(
        e.duration_ms >= 2.5 and e.upstream_ms is not None and 2.5 <= e.upstream_ms <= e.duration_ms for e in entries
    ), [(e.duration_ms, e.upstream_ms) for e in entries]
    assert any(e.duration_ms != int(e.duration_ms) for e in entries), [e.duration_ms for e in entries]
