"""Fixtures for gate tests: a real origin server (aiohttp) and an in-process gate on loopback ports."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from core.ports import AccessLogEntry
from core.workers import WorkerPool
from gate.config import GateConfig
from gate.routes import Route, RouteSpec
from gate.server import EdgeServer
from gate.state import ProxyState


@dataclass
class Origin:
    """An aiohttp app on 127.0.0.1 that counts the TCP connections it accepted."""

    port: int
    runner: web.AppRunner
    connections: set[int] = field(default_factory=set)
    requests: list[web.Request] = field(default_factory=list)

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"


async def _echo(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    return web.json_response(
        {
            "method": request.method,
            "path": request.path_qs,
            "body_len": len(body),
            "body": body[:200].decode("latin-1"),
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "header_list": [[k, v] for k, v in request.headers.items()],
        }
    )


async def _stream(request: web.Request) -> web.StreamResponse:
    n, size = int(request.query.get("n", "4")), int(request.query.get("size", "10"))
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for i in range(n):
        await resp.write(bytes([65 + i % 26]) * size)
    await resp.write_eof()
    return resp


async def _big(request: web.Request) -> web.StreamResponse:
    total = int(request.query["bytes"])
    resp = web.StreamResponse(headers={"Content-Length": str(total)})
    await resp.prepare(request)
    block = b"x" * 65536
    sent = 0
    while sent < total:
        n = min(len(block), total - sent)
        await resp.write(block[:n])
        sent += n
    return resp


async def _upload(request: web.Request) -> web.StreamResponse:
    total = 0
    async for chunk in request.content.iter_any():
        total += len(chunk)
    return web.json_response({"received": total})


async def _slow(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(float(request.query.get("s", "1")))
    return web.Response(text="slow")


async def _status(request: web.Request) -> web.StreamResponse:
    return web.Response(status=int(request.match_info["code"]), text="status")


async def _ws(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == web.WSMsgType.TEXT:
            await ws.send_str("echo:" + msg.data)
        elif msg.type == web.WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws


async def start_origin(extra: Callable[[web.Application], None] | None = None) -> Origin:
    app = web.Application(client_max_size=1 << 31)
    app.router.add_route("*", "/echo{tail:.*}", _echo)
    app.router.add_get("/stream", _stream)
    app.router.add_get("/big", _big)
    app.router.add_post("/upload", _upload)
    app.router.add_get("/slow", _slow)
    app.router.add_get("/status/{code}", _status)
    app.router.add_get("/ws", _ws)
    if extra:
        extra(app)
    origin_holder: dict[str, Origin] = {}

    @web.middleware
    async def count(request: web.Request, handler: Any) -> web.StreamResponse:
        o = origin_holder["o"]
        if request.transport is not None:
            o.connections.add(id(request.transport))
        o.requests.append(request)
        return await handler(request)

    app.middlewares.append(count)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    o = Origin(port, runner)
    origin_holder["o"] = o
    return o


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    o = await start_origin()
    yield o
    await o.runner.cleanup()


class ListSink:
    """The access log as the gate writes it, each line read back (and so checked to be JSON). Batches of
    one line: the tests read a request's entry as soon as it is answered."""

    access_batch_lines, access_batch_chars, access_batch_s = 1, 256 * 1024, 0.1

    def __init__(self) -> None:
        self.entries: list[AccessLogEntry] = []

    def record_lines(self, lines: list[str], at: float) -> None:
        for line in lines:
            assert line.endswith("\n") and line.count("\n") == 1, line
            self.entries.append(AccessLogEntry.from_line(line))


@dataclass
class Gate:
    state: ProxyState
    server: EdgeServer
    port: int
    sink: ListSink
    _next_id: int = 1

    def set_routes(self, *specs: dict[str, Any]) -> None:
        routes = []
        for s in specs:
            routes.append(Route(self._next_id, RouteSpec(**s)))
            self._next_id += 1
        self.state.install(self.state.build_snapshot(routes))

    async def raw(self, data: bytes, *, read_until_close: bool = True, limit_s: float = 10.0) -> bytes:
        """Send exact bytes on a fresh connection; return everything read until the gate closes."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(data)
        await writer.drain()
        out = b""
        try:
            async with asyncio.timeout(limit_s):
                while True:
                    chunk = await reader.read(65536)
                    if not chunk:
                        break
                    out += chunk
                    if not read_until_close:
                        break
        finally:
            writer.close()
        return out


GateFactory = Callable[..., Awaitable[Gate]]


@pytest.fixture
async def gate_factory() -> AsyncIterator[GateFactory]:
    made: list[Gate] = []

    async def make(workers: WorkerPool | None = None, **config: Any) -> Gate:
        sink = ListSink()
        loop = asyncio.get_running_loop()
        state = ProxyState(
            GateConfig(**config), clock=loop.time, wall_clock=time.time, access_log=sink, workers=workers
        )
        server = EdgeServer(state)
        port = await server.listen("127.0.0.1", 0)
        g = Gate(state, server, port, sink)
        made.append(g)
        return g

    yield make
    for g in made:
        await g.server.stop(1.0)


async def wait_for(cond: Callable[[], bool], limit_s: float = 10.0) -> None:
    deadline = time.monotonic() + limit_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def pytest_asyncio_loop_factories(config: Any, item: Any) -> dict[str, Any]:
    """Gate tests run on uvloop, the loop `fsctl serve` uses."""
    import uvloop

    return {"uvloop": uvloop.new_event_loop}
