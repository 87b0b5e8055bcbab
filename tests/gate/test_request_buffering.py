"""Request bodies up to the route's buffer (`request_buffer_bytes`, default 64 KiB) are received whole
before an upstream connection is taken (issue 13, item 7): a malformed body is refused with nothing
sent upstream, a slow client holds no origin connection, `Expect: 100-continue` is answered by the
gate; larger bodies stream once the buffer is full. And the loop guard: a route whose upstream is the
gate itself gets 508 at the first loop, while gates chained on purpose still work."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from gate.h1 import check_request
from tests.gate.conftest import Gate, wait_for
from tests.gate.tls_support import RawH2, start_tls


class CountingOrigin:
    """A raw HTTP/1.1 origin recording when each connection was accepted and every request it read
    (head and Content-Length or chunked body); answers 200 with the body length."""

    def __init__(self) -> None:
        self.accepted: list[float] = []
        self.heads: list[bytes] = []
        self.bodies: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted.append(time.monotonic())
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                body = b""
                for line in head.lower().split(b"\r\n"):
                    if line.startswith(b"content-length:"):
                        body = await reader.readexactly(int(line.split(b":", 1)[1]))
                    elif line == b"transfer-encoding: chunked":
                        while True:
                            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                            body += (await reader.readexactly(size + 2))[:-2]
                            if size == 0:
                                break
                self.bodies.append(body)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%d" % (len(str(len(body))), len(body)))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        assert self.server is not None
        self.server.close()


async def _gate(gate_factory, **route) -> tuple[Gate, CountingOrigin]:
    o = CountingOrigin()
    g: Gate = await gate_factory()
    g.set_routes({"host": "a", "upstreams": [await o.start()], **route})
    return g, o


async def _read_response(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = 0
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + await asyncio.wait_for(reader.readexactly(length), 10)


@pytest.mark.parametrize(
    "body",
    [
        b"5\r\nhello\r\nzz\r\n",  # a chunk size that is not hex
        b"5\r\nhelloXX3\r\nabc\r\n0\r\n\r\n",  # chunk data longer than its size
        b"3\nabc\n0\n\n",  # bare LF framing
    ],
)
async def test_malformed_chunked_body_is_refused_before_anything_goes_upstream(gate_factory, body):
    g, o = await _gate(gate_factory)
    out = await g.raw(b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    assert out.startswith(b"HTTP/1.1 400 "), out
    await asyncio.sleep(0.2)
    assert o.accepted == [] and o.heads == []  # not even the head was sent, no connection was opened
    o.close()


async def test_slow_small_body_holds_no_origin_connection(gate_factory):
    g, o = await _gate(gate_factory)
    reader, writer = await asyncio.open_connection("127.0.0.1", g.port)
    writer.write(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhello")
    await writer.drain()
    await asyncio.sleep(0.5)
    assert o.accepted == []  # half the body so far: the origin has not been contacted
    writer.write(b"world")
    out = await _read_response(reader)
    assert out.startswith(b"HTTP/1.1 200 ") and out.endswith(b"\r\n\r\n10")
    assert o.bodies == [b"helloworld"]
    writer.close()
    o.close()


async def test_chunked_small_body_is_forwarded_whole(gate_factory):
    g, o = await _gate(gate_factory)
    out = await g.raw(
        b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
    )
    assert out.startswith(b"HTTP/1.1 200 ") and out.endswith(b"\r\n\r\n7"), out
    assert o.bodies == [b"abcdefg"]
    o.close()


async def test_pipelined_requests_with_bodies_are_each_buffered_and_answered_in_order(gate_factory):
    g, o = await _gate(gate_factory)
    out = await g.raw(
        b"POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
        b"POST /2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n"
        b"POST /3 HTTP/1.0\r\nHost: a\r\nContent-Length: 1\r\n\r\nf"
    )
    assert out.count(b"HTTP/1.1 200 OK") == 3, out
    assert o.bodies == [b"abc", b"de", b"f"] and [h.split(b" ")[1] for h in o.heads] == [b"/1", b"/2", b"/3"]
    o.close()


async def test_expect_100_continue_is_answered_by_the_gate_when_it_buffers(gate_factory):
    g, o = await _gate(gate_factory, max_body_bytes=1000)
    reader, writer = await asyncio.open_connection("127.0.0.1", g.port)
    writer.write(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    await writer.drain()
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert o.accepted == []  # the gate said Continue itself
    writer.write(b"hello")
    out = await _read_response(reader)
    assert out.startswith(b"HTTP/1.1 200 ") and out.endswith(b"5")
    assert b"expect" not in o.heads[0].lower()
    writer.close()
    # A body the route refuses by its announced size gets the refusal, never a 100.
    out = await g.raw(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413 ") and b" 100 " not in out
    o.close()


async def test_larger_body_streams_once_the_buffer_is_full(gate_factory):
    g, o = await _gate(gate_factory, request_buffer_bytes=1000)
    reader, writer = await asyncio.open_connection("127.0.0.1", g.port)
    writer.write(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n" + b"a" * 500)
    await writer.drain()
    await asyncio.sleep(0.3)
    assert o.heads == []  # under the buffer: held
    writer.write(b"b" * 1000)
    await writer.drain()
    await wait_for(lambda: len(o.heads) == 1)  # past it: the head and what came so far go upstream
    writer.write(b"c" * 3500)
    out = await _read_response(reader)
    assert out.endswith(b"5000") and o.bodies == [b"a" * 500 + b"b" * 1000 + b"c" * 3500]
    writer.close()
    o.close()


async def test_buffering_off_streams_at_once(gate_factory):
    g, o = await _gate(gate_factory, request_buffer_bytes=0)
    reader, writer = await asyncio.open_connection("127.0.0.1", g.port)
    writer.write(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhello")
    await writer.drain()
    await wait_for(lambda: len(o.heads) == 1)
    writer.write(b"world")
    assert (await _read_response(reader)).endswith(b"10")
    writer.close()
    o.close()


async def test_client_abort_while_buffering_never_reaches_the_origin(gate_factory):
    g, o = await _gate(gate_factory)
    _, writer = await asyncio.open_connection("127.0.0.1", g.port)
    writer.write(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100)
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.close()
    await wait_for(lambda: bool(g.sink.entries))
    assert g.sink.entries[0].status == 499 and o.accepted == []
    o.close()


async def test_http2_small_body_is_buffered_whole(gate_factory, tmp_path: Path):
    o = CountingOrigin()
    g: Gate = await gate_factory()
    g.set_routes({"host": "a.test", "upstreams": [await o.start()]})
    tg = await start_tls(g, tmp_path)
    tg.publish("a.test")
    h = await RawH2.open(tg, auto_ack=True)
    sid = h.conn.get_next_available_stream_id()
    h.conn.send_headers(
        sid, [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"a.test"), (b":path", b"/x")]
    )
    h.conn.send_data(sid, b"hello")
    h.send()
    await asyncio.sleep(0.4)
    assert o.accepted == []
    h.conn.send_data(sid, b"world", end_stream=True)
    h.send()
    await h.pump(lambda: h.ended(sid))
    assert h.status(sid) == 200 and h.body(sid) == b"10" and o.bodies == [b"helloworld"]
    h.close()
    o.close()


# --- the loop guard ---------------------------------------------------------------------------------


def test_hop_field_is_parsed_and_not_forwarded_as_is():
    info = check_request(
        b"GET", b"/", "1.1", [(b"Host", b"a"), (b"X-Infracore-Hop", b"abc"), (b"x-infracore-hop", b"def")]
    )
    assert info.hop == b"abc, def"
    assert info.lines is not None and b"X-Infracore-Hop" not in b"".join(info.lines)


async def test_route_to_the_gate_itself_is_508_at_the_first_loop(gate_factory):
    g: Gate = await gate_factory()
    g.set_routes({"host": "a", "upstreams": [f"127.0.0.1:{g.port}"]})
    async with httpx.AsyncClient(timeout=10) as c:
        r = await c.get(f"http://127.0.0.1:{g.port}/x", headers={"Host": "a", "Accept": "application/json"})
    assert r.status_code == 508 and "leads to the gate itself" in r.json()["error"]["message"]
    await wait_for(lambda: len(g.sink.entries) == 2)
    await asyncio.sleep(0.1)
    assert [e.status for e in g.sink.entries] == [508, 508]  # the looped request, then the client's: no more


async def test_loop_through_two_gates_is_508(gate_factory):
    a: Gate = await gate_factory()
    b: Gate = await gate_factory()
    a.set_routes({"host": "x", "upstreams": [f"127.0.0.1:{b.port}"]})
    b.set_routes({"host": "x", "upstreams": [f"127.0.0.1:{a.port}"]})
    async with httpx.AsyncClient(timeout=10) as c:
        r = await c.get(f"http://127.0.0.1:{a.port}/", headers={"Host": "x"})
    assert r.status_code == 508
    await asyncio.sleep(0.1)
    assert len(a.sink.entries) == 2 and len(b.sink.entries) == 1


async def test_gates_chained_on_purpose_work_and_the_origin_sees_every_hop(gate_factory):
    o = CountingOrigin()
    front: Gate = await gate_factory()
    back: Gate = await gate_factory()
    back.set_routes({"host": "x", "upstreams": [await o.start()]})
    front.set_routes({"host": "x", "upstreams": [f"127.0.0.1:{back.port}"]})
    async with httpx.AsyncClient(timeout=10) as c:
        # A client's own value (it cannot name this gate's random id) is kept, the gates' ids appended.
        r = await c.get(f"http://127.0.0.1:{front.port}/", headers={"Host": "x", "X-Infracore-Hop": "client"})
    assert r.status_code == 200
    hop = [ln for ln in o.heads[0].split(b"\r\n") if ln.lower().startswith(b"x-infracore-hop:")]
    assert hop == [b"X-Infracore-Hop: client, " + front.state.hop_id + b", " + back.state.hop_id]
    assert front.state.hop_id != back.state.hop_id
    o.close()
