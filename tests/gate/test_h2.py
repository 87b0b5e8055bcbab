"""The HTTP/2 front end with real TLS and real clients (httpx, curl, h2load, and a bare `h2` client for
what polite clients never send): streams proxied concurrently to HTTP/1.1 upstreams, flow control both
ways with bounded gate memory, error mapping, floods cut off, GOAWAY on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from h2.errors import ErrorCodes
from h2.events import ConnectionTerminated, InformationalResponseReceived, StreamReset, WindowUpdated
from h2.settings import SettingCodes
from hpack import Decoder
from hyperframe.frame import ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame

from gate.h2front import H2Front
from tests.gate.conftest import Gate, Origin, start_origin, wait_for
from tests.gate.tls_support import RawH2, TlsGate, start_tls

RELEASE = web.AppKey("release", asyncio.Event)


def _extra(app: web.Application) -> None:
    async def held_sink(request: web.Request) -> web.StreamResponse:
        # Reads nothing until the test sets the event: a stalled upstream.
        await request.app[RELEASE].wait()
        total = 0
        async for chunk in request.content.iter_any():
            total += len(chunk)
        return web.json_response({"received": total})

    async def partial(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": "100000"})
        await resp.prepare(request)
        await resp.write(b"x" * 1000)
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.close()  # dies mid-body
        return resp

    app[RELEASE] = asyncio.Event()
    app.router.add_post("/held", held_sink)
    app.router.add_get("/partial", partial)


@pytest.fixture
async def origin2():
    o = await start_origin(_extra)
    yield o
    o.runner.app[RELEASE].set()
    await o.runner.cleanup()


async def make(gate_factory, origin: Origin, tmp_path: Path, **config) -> TlsGate:
    g: Gate = await gate_factory(**config)
    g.set_routes({"host": "a.test", "upstreams": [origin.addr]}, {"host": "127.0.0.1", "upstreams": [origin.addr]})
    tg = await start_tls(g, tmp_path)
    tg.publish("a.test")
    return tg


@contextlib.asynccontextmanager
async def raw_upstream(gate_factory, origin: Origin, tmp_path: Path, handler, **route) -> AsyncIterator[TlsGate]:
    """A TLS gate whose route `a.test` goes to `handler`, an upstream speaking raw HTTP/1.1 bytes."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        tg = await make(gate_factory, origin, tmp_path)
        tg.gate.set_routes(
            {"host": "a.test", "upstreams": [f"127.0.0.1:{server.sockets[0].getsockname()[1]}"], **route}
        )
        yield tg
    finally:
        server.close()


def fronts(tg: TlsGate) -> list[H2Front]:
    return [c for c in tg.gate.state.clients if isinstance(c, H2Front)]


def h2_buffered(tg: TlsGate) -> int:
    """Response bytes the gate holds for HTTP/2 clients (queued in streams + in the TLS transport)."""
    total = 0
    for f in fronts(tg):
        if f.transport is not None and not f.transport.is_closing():
            total += f.transport.get_write_buffer_size()
        total += sum(s.out_size for s in f.streams.values())
    return total


def client(tg: TlsGate) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        http2=True,
        verify=tg.client_context(),
        timeout=30,
        base_url=f"https://127.0.0.1:{tg.port}",
        headers={"host": "a.test"},
    )


SNI = {"sni_hostname": "a.test"}


async def test_httpx_h2_request_is_proxied_like_http1(gate_factory, origin: Origin, tmp_path: Path):
    tg = await make(gate_factory, origin, tmp_path)
    async with client(tg) as c:
        r = await c.get("/echo/x?q=1", extensions=SNI, headers={"x-custom": "v"})
        assert r.http_version == "HTTP/2" and r.status_code == 200
        seen = r.json()
        assert seen["path"] == "/echo/x?q=1"
        assert seen["headers"]["host"] == "a.test"
        assert seen["headers"]["x-forwarded-proto"] == "https"
        assert seen["headers"]["x-custom"] == "v"
        assert "te" not in seen["headers"]
        assert "connection" not in r.headers and "transfer-encoding" not in r.headers
        r = await c.post("/echo", content=b"hello", extensions=SNI)
        assert r.json()["body"] == "hello" and r.json()["method"] == "POST"
        r = await c.get("/stream?n=3&size=5", extensions=SNI)  # chunked upstream body: no length over h2
        assert r.content == b"AAAAABBBBBCCCCC"
        r = await c.head("/big?bytes=1234", extensions=SNI)
        assert r.status_code == 200 and r.headers["content-length"] == "1234" and r.content == b""
        r = await c.get("/nothing", extensions=SNI, headers={"host": "unknown.test"})
        assert r.status_code == 404 and r.headers.get("x-request-id")
    entries = tg.gate.sink.entries
    assert entries and all(e.protocol == "HTTP/2" for e in entries)


async def test_cookies_are_joined_and_authority_routes(gate_factory, origin: Origin, tmp_path: Path):
    tg = await make(gate_factory, origin, tmp_path)
    h = await RawH2.open(tg, auto_ack=True)
    sid = h.request("/echo", extra=[(b"cookie", b"a=1"), (b"cookie", b"b=2")])
    await h.pump(lambda: h.ended(sid))
    assert h.status(sid) == 200
    assert b'"cookie": "a=1; b=2"' in h.body(sid)
    h.close()


async def test_concurrent_streams_are_proxied_concurrently(gate_factory, origin: Origin, tmp_path: Path):
    tg = await make(gate_factory, origin, tmp_path)
    h = await RawH2.open(tg, auto_ack=True)
    t0 = time.monotonic()
    sids = [h.request("/slow?s=1") for _ in range(4)]
    await h.pump(lambda: all(h.ended(s) for s in sids), limit_s=20)
    elapsed = time.monotonic() - t0
    assert [h.status(s) for s in sids] == [200] * 4
    assert all(h.body(s) == b"slow" for s in sids)
    assert elapsed < 1.9, f"four 1 s upstream requests on one connection took {elapsed:.2f} s"
    assert len(fronts(tg)) == 1
    h.close()


async def test_pool_keeps_one_clients_streams_worth_of_idle_connections(gate_factory, origin: Origin, tmp_path: Path):
    """100 streams in flight (the gate's MAX_CONCURRENT_STREAMS) need 100 upstream connections: with the
    default settings the pool keeps them all idle afterwards, so the next 100 dial nothing. (A cap of
    64 closed the surplus and dialled it again moments later: upstream churn that cost h2load-style
    traffic a quarter of its CPU per request.)"""
    tg = await make(gate_factory, origin, tmp_path)
    h = await RawH2.open(tg, auto_ack=True)
    pool = tg.gate.state.pool
    for _round in range(2):
        sids = [h.request("/slow?s=0.5") for _ in range(100)]
        await h.pump(lambda sids=sids: all(h.ended(s) for s in sids), limit_s=60)
        assert [h.status(s) for s in sids] == [200] * 100
    assert pool.created <= 105, pool.created  # a little slack: a dial racing a release
    assert pool.reused >= 95, pool.reused
    h.close()


async def test_large_bodies_both_ways(gate_factory, origin: Origin, tmp_path: Path):
    tg = await make(gate_factory, origin, tmp_path)
    size = 8 * 1024 * 1024
    async with client(tg) as c:
        r = await c.post("/upload", content=b"u" * size, extensions=SNI)
        assert r.status_code == 200 and r.json() == {"received": size}
        r = await c.get(f"/big?bytes={size}", extensions=SNI)
        assert r.status_code == 200 and len(r.content) == size


async def test_slow_reader_keeps_gate_memory_bounded(gate_factory, origin: Origin, tmp_path: Path):
    tg = await make(gate_factory, origin, tmp_path, high_water_bytes=64 * 1024, low_water_bytes=16 * 1024)
    h = await RawH2.open(tg)  # acknowledges nothing: the client's 64 KiB windows are all the gate may send
    total = 24 * 1024 * 1024
    sid = h.request(f"/big?bytes={total}")
    await h.pump(lambda: len(h.body(sid)) >= 65535)
    assert len(h.body(sid)) == 65535
    peak = 0
    for _ in range(30):  # the upstream keeps offering 24 MiB; the gate must stop taking it
        peak = max(peak, h2_buffered(tg))
        await asyncio.sleep(0.02)
    assert peak < 512 * 1024, f"gate buffered {peak} bytes for a client that reads nothing"
    # The client starts reading: everything arrives.
    h.conn.acknowledge_received_data(65535, sid)
    h.send()
    h.auto_ack = True
    await h.pump(lambda: h.ended(sid), limit_s=40)
    assert len(h.body(sid)) == total
    h.close()


async def test_slow_upstream_upload_is_flow_controlled(gate_factory, origin2: Origin, tmp_path: Path):
    tg = await make(gate_factory, origin2, tmp_path, high_water_bytes=64 * 1024, low_water_bytes=16 * 1024)
    h = await RawH2.open(tg, auto_ack=True)
    total = 48 * 1024 * 1024
    sid = h.conn.get_next_available_stream_id()
    h.conn.send_headers(
        sid,
        [
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":authority", b"a.test"),
            (b":path", b"/held"),
            (b"content-length", str(total).encode()),
        ],
    )
    h.send()
    sent = 0
    block = b"p" * 16384
    deadline = time.monotonic() + 2.0

    async def send_while_window(until: float) -> None:
        nonlocal sent
        while sent < total and time.monotonic() < until:
            window = h.conn.local_flow_control_window(sid)
            if window <= 0:
                before = len(h.of(WindowUpdated))
                try:
                    await h.pump(
                        lambda b=before: len(h.of(WindowUpdated)) > b, limit_s=max(0.05, until - time.monotonic())
                    )
                except TimeoutError:
                    return
                continue
            n = min(window, len(block), total - sent)
            h.conn.send_data(sid, block[:n], end_stream=sent + n == total)
            h.send()
            sent += n
            await h.writer.drain()

    await send_while_window(deadline)
    held = 0
    for f in fronts(tg):
        for s in f.streams.values():
            if s.ex is not None:
                held += s.ex.body_buf_size
                if s.ex.up is not None and s.ex.up.transport is not None:
                    held += s.ex.up.transport.get_write_buffer_size()
    assert sent < total, "the upstream read nothing, yet the whole body was accepted"
    assert held < 1024 * 1024, f"gate holds {held} request bytes for a stalled upstream"
    origin2.runner.app[RELEASE].set()
    await send_while_window(time.monotonic() + 40)
    assert sent == total
    await h.pump(lambda: h.ended(sid), limit_s=30)
    assert h.status(sid) == 200 and f'"received": {total}'.encode() in h.body(sid)
    h.close()


async def test_rapid_reset_flood_is_cut_off_without_harming_others(gate_factory, origin: Origin, tmp_path: Path):
    tg = await make(gate_factory, origin, tmp_path)
    other = await RawH2.open(tg, auto_ack=True)
    bad = await RawH2.open(tg)
    for _ in range(1000):
        sid = bad.conn.get_next_available_stream_id()
        bad.conn.send_headers(
            sid,
            [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a.test"), (b":path", b"/slow?s=5")],
            end_stream=True,
        )
        bad.conn.reset_stream(sid, ErrorCodes.CANCEL)
    bad.send()
    await bad.pump(lambda: bool(bad.of(ConnectionTerminated)), limit_s=20)
    goaway = bad.of(ConnectionTerminated)
    assert goaway and goaway[0].error_code == ErrorCodes.ENHANCE_YOUR_CALM
    await bad.pump(lambda: False, limit_s=10)  # then the gate closes the connection
    assert bad.closed
    sid = other.request("/echo")
    await other.pump(lambda: other.ended(sid))
    assert other.status(sid) == 200
    assert len(origin.requests) < 400  # most of the burst never reached the upstream
    other.close()


async def test_continuation_flood_is_cut_off(gate_factory, origin: Origin, tmp_path: Path):
    tg = await make(gate_factory, origin, tmp_path)
    h = await RawH2.open(tg)
    block = h.conn.encoder.encode(
        [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a.test"), (b":path", b"/echo")]
    )
    frames = [HeadersFrame(1, data=block[:5])]
    frames += [ContinuationFrame(1, data=b"") for _ in range(500)]
    h.writer.write(b"".join(f.serialize() for f in frames))
    await h.pump(lambda: False, limit_s=10)
    assert h.closed
    assert any(e.error_code != ErrorCodes.NO_ERROR for e in h.of(ConnectionTerminated))
    h2 = await RawH2.open(tg, auto_ack=True)
    sid = h2.request("/echo")
    await h2.pump(lambda: h2.ended(sid))
    assert h2.status(sid) == 200
    h.close()
    h2.close()


@pytest.mark.parametrize(
    ("headers", "text"),
    [
        ([(b"X-Upper", b"1")], b"uppercase"),
        ([(b"bad name", b"1")], b"characters not allowed"),
        ([(b"connection", b"keep-alive")], b"connection-specific"),
        ([(b"transfer-encoding", b"chunked")], b"connection-specific"),
        ([(b"upgrade", b"websocket")], b"connection-specific"),
        ([(b"te", b"gzip")], b"te may only be"),
        ([(b"x-v", b" padded")], b"surrounding whitespace"),
        ([(b"x-v", b"a\x00b")], b"control byte 0x00"),
        ([(b"host", b"other.test")], b"different host"),
        ([(b"x-a", b"1"), (b":path", b"/again")], b"after a regular field"),
        ([(b":path", b"/again")], b"repeated"),
    ],
)
async def test_malformed_header_blocks_are_refused_on_their_stream(
    gate_factory, origin: Origin, tmp_path: Path, headers, text
):
    tg = await make(gate_factory, origin, tmp_path)
    h = await RawH2.open(tg, auto_ack=True)
    sid = h.request("/echo", extra=headers)
    await h.pump(lambda: h.ended(sid))
    assert h.status(sid) == 400 and text in h.body(sid), h.body(sid)
    assert not origin.requests  # never forwarded
    ok = h.request("/echo")  # the connection stays usable
    await h.pump(lambda: h.ended(ok))
    assert h.status(ok) == 200
    h.close()


async def test_framing_errors_end_the_connection(gate_factory, origin: Origin, tmp_path: Path):
    tg = await make(gate_factory, origin, tmp_path)
    h = await RawH2.open(tg)
    sid = h.request("/upload", method="POST", end=False, extra=[(b"content-length", b"3")])
    h.conn.send_data(sid, b"too long", end_stream=True)  # more DATA than content-length announced
    h.send()
    await h.pump(lambda: False, limit_s=10)
    assert h.closed
    terms = h.of(ConnectionTerminated)
    assert terms and terms[0].error_code == ErrorCodes.PROTOCOL_ERROR


async def test_refused_requests_get_precise_answers_on_their_stream(gate_factory, origin: Origin, tmp_path: Path):
    tg = await make(gate_factory, origin, tmp_path, max_header_count=10)
    h = await RawH2.open(tg, auto_ack=True)
    cases = [
        (h.request("/a/../echo"), 400, b"dot-segments"),
        (h.request("/echo", extra=[(b"x-h%d" % i, b"v") for i in range(12)]), 431, b"more than 10 headers"),
        (h.request("/echo", method="POST", body=b"x" * 10, extra=[(b"expect", b"nonsense")]), 417, b"not supported"),
    ]
    sid = h.conn.get_next_available_stream_id()
    h.conn.send_headers(sid, [(b":method", b"CONNECT"), (b":authority", b"a.test:443")], end_stream=True)
    h.send()
    cases.append((sid, 501, b"CONNECT"))
    await h.pump(lambda: all(h.ended(s) for s, _, _ in cases))
    for s, status, text in cases:
        assert h.status(s) == status, (s, h.body(s))
        assert text in h.body(s)
    ok = h.request("/echo")  # the connection is still fine
    await h.pump(lambda: h.ended(ok))
    assert h.status(ok) == 200
    assert not h.closed
    h.close()


async def test_upstream_errors_map_to_502_or_stream_reset(gate_factory, origin2: Origin, tmp_path: Path):
    tg = await make(gate_factory, origin2, tmp_path)
    tg.gate.set_routes(
        {"host": "a.test", "upstreams": [origin2.addr]}, {"host": "dead.test", "upstreams": ["127.0.0.1:1"]}
    )
    h = await RawH2.open(tg, auto_ack=True)
    mid = h.request("/partial")
    dead = h.request("/echo", host="dead.test")
    await h.pump(lambda: h.ended(mid) and h.ended(dead), limit_s=20)
    resets = h.of(StreamReset, mid)
    assert resets and resets[0].error_code == ErrorCodes.INTERNAL_ERROR
    assert h.status(dead) == 502
    ok = h.request("/echo")
    await h.pump(lambda: h.ended(ok))
    assert h.status(ok) == 200
    h.close()


async def read_frames(h: RawH2, frames: list, until, limit_s: float = 10.0) -> bool:
    """Frames parsed with hyperframe alone (h2's own client state machine refuses every frame after a
    GOAWAY, so it cannot watch a graceful shutdown). Returns False at EOF."""
    buf = b""
    async with asyncio.timeout(limit_s):
        while not until():
            data = await h.reader.read(65536)
            if not data:
                return False
            buf += data
            while len(buf) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(buf[:9]))
                if len(buf) < 9 + length:
                    break
                frame.parse_body(memoryview(buf[9 : 9 + length]))
                buf = buf[9 + length :]
                frames.append(frame)
    return True


async def test_goaway_on_shutdown_completes_in_flight_streams(gate_factory, origin: Origin, tmp_path: Path):
    tg = await make(gate_factory, origin, tmp_path)
    h = await RawH2.open(tg)
    sid = h.request("/slow?s=1")
    await wait_for(lambda: len(origin.requests) == 1)
    stop = asyncio.create_task(tg.gate.server.stop(10))
    frames: list = []

    def ended() -> bool:
        return any(f.stream_id == sid and "END_STREAM" in f.flags for f in frames)

    assert await read_frames(h, frames, ended)
    goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
    assert goaways and goaways[0].error_code == ErrorCodes.NO_ERROR and goaways[0].last_stream_id == sid
    heads = [f for f in frames if isinstance(f, HeadersFrame) and f.stream_id == sid]
    assert heads and frames.index(goaways[0]) < frames.index(heads[0])  # GOAWAY first, response after
    assert dict(Decoder().decode(heads[0].data, raw=True))[b":status"] == b"200"
    assert b"".join(f.data for f in frames if isinstance(f, DataFrame) and f.stream_id == sid) == b"slow"
    await asyncio.wait_for(stop, 15)
    assert not await read_frames(h, frames, lambda: False)  # and then the gate closes the connection


async def test_static_files_over_h2(gate_factory, origin: Origin, tmp_path: Path):
    tg = await make(gate_factory, origin, tmp_path)
    site = tmp_path / "site"
    site.mkdir()
    (site / "f.bin").write_bytes(bytes(range(256)) * 4096)
    tg.gate.set_routes({"host": "a.test", "static_dir": str(site)})
    async with client(tg) as c:
        r = await c.get("/f.bin", extensions=SNI)
        assert r.status_code == 200 and r.content == bytes(range(256)) * 4096
        r = await c.get("/f.bin", extensions=SNI, headers={"range": "bytes=0-9"})
        assert r.status_code == 206 and r.content == bytes(range(10))


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_curl_http2(gate_factory, origin: Origin, tmp_path: Path):
    tg = await make(gate_factory, origin, tmp_path)
    proc = await asyncio.create_subprocess_exec(
        "curl",
        "-sS",
        "--http2",
        "--cacert",
        tg.ca_file(),
        "--resolve",
        f"a.test:{tg.port}:127.0.0.1",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code}",
        f"https://a.test:{tg.port}/echo",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert out.decode() == "2 200", err.decode()


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load (Debian nghttp2-client) is not installed")
async def test_h2load_completes_requests(gate_factory, origin: Origin, tmp_path: Path):
    tg = await make(gate_factory, origin, tmp_path)
    proc = await asyncio.create_subprocess_exec(
        "h2load",
        "-n",
        "400",
        "-c",
        "4",
        "-m",
        "10",
        f"https://127.0.0.1:{tg.port}/echo",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert "400 succeeded, 0 failed, 0 errored" in text, text
    assert "status codes: 400 2xx" in text, text


async def test_ping_flood_is_cut_off(gate_factory, origin: Origin, tmp_path: Path):
    tg = await make(gate_factory, origin, tmp_path)
    bad = await RawH2.open(tg)
    for i in range(3000):
        bad.conn.ping(i.to_bytes(8, "big"))
    bad.send()
    await bad.pump(lambda: bool(bad.of(ConnectionTerminated)), limit_s=20)
    goaway = bad.of(ConnectionTerminated)
    assert goaway and goaway[0].error_code == ErrorCodes.ENHANCE_YOUR_CALM
    ok = await RawH2.open(tg)
    for i in range(50):  # a handful of PINGs is fine
        ok.conn.ping(i.to_bytes(8, "big"))
    sid = ok.request("/echo")
    await ok.pump(lambda: ok.ended(sid))
    assert ok.status(sid) == 200 and not ok.of(ConnectionTerminated)
    bad.close()
    ok.close()


async def test_expect_100_continue_over_h2(gate_factory, origin: Origin, tmp_path: Path):
    tg = await make(gate_factory, origin, tmp_path)
    h = await RawH2.open(tg, auto_ack=True)
    sid = h.request("/echo", method="POST", end=False, extra=[(b"content-length", b"5"), (b"expect", b"100-continue")])
    await h.pump(lambda: bool(h.of(InformationalResponseReceived, sid)))
    assert dict(h.of(InformationalResponseReceived, sid)[0].headers)[b":status"] == b"100"
    h.conn.send_data(sid, b"hello", end_stream=True)
    h.send()
    await h.pump(lambda: h.ended(sid))
    assert h.status(sid) == 200 and b'"body": "hello"' in h.body(sid)
    assert "expect" not in origin.requests[-1].headers
    h.close()


async def test_oversized_header_list_is_refused(gate_factory, origin: Origin, tmp_path: Path):
    tg = await make(gate_factory, origin, tmp_path, max_header_bytes=4096)
    h = await RawH2.open(tg)
    h.request("/echo", extra=[(b"x-big", b"v" * 8000)])
    await h.pump(lambda: False, limit_s=10)
    assert h.closed and h.of(ConnectionTerminated)
    assert h.of(ConnectionTerminated)[0].error_code != ErrorCodes.NO_ERROR
    assert not origin.requests


@pytest.mark.parametrize("buffered", [True, False])
async def test_request_trailers_are_forwarded_chunked(gate_factory, origin: Origin, tmp_path: Path, buffered: bool):
    seen: list[bytes] = []
    got_head = asyncio.Event()

    async def raw_origin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.readuntil(b"\r\n\r\n")
        got_head.set()
        data += await reader.readuntil(b"\r\n0\r\n")
        data += await reader.readuntil(b"\r\n\r\n")
        seen.append(data)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    # Buffered (the default): the whole body and its trailers are received before the upstream is
    # contacted; streamed (no request buffer): the head is upstream before the body is sent.
    route = {} if buffered else {"request_buffer_bytes": 0}
    async with raw_upstream(gate_factory, origin, tmp_path, raw_origin, **route) as tg:
        h = await RawH2.open(tg, auto_ack=True)
        sid = h.request("/t", method="POST", end=False, extra=[(b"te", b"trailers")])
        if not buffered:
            await asyncio.wait_for(got_head.wait(), 10)
        h.conn.send_data(sid, b"payload")
        h.conn.send_headers(sid, [(b"x-checksum", b"abc"), (b"Bad Name", b"dropped")], end_stream=True)
        h.send()
        await h.pump(lambda: h.ended(sid))
        assert h.status(sid) == 200
        raw = seen[0]
        assert b"transfer-encoding: chunked" in raw.lower()
        assert raw.endswith(b"7\r\npayload\r\n0\r\nx-checksum: abc\r\n\r\n")
        h.close()


async def test_response_trailers_are_forwarded(gate_factory, origin: Origin, tmp_path: Path):
    """A chunked upstream response's trailer fields reach the HTTP/2 client in a trailing HEADERS frame
    (lowercased, without framing/hop-by-hop fields); a response without trailers ends on its DATA."""
    from h2.events import TrailersReceived

    async def raw_origin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            if head.startswith(b"GET /t "):
                writer.write(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
                    b"0\r\nGrpc-Status: 0\r\nKeep-Alive: t1\r\nSet-Cookie: a=b\r\n\r\n"
                )
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
        writer.close()

    async with raw_upstream(gate_factory, origin, tmp_path, raw_origin) as tg:
        h = await RawH2.open(tg, auto_ack=True)
        sid = h.request("/t", extra=[(b"te", b"trailers")])
        plain = h.request("/plain")
        await h.pump(lambda: h.ended(sid) and h.ended(plain))
        assert h.status(sid) == 200 and h.body(sid) == b"hello"
        trailers = h.of(TrailersReceived, sid)
        assert len(trailers) == 1 and list(trailers[0].headers) == [(b"grpc-status", b"0")]
        assert h.status(plain) == 200 and h.body(plain) == b"ok" and not h.of(TrailersReceived, plain)
        h.close()


async def test_client_not_reading_socket_pauses_upstreams(gate_factory, origin: Origin, tmp_path: Path):
    """A client with huge windows that stops reading its socket: the TLS transport fills, and the gate
    pauses its upstreams instead of buffering the rest of the body."""

    tg = await make(gate_factory, origin, tmp_path, high_water_bytes=64 * 1024, low_water_bytes=16 * 1024)
    h = await RawH2.open(tg, auto_ack=True)
    sock = h.writer.get_extra_info("socket")
    import socket as s

    sock.setsockopt(s.SOL_SOCKET, s.SO_RCVBUF, 64 * 1024)
    h.conn.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
    h.conn.increment_flow_control_window(2**31 - 1 - 65535)
    total = 64 * 1024 * 1024
    sid = h.request(f"/big?bytes={total}")
    await wait_for(lambda: any(f.write_paused for f in fronts(tg)))  # the client is not reading
    peak = 0
    for _ in range(30):
        peak = max(peak, h2_buffered(tg))
        await asyncio.sleep(0.02)
    assert peak < 1024 * 1024, f"gate buffered {peak} bytes for a client that stopped reading"
    await h.pump(lambda: h.ended(sid), limit_s=60)
    assert len(h.body(sid)) == total
    h.close()


async def test_body_limit_and_upstream_timeout_over_h2(gate_factory, origin: Origin, tmp_path: Path):
    tg = await make(gate_factory, origin, tmp_path, max_body_bytes=1000, upstream_timeout_s=0.5)
    h = await RawH2.open(tg, auto_ack=True)
    announced = h.request("/upload", method="POST", body=b"x" * 5000, extra=[(b"content-length", b"5000")])
    streamed = h.request("/upload", method="POST", end=False)  # no length: refused once it passes the limit
    for _ in range(5):
        h.conn.send_data(streamed, b"y" * 1000)
    h.send()
    slow = h.request("/slow?s=2")
    await h.pump(lambda: all(h.ended(s) for s in (announced, streamed, slow)), limit_s=20)
    assert h.status(announced) == 413 and h.status(streamed) == 413
    assert h.status(slow) == 504
    ok = h.request("/echo")
    await h.pump(lambda: h.ended(ok))
    assert h.status(ok) == 200
    h.close()


async def test_idle_connection_gets_goaway_and_is_closed(gate_factory, origin: Origin, tmp_path: Path):
    tg = await make(gate_factory, origin, tmp_path, keepalive_timeout_s=0.3)
    h = await RawH2.open(tg)
    sid = h.request("/echo")
    frames: list = []
    t0 = time.monotonic()
    assert not await read_frames(h, frames, lambda: False, limit_s=10)  # read until the gate closes
    assert any(f.stream_id == sid and "END_STREAM" in f.flags for f in frames)
    goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
    assert goaways and goaways[0].error_code == ErrorCodes.NO_ERROR and goaways[0].last_stream_id == sid
    assert time.monotonic() - t0 < 5


async def test_empty_data_frame_flood_is_cut_off(gate_factory, origin: Origin, tmp_path: Path):
    tg = await make(gate_factory, origin, tmp_path)
    bad = await RawH2.open(tg)
    sid = bad.request("/upload", method="POST", end=False)
    frames = b"".join(DataFrame(sid, data=b"").serialize() for _ in range(3000))
    bad.writer.write(frames)
    await bad.pump(lambda: bool(bad.of(ConnectionTerminated)), limit_s=20)
    goaway = bad.of(ConnectionTerminated)
    assert goaway and goaway[0].error_code == ErrorCodes.ENHANCE_YOUR_CALM
    bad.close()


async def test_finished_streams_are_freed_without_the_cyclic_gc(gate_factory, origin: Origin, tmp_path: Path):
    """A stream and its exchange refer to each other until the exchange is finished; then the pair
    is freed by reference counting (leaving it to the cyclic GC cost ~7 % of the gate's time)."""
    import gc

    from gate._h2stream import H2Stream

    def live_streams() -> int:
        return sum(1 for o in gc.get_objects() if type(o) is H2Stream)

    tg = await make(gate_factory, origin, tmp_path)
    h = await RawH2.open(tg, auto_ack=True)
    gc.collect()
    gc.disable()
    try:
        before = live_streams()
        sids = [h.request("/echo") for _ in range(20)]
        sids += [h.request("/nothing", host="unknown.test") for _ in range(5)]  # error pages too
        await h.pump(lambda: all(h.ended(s) for s in sids))
        assert all(h.status(s) in (200, 404) for s in sids)
        await asyncio.sleep(0.05)  # the last flush
        assert live_streams() - before <= 2
    finally:
        gc.enable()
    h.close()
