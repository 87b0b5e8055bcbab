"""The timeout sweeper walks the open connections in time slices (`EdgeServer.sweep_once`): a pass over
many connections gives the loop back between slices, still closes every expired one, and skips one closed
while it was paused."""

from __future__ import annotations

import asyncio

from tests.gate.conftest import Gate, GateFactory, Origin, wait_for


async def _idle_clients(port: int, n: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """`n` keep-alive connections, each after one answered GET (idle: the keep-alive deadline runs)."""
    out = []
    for _ in range(n):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"GET /status/200 HTTP/1.1\r\nHost: sweep.test\r\n\r\n")
        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200"), head
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await r.readexactly(length)
        out.append((r, w))
    return out


def _expire_all(g: Gate) -> None:
    """The gate's clock a minute on: every keep-alive deadline has passed (no test waits for it)."""
    loop = asyncio.get_running_loop()
    g.state.clock = lambda: loop.time() + 60


async def test_a_pass_over_many_connections_is_sliced_and_still_closes_every_expired_one(
    gate_factory: GateFactory, origin: Origin
) -> None:
    g = await gate_factory(keepalive_timeout_s=30.0)
    g.set_routes({"host": "*", "upstreams": [origin.addr]})
    clients = await _idle_clients(g.port, 120)
    await wait_for(lambda: len(g.state.clients) == 120)

    ticks = 0

    async def count_turns() -> None:  # runs only when the pass gives the loop back
        nonlocal ticks
        while True:
            await asyncio.sleep(0)
            ticks += 1

    counter = asyncio.get_running_loop().create_task(count_turns())
    try:
        slices = await g.server.sweep_once(slice_s=0.0)  # nothing expired yet: a walk only
        assert slices >= 120 // 16 - 1, slices
        assert ticks >= slices - 2 > 0, (ticks, slices)  # the loop ran between the slices (the counter starts late)
        assert len(g.state.clients) == 120

        # Close some clients; the gate removes their connections, and the next sliced pass skips them.
        for _, w in clients[:40]:
            w.close()
        await wait_for(lambda: len(g.state.clients) == 80)

        _expire_all(g)
        slices = await g.server.sweep_once(slice_s=0.0)
        assert slices > 1
        await wait_for(lambda: not g.state.clients)
        for r, _ in clients[40:]:  # each was closed by the gate: EOF
            assert await asyncio.wait_for(r.read(), 10) == b""
    finally:
        counter.cancel()
        for _, w in clients:
            w.close()


async def test_a_connection_closed_while_the_pass_is_paused_is_skipped(
    gate_factory: GateFactory, origin: Origin
) -> None:
    g = await gate_factory(keepalive_timeout_s=30.0)
    g.set_routes({"host": "*", "upstreams": [origin.addr]})
    clients = await _idle_clients(g.port, 64)
    await wait_for(lambda: len(g.state.clients) == 64)
    _expire_all(g)  # the pass closes each it reaches

    # While the pass is paused, close connections it has not reached yet: it must skip them (no error).
    async def close_some() -> None:
        await asyncio.sleep(0)
        for conn in list(g.state.clients)[-20:]:
            conn.abort()

    closer = asyncio.get_running_loop().create_task(close_some())
    await g.server.sweep_once(slice_s=0.0)
    await closer
    await wait_for(lambda: not g.state.clients)
    for _, w in clients:
        w.close()
