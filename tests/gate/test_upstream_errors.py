"""Upstream failures: refused → 502, silent → 504, no target → 503 with Retry-After, passive ejection,
retry on another target, and a pooled connection closed by the upstream retried transparently."""

from __future__ import annotations

import asyncio
import socket

import httpx

from tests.gate.conftest import Gate, Origin, start_origin


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_refused_is_502_and_target_gets_ejected(gate_factory):
    g: Gate = await gate_factory(eject_after_failures=2, eject_backoff_s=30)
    port = dead_port()
    g.set_routes({"host": "a", "upstreams": [f"127.0.0.1:{port}"]})
    async with httpx.AsyncClient() as c:
        r1 = await c.get(f"http://127.0.0.1:{g.port}/", headers={"Host": "a", "Accept": "application/json"})
        r2 = await c.get(f"http://127.0.0.1:{g.port}/", headers={"Host": "a"})
        r3 = await c.get(f"http://127.0.0.1:{g.port}/", headers={"Host": "a"})
    assert r1.status_code == 502 and "refused" in r1.json()["error"]["message"]
    assert r1.json()["error"]["request_id"] == r1.headers["x-request-id"]
    assert r2.status_code == 502
    assert r3.status_code == 503 and 1 <= int(r3.headers["retry-after"]) <= 30


async def test_connect_failure_retries_another_target(gate_factory, origin: Origin):
    g = await gate_factory()
    g.set_routes({"host": "a", "upstreams": [f"127.0.0.1:{dead_port()}", origin.addr]})
    async with httpx.AsyncClient() as c:
        for _ in range(6):
            r = await c.post(f"http://127.0.0.1:{g.port}/echo", headers={"Host": "a"}, content=b"body")
            assert r.status_code == 200 and r.json()["body_len"] == 4
    assert len(origin.requests) == 6


async def test_silent_upstream_is_504(gate_factory):
    g = await gate_factory(upstream_timeout_s=0.5)
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        await reader.read()

    srv = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    g.set_routes({"host": "a", "upstreams": [f"127.0.0.1:{port}"]})
    async with httpx.AsyncClient(timeout=10) as c:
        r = await c.get(f"http://127.0.0.1:{g.port}/", headers={"Host": "a"})
    assert r.status_code == 504 and "did not answer in time" in r.text
    for w in accepted:
        w.close()
    srv.close()


async def test_reset_before_response_is_502(gate_factory):
    g = await gate_factory()

    async def rude(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.transport.abort()

    srv = await asyncio.start_server(rude, "127.0.0.1", 0)
    g.set_routes({"host": "a", "upstreams": [f"127.0.0.1:{srv.sockets[0].getsockname()[1]}"]})
    out = await g.raw(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi", read_until_close=False)
    assert out.startswith(b"HTTP/1.1 502 "), out
    srv.close()


async def test_no_targets_for_service_is_503(gate_factory):
    g = await gate_factory()
    g.set_routes({"host": "a", "upstreams": ["service:web"]})
    out = await g.raw(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", read_until_close=False)
    assert out.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1\r\n" in out


async def test_service_targets_follow_the_endpoint_board(gate_factory, origin: Origin):
    from core.ports import Endpoint

    g = await gate_factory()
    g.set_routes({"host": "a", "upstreams": ["service:web"]})
    g.state.endpoints.publish("web", [Endpoint("127.0.0.1", origin.port, "web-1")])
    async with httpx.AsyncClient() as c:
        r = await c.get(f"http://127.0.0.1:{g.port}/echo", headers={"Host": "a"})
    assert r.status_code == 200


async def test_pooled_connection_closed_by_upstream_is_retried(gate_factory):
    """An origin that closes every connection right after its response without saying so."""
    g = await gate_factory()
    served = 0

    async def one_shot(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        await reader.readuntil(b"\r\n\r\n")
        served += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(one_shot, "127.0.0.1", 0)
    g.set_routes({"host": "a", "upstreams": [f"127.0.0.1:{srv.sockets[0].getsockname()[1]}"]})
    async with httpx.AsyncClient() as c:
        for _ in range(5):
            r = await c.get(f"http://127.0.0.1:{g.port}/", headers={"Host": "a"})
            assert r.status_code == 200 and r.text == "ok"
            await asyncio.sleep(0)  # no wait for the close to arrive: the retry must cover it
    assert served == 5
    srv.close()


async def test_method_not_allowed(gate_factory, origin: Origin):
    g = await gate_factory()
    g.set_routes({"host": "a", "upstreams": [origin.addr], "methods": ["GET"]})
    out = await g.raw(b"DELETE /echo HTTP/1.1\r\nHost: a\r\n\r\n", read_until_close=False)
    assert out.startswith(b"HTTP/1.1 405 ") and b"Allow: GET\r\n" in out


async def test_upstream_status_passes_through(gate_factory, origin: Origin):
    g = await gate_factory()
    g.set_routes({"host": "a", "upstreams": [origin.addr]})
    async with httpx.AsyncClient() as c:
        for code in (201, 204, 304, 404, 500, 503):
            r = await c.get(f"http://127.0.0.1:{g.port}/status/{code}", headers={"Host": "a"})
            assert r.status_code == code


async def test_two_origins_round_robin(gate_factory, origin: Origin):
    other = await start_origin()
    try:
        g = await gate_factory()
        g.set_routes({"host": "a", "upstreams": [origin.addr, other.addr]})
        async with httpx.AsyncClient() as c:
            for _ in range(10):
                assert (await c.get(f"http://127.0.0.1:{g.port}/echo", headers={"Host": "a"})).status_code == 200
        assert len(origin.requests) == 5 and len(other.requests) == 5
    finally:
        await other.runner.cleanup()


async def test_slow_upload_longer_than_upstream_timeout_succeeds(gate_factory, origin: Origin):
    """The upstream timeout counts from the end of the request, not while the client is still uploading."""
    g = await gate_factory(upstream_timeout_s=0.3)
    g.set_routes({"host": "a", "upstreams": [origin.addr]})

    async def body():
        for _ in range(6):
            yield b"x" * 10
            await asyncio.sleep(0.15)

    async with httpx.AsyncClient(timeout=10) as c:
        r = await c.post(f"http://127.0.0.1:{g.port}/upload", headers={"Host": "a"}, content=body())
    assert r.status_code == 200 and r.json()["received"] == 60


async def test_connect_timeout_is_504(gate_factory):
    """An upstream whose accept queue is full never completes the handshake (its SYNs are dropped)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(0)
    port = s.getsockname()[1]
    fillers = []
    for _ in range(4):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(c)
    try:
        g = await gate_factory(connect_timeout_s=0.5)
        g.set_routes({"host": "a", "upstreams": [f"127.0.0.1:{port}"]})
        out = await g.raw(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", read_until_close=False)
        assert out.startswith(b"HTTP/1.1 504 ") and b"did not accept the connection in time" in out
    finally:
        for c in fillers:
            c.close()
        s.close()
