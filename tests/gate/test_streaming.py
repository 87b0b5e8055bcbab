"""Bodies streamed both ways with back-pressure, 100-continue, close-delimited responses, WebSocket."""

from __future__ import annotations

import asyncio
import socket
import time

import aiohttp
import httpx
from aiohttp import web

from tests.gate.conftest import Gate, Origin, start_origin, wait_for


def gate_buffered(g: Gate) -> int:
    """Bytes the gate holds for its clients right now (transport buffers + pending output)."""
    total = 0
    for conn in g.state.clients:
        if conn.transport is not None and not conn.transport.is_closing():
            total += conn.transport.get_write_buffer_size()
        total += sum(len(x) for x in conn.out)
    return total


async def test_expect_100_continue(gate_factory, origin: Origin):
    g = await gate_factory()
    g.set_routes({"host": "a", "upstreams": [origin.addr]})
    r, w = await asyncio.open_connection("127.0.0.1", g.port)
    w.write(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    async with asyncio.timeout(10):
        assert await r.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        w.write(b"hello")
        head = await r.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    w.close()
    assert origin.requests[0].headers.get("Expect") is None


async def test_expect_100_continue_refused_early_when_too_large(gate_factory, origin: Origin):
    g = await gate_factory(max_body_bytes=10)
    g.set_routes({"host": "a", "upstreams": [origin.addr]})
    out = await g.raw(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 500\r\nExpect: 100-continue\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413 ") and b"100 Continue" not in out


async def test_slow_client_download_keeps_gate_memory_bounded(gate_factory, origin: Origin):
    g = await gate_factory(high_water_bytes=64 * 1024, low_water_bytes=16 * 1024)
    g.set_routes({"host": "a", "upstreams": [origin.addr]})
    total = 32 * 1024 * 1024
    r, w = await asyncio.open_connection("127.0.0.1", g.port, limit=1 << 20)
    sock = w.get_extra_info("socket")
    import socket as s

    sock.setsockopt(s.SOL_SOCKET, s.SO_RCVBUF, 64 * 1024)
    w.write(b"GET /big?bytes=%d HTTP/1.1\r\nHost: a\r\n\r\n" % total)
    await r.readuntil(b"\r\n\r\n")
    got, peak = 0, 0
    async with asyncio.timeout(60):
        while got < total:
            chunk = await r.read(256 * 1024)
            assert chunk
            got += len(chunk)
            peak = max(peak, gate_buffered(g))
            if got < 4 * 1024 * 1024:
                await asyncio.sleep(0.002)  # a slow reader for the first few MiB
    w.close()
    assert got == total
    assert peak < 1024 * 1024, peak


async def test_upload_streams_with_backpressure_to_slow_origin(gate_factory):
    received = 0

    async def slow_sink(request: web.Request) -> web.StreamResponse:
        nonlocal received
        async for chunk in request.content.iter_chunked(65536):
            received += len(chunk)
            if received < 4 * 1024 * 1024:
                await asyncio.sleep(0.002)
        return web.json_response({"received": received})

    o = await start_origin(lambda app: app.router.add_post("/sink", slow_sink))
    try:
        g = await gate_factory(high_water_bytes=64 * 1024, low_water_bytes=16 * 1024)
        g.set_routes({"host": "a", "upstreams": [o.addr]})
        total = 32 * 1024 * 1024
        peak = 0
        done = False

        async def sample() -> None:
            nonlocal peak
            while not done:
                for conn in g.state.clients:
                    for ex in conn.queue:
                        up = ex.up
                        if up is not None and up.transport is not None and not up.transport.is_closing():
                            peak = max(peak, up.transport.get_write_buffer_size() + ex.body_buf_size)
                await asyncio.sleep(0.001)

        async def body():
            block = b"u" * 65536
            for _ in range(total // len(block)):
                yield block

        sampler = asyncio.create_task(sample())
        async with httpx.AsyncClient(timeout=60) as c:
            r = await c.post(f"http://127.0.0.1:{g.port}/sink", headers={"Host": "a"}, content=body())
        done = True
        await sampler
        assert r.status_code == 200 and r.json()["received"] == total
        assert peak < 1024 * 1024, peak
    finally:
        await o.runner.cleanup()


async def test_close_delimited_response_becomes_chunked(gate_factory):
    async def old_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil-close-")
        await writer.drain()
        writer.write(b"delimited")
        writer.close()

    srv = await asyncio.start_server(old_server, "127.0.0.1", 0)
    g = await gate_factory()
    g.set_routes({"host": "a", "upstreams": [f"127.0.0.1:{srv.sockets[0].getsockname()[1]}"]})
    async with httpx.AsyncClient() as c:
        r = await c.get(f"http://127.0.0.1:{g.port}/", headers={"Host": "a"})
    assert r.text == "until-close-delimited" and r.headers["transfer-encoding"] == "chunked"
    srv.close()


async def test_response_trailers_are_forwarded_and_do_not_leak_into_the_next_response(gate_factory):
    """A chunked upstream response with trailers: an HTTP/1.1 client gets the trailer fields (minus
    framing and hop-by-hop ones) after the last chunk; the next response on the same pooled upstream
    connection carries none of them."""
    heads: list[bytes] = []

    async def trailing_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(2):
            heads.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
                b"0\r\nX-Checksum: c1\r\nKeep-Alive: t99\r\n\r\n"
                if len(heads) == 1
                else b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            )
            await writer.drain()
        writer.close()

    srv = await asyncio.start_server(trailing_server, "127.0.0.1", 0)
    g = await gate_factory()
    g.set_routes({"host": "a", "upstreams": [f"127.0.0.1:{srv.sockets[0].getsockname()[1]}"]})
    reader, writer = await asyncio.open_connection("127.0.0.1", g.port)
    try:
        writer.write(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n")
        first = await asyncio.wait_for(reader.readuntil(b"0\r\n"), 10)
        first += await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert first.startswith(b"HTTP/1.1 200 OK") and b"3\r\nabc\r\n" in first
        assert first.endswith(b"0\r\nX-Checksum: c1\r\n\r\n")
        writer.write(b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
        second = await asyncio.wait_for(reader.readuntil(b"\r\n\r\nok"), 10)
        assert second.startswith(b"HTTP/1.1 200 OK") and b"X-Checksum" not in second and b"t99" not in second
        assert len(heads) == 2  # both on the one pooled upstream connection
    finally:
        writer.close()
        srv.close()


async def test_websocket_echo_through_gate(gate_factory, origin: Origin):
    g = await gate_factory()
    g.set_routes({"host": "a", "upstreams": [origin.addr]})
    async with aiohttp.ClientSession() as s, s.ws_connect(f"http://127.0.0.1:{g.port}/ws", headers={"Host": "a"}) as ws:
        for i in range(20):
            await ws.send_str(f"m{i}")
            assert (await ws.receive_str()) == f"echo:m{i}"
        await ws.send_bytes(b"\x00" * 200_000)
        assert (await ws.receive_bytes()) == b"\x00" * 200_000
    await wait_for(lambda: len(g.sink.entries) == 1)
    assert g.sink.entries[0].status == 101


async def test_upgrade_refused_by_upstream_is_relayed_and_closed(gate_factory, origin: Origin):
    g = await gate_factory()
    g.set_routes({"host": "a", "upstreams": [origin.addr]})
    out = await g.raw(b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 OK") and b"Connection: close\r\n" in out


async def test_body_stall_is_408(gate_factory, origin: Origin):
    g = await gate_factory(body_timeout_s=0.3)
    g.set_routes({"host": "a", "upstreams": [origin.addr]})
    out = await g.raw(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nonly-part")
    assert out.startswith(b"HTTP/1.1 408 ") and b"stalled" in out


async def test_bad_pipelined_request_is_answered_after_the_good_one(gate_factory, origin: Origin):
    g = await gate_factory()
    g.set_routes({"host": "a", "upstreams": [origin.addr]})
    out = await g.raw(
        b"GET /slow?s=0.3 HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    )
    first, _, rest = out.partition(b"HTTP/1.1 400 ")
    assert first.startswith(b"HTTP/1.1 200 OK") and first.endswith(b"slow") and rest
    assert origin.requests[-1].path == "/slow" and len(origin.requests) == 1


async def test_stop_drains_in_flight_requests(gate_factory, origin: Origin):
    g = await gate_factory()
    g.set_routes({"host": "a", "upstreams": [origin.addr]})
    async with httpx.AsyncClient(timeout=10) as c:
        pending = asyncio.create_task(c.get(f"http://127.0.0.1:{g.port}/slow?s=0.5", headers={"Host": "a"}))
        await wait_for(lambda: len(origin.requests) == 1)
        await g.server.stop(5.0)
        r = await pending
        assert r.status_code == 200 and r.text == "slow" and r.headers.get("connection") == "close"
    try:
        await asyncio.open_connection("127.0.0.1", g.port)
    except OSError:
        pass
    else:
        raise AssertionError("the gate still accepts connections after stop")


async def test_an_http10_upstream_connection_is_not_reused_even_with_keep_alive(gate_factory):
    """The gate does not honour an HTTP/1.0 upstream's keep-alive (it is a proxy): each request gets a
    fresh upstream connection, while an HTTP/1.1 upstream's connection is reused."""
    connections: dict[bytes, int] = {b"1.0": 0, b"1.1": 0}

    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = True
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                version = b"1.0" if b"\r\nHost: old\r\n" in head else b"1.1"
                if first:
                    connections[version] += 1
                    first = False
                writer.write(b"HTTP/%s 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok" % version)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    srv = await asyncio.start_server(server, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    g = await gate_factory()
    upstreams = [f"127.0.0.1:{port}"]
    g.set_routes({"host": "old", "upstreams": upstreams}, {"host": "new", "upstreams": upstreams})
    async with httpx.AsyncClient() as c:
        for host in ("old", "new"):  # (one pool per target: the 1.0 requests first, or they'd reuse a 1.1 one)
            for _ in range(3):
                r = await c.get(f"http://127.0.0.1:{g.port}/", headers={"Host": host})
                assert r.status_code == 200 and r.text == "ok"
    assert connections == {b"1.0": 3, b"1.1": 1}
    srv.close()


async def test_upstream_pooled_while_paused_for_a_slow_client_answers_the_next_request(gate_factory, origin: Origin):
    """A response that completes while the gate has paused reading its upstream for a slow client: the
    upstream connection goes back to the pool, and must read again there — the next request on it gets
    its answer (it hung until the upstream timeout)."""

    g = await gate_factory()
    g.set_routes({"host": "*", "upstreams": [origin.addr]})
    g.server.servers[0].sockets[0].setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)  # inherited
    total, tail = 4 * 1024 * 1024, 384 * 1024

    def slow_download() -> int:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
            s.settimeout(30)
            s.connect(("127.0.0.1", g.port))
            s.sendall(f"GET /big?bytes={total} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            got = 0
            while got < total - tail:
                got += len(s.recv(65536))
            time.sleep(2.0)  # the gate pauses the upstream, then the origin's last bytes arrive
            while chunk := s.recv(65536):
                got += len(chunk)
            return got

    assert await asyncio.to_thread(slow_download) > total
    t0 = time.monotonic()
    head = await g.raw(b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", limit_s=20)
    assert head.startswith(b"HTTP/1.1 200"), head[:80]
    assert time.monotonic() - t0 < 10
