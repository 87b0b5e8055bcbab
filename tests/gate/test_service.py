"""GateService: routes in a real SQLite store, atomic swaps under load, events, metrics and access log."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from core.bus import EventBus
from core.errors import Conflict, NotFound
from core.ports import CertificateBoard
from core.schema import CORE_MIGRATIONS
from core.store import Store
from gate.config import GateConfig
from gate.routes import RouteSpec
from gate.service import GateService
from tests.gate.conftest import ListSink, Origin, start_origin


@pytest.fixture
async def service(tmp_path):
    store = Store(tmp_path / "state.db")
    await store.open()
    await store.migrate("core", CORE_MIGRATIONS)
    bus = EventBus(store)
    await bus.start()
    sink = ListSink()
    certs = CertificateBoard()
    svc = GateService(
        GateConfig(), store=store, bus=bus, listen_host="127.0.0.1", listen_port=0, certificates=certs, access_log=sink
    )
    await svc.start()
    svc.sink = sink  # type: ignore[attr-defined]
    yield svc
    await svc.stop(2.0)
    bus.close()
    await store.close()


async def test_crud_persists_and_publishes(service: GateService, origin: Origin, tmp_path):
    sub = service.bus.subscribe(types=["route.changed"])
    r = await service.add_route(RouteSpec(host="a.test", upstreams=[origin.addr], tls="auto"))
    assert service.certificates.wanted == frozenset({"a.test"})
    with pytest.raises(Conflict, match="already exists"):
        await service.add_route(RouteSpec(host="A.test", path="/", upstreams=[origin.addr]))
    before, after = await service.update_route(r.id, RouteSpec(host="a.test", upstreams=[origin.addr]))
    assert before.spec.tls == "auto" and after.spec.tls == "off" and service.certificates.wanted == frozenset()
    ev = [await anext(sub), await anext(sub)]
    assert [e.data["action"] for e in ev] == ["added", "updated"]
    assert ev[1].data["version"] > ev[0].data["version"]
    # A fresh service on the same DB loads the same table.
    other = GateService(GateConfig(), store=service.store, bus=service.bus, listen_host="127.0.0.1", listen_port=0)
    await other.start()
    try:
        assert [x.spec for x in other.routes()] == [after.spec]
    finally:
        await other.stop(1)
    await service.remove_route(r.id)
    with pytest.raises(NotFound):
        service.get_route(r.id)
    rows = await service.store.fetchall("SELECT * FROM gate_routes")
    assert rows == []
    sub.close()


async def test_route_change_under_load_drops_nothing_and_keeps_websocket(service: GateService, origin: Origin):
    other = await start_origin()
    try:
        route = await service.add_route(RouteSpec(host="a.test", upstreams=[origin.addr]))
        port = service.bound_port
        url = f"http://127.0.0.1:{port}"
        failures: list[str] = []
        sent = 0
        stop = asyncio.Event()

        async def worker(session: aiohttp.ClientSession) -> None:
            nonlocal sent
            while not stop.is_set():
                async with session.post(f"{url}/echo", data=b"x" * 100, headers={"Host": "a.test"}) as resp:
                    sent += 1
                    if resp.status != 200:
                        failures.append(f"{resp.status} {await resp.text()}")
                    else:
                        await resp.read()

        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"{url}/ws", headers={"Host": "a.test"})
            workers = [asyncio.create_task(worker(session)) for _ in range(8)]
            targets = [other.addr, origin.addr]
            # Keep changing the table until both many changes and many requests have overlapped (counts,
            # not a time window, so a loaded machine can't make the test vacuous), within a hard bound.
            deadline = time.monotonic() + 30.0
            changes = 0
            while (changes < 30 or sent < 100) and time.monotonic() < deadline:
                await service.update_route(route.id, RouteSpec(host="a.test", upstreams=[targets[changes % 2]]))
                changes += 1
                await asyncio.sleep(0.02)
            stop.set()
            await asyncio.gather(*workers)
            await ws.send_str("still here")
            assert await ws.receive_str() == "echo:still here"
            await ws.close()
        assert failures == []
        assert changes >= 30 and sent >= 100
        assert len(origin.requests) > 0 and len(other.requests) > 0
        # Metrics and the access log agree with what was sent (+1 for the WebSocket).
        await asyncio.sleep(0)
        m = service.metrics()
        assert m["total"]["requests"] == sent + 1
        assert m["routes"]["a.test"]["status"]["2xx"] == sent
        assert len(service.sink.entries) == sent + 1  # type: ignore[attr-defined]
        assert sum(t["requests"] for t in m["targets"].values()) == sent + 1
    finally:
        await other.runner.cleanup()
