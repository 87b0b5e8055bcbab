"""Clients that abort a request (close mid-body, close while awaiting the response, RST_STREAM on
HTTP/2): the gate closes that upstream connection at once, logs 499, and does not count the abort
against the upstream's health — another route on the same upstream keeps answering 200 (issue 13,
hole 5). The origin here is a raw socket server, so the test sees exactly when the gate lets go."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from h2.errors import ErrorCodes

from tests.gate.conftest import Gate, wait_for
from tests.gate.tls_support import RawH2, start_tls

ORIGIN_BODY_TIMEOUT_S = 3.0  # the origin gives up on a stalled body after this (as real servers do)


@dataclass
class RawOrigin:
    """An HTTP/1.1 origin on raw sockets. `/ok` answers 200 at once; `/upload` reads its body (giving up
    after ORIGIN_BODY_TIMEOUT_S); `/hang` never answers. It records when the gate closed a connection
    that was inside a request (`gate_closed`: seconds since that request's head arrived)."""

    port: int = 0
    server: asyncio.Server | None = None
    heads: list[bytes] = field(default_factory=list)
    gate_closed: list[float] = field(default_factory=list)
    origin_timeouts: int = 0

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    @classmethod
    async def start(cls) -> RawOrigin:
        o = cls()
        o.server = await asyncio.start_server(o.handle, "127.0.0.1", 0)
        o.port = o.server.sockets[0].getsockname()[1]
        return o

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.heads.append(head)
                t0 = time.monotonic()
                path = head.split(b" ", 2)[1]
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if path.startswith(b"/hang"):
                    await reader.read()  # returns when the gate closes the connection
                    self.gate_closed.append(time.monotonic() - t0)
                    return
                try:
                    async with asyncio.timeout(ORIGIN_BODY_TIMEOUT_S):
                        await reader.readexactly(length)
                except TimeoutError:
                    self.origin_timeouts += 1
                    return  # closes: today's gate then answered 502 and counted it against us
                except (asyncio.IncompleteReadError, ConnectionError):
                    self.gate_closed.append(time.monotonic() - t0)
                    return
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        finally:
            writer.close()

    def close(self) -> None:
        assert self.server is not None
        self.server.close()


async def _probe_while(g: Gate, host: str, seconds: float) -> list[int]:
    """Requests to another route on the same upstream, every 50 ms for `seconds`: their statuses."""
    statuses = []
    end = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=5) as c:
        while time.monotonic() < end:
            r = await c.get(f"http://127.0.0.1:{g.port}/ok", headers={"Host": host})
            statuses.append(r.status_code)
            await asyncio.sleep(0.05)
    return statuses


def _target(g: Gate, o: RawOrigin):
    return g.state.health[o.addr]


async def test_http1_clients_aborting_bodies_do_not_eject_the_upstream(gate_factory):
    g: Gate = await gate_factory(eject_after_failures=2, eject_backoff_s=30)
    o = await RawOrigin.start()
    g.set_routes({"host": "a", "upstreams": [o.addr]}, {"host": "b", "upstreams": [o.addr]})
    attackers = []
    for _ in range(20):
        _, w = await asyncio.open_connection("127.0.0.1", g.port)
        # More than the request buffer (64 KiB): the head and the first bytes go upstream before the abort.
        w.write(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 70000)
        await w.drain()
        attackers.append(w)
    await wait_for(lambda: len(o.heads) == 20)
    for w in attackers:
        w.close()
    statuses = await _probe_while(g, "b", ORIGIN_BODY_TIMEOUT_S + 0.5)
    assert set(statuses) == {200}, statuses
    await wait_for(lambda: len(o.gate_closed) == 20, limit_s=5)
    assert max(o.gate_closed) < 1.5, o.gate_closed  # promptly, not after the origin's own timeout
    assert o.origin_timeouts == 0
    t = _target(g, o)
    assert t.total_failures == 0 and t.ejected_until == 0.0
    aborted = [e for e in g.sink.entries if e.host == "a"]
    assert [e.status for e in aborted] == [499] * 20
    by_class = g.state.metrics.routes["a"].by_class
    assert by_class[4] == 20 and by_class[5] == 0  # the metrics count them as the client's (4xx), not 502
    o.close()


async def test_http1_client_closing_while_awaiting_the_response_frees_the_upstream(gate_factory):
    g: Gate = await gate_factory()
    o = await RawOrigin.start()
    g.set_routes({"host": "a", "upstreams": [o.addr]})
    _, w = await asyncio.open_connection("127.0.0.1", g.port)
    w.write(b"GET /hang HTTP/1.1\r\nHost: a\r\n\r\n")
    await w.drain()
    await wait_for(lambda: len(o.heads) == 1)
    w.close()
    await wait_for(lambda: len(o.gate_closed) == 1, limit_s=5)
    assert o.gate_closed[0] < 1.5
    await wait_for(lambda: bool(g.sink.entries))
    assert g.sink.entries[0].status == 499
    assert _target(g, o).total_failures == 0
    o.close()


async def test_http2_stream_resets_mid_body_and_while_waiting_free_the_upstream(gate_factory, tmp_path: Path):
    g: Gate = await gate_factory(eject_after_failures=2, eject_backoff_s=30)
    o = await RawOrigin.start()
    # (A small request buffer: the 1000 body bytes below pass it, so the upstream is engaged.)
    g.set_routes(
        {"host": "a.test", "upstreams": [o.addr], "request_buffer_bytes": 512}, {"host": "b", "upstreams": [o.addr]}
    )
    tg = await start_tls(g, tmp_path)
    tg.publish("a.test")
    h = await RawH2.open(tg)
    sids = []
    for i in range(20):
        if i % 2:
            sids.append(h.request("/hang"))
        else:
            sid = h.conn.get_next_available_stream_id()
            h.conn.send_headers(
                sid,
                [
                    (b":method", b"POST"),
                    (b":scheme", b"https"),
                    (b":authority", b"a.test"),
                    (b":path", b"/upload"),
                    (b"content-length", b"1000000"),
                ],
            )
            h.conn.send_data(sid, b"x" * 1000)
            h.send()
            sids.append(sid)
    await wait_for(lambda: len(o.heads) == 20)
    for sid in sids:
        h.conn.reset_stream(sid, ErrorCodes.CANCEL)
    h.send()
    statuses = await _probe_while(g, "b", ORIGIN_BODY_TIMEOUT_S + 0.5)
    assert set(statuses) == {200}, statuses
    await wait_for(lambda: len(o.gate_closed) == 20, limit_s=5)
    assert max(o.gate_closed) < 1.5, o.gate_closed
    assert o.origin_timeouts == 0
    t = _target(g, o)
    assert t.total_failures == 0 and t.ejected_until == 0.0
    assert [e.status for e in g.sink.entries if e.host == "a.test"] == [499] * 20
    h.close()
    o.close()


async def test_http2_rapid_reset_dials_no_upstream_connections(gate_factory, tmp_path: Path):
    """Streams reset in the same read as their HEADERS end before their connect task runs: the origin
    is not handed one new (then pooled) connection per reset stream."""
    g: Gate = await gate_factory()
    o = await RawOrigin.start()
    g.set_routes({"host": "a.test", "upstreams": [o.addr]})
    tg = await start_tls(g, tmp_path)
    tg.publish("a.test")
    h = await RawH2.open(tg, auto_ack=True)
    for _ in range(150):  # under the per-connection reset budget: the connection stays up
        sid = h.conn.get_next_available_stream_id()
        h.conn.send_headers(
            sid,
            [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a.test"), (b":path", b"/ok")],
            end_stream=True,
        )
        h.conn.reset_stream(sid, ErrorCodes.CANCEL)
    h.send()
    sid = h.request("/ok")
    await h.pump(lambda: h.ended(sid))
    assert h.status(sid) == 200
    assert g.state.pool.created <= 3, g.state.pool.created  # the last request's connection (and a little slack)
    assert len(o.heads) <= 3
    h.close()
    o.close()
