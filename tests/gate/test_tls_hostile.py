"""Hostile TLS clients against the gate's HTTPS listener, over real loopback sockets: server names no
certificate can carry (sent by `openssl s_client`, which puts any bytes in the SNI extension), an
oversized or malformed ClientHello, a client that stalls the handshake, and one that never answers
the gate's close_notify. Each is cut off promptly and the listener keeps serving."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import struct
import subprocess
import time
from pathlib import Path

import pytest

import gate.tls
from gate.tls import start_tls_listener
from tests.gate.conftest import Origin
from tests.gate.tls_support import TlsGate, start_tls

OPENSSL = shutil.which("openssl")


@pytest.fixture
async def tls_gate(gate_factory, origin: Origin, tmp_path: Path) -> TlsGate:
    g = await gate_factory()
    g.set_routes({"host": "a.test", "upstreams": [origin.addr]})
    tg = await start_tls(g, tmp_path)
    tg.publish("a.test")
    return tg


async def still_serves(tg: TlsGate, port: int | None = None) -> None:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(
            "127.0.0.1", port or tg.port, ssl=tg.client_context(["http/1.1"]), server_hostname="a.test"
        ),
        10,
    )
    writer.write(b"GET /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 200"), head
    writer.close()


def seconds_until_closed(sock: socket.socket, limit: float) -> float:
    """Read (and drop) until the peer closes; the seconds it took, or `limit` if it did not."""
    t0 = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - t0 < limit:
        try:
            if not sock.recv(65536):
                return time.monotonic() - t0
        except TimeoutError:
            continue
        except ConnectionResetError:
            return time.monotonic() - t0
    return limit


def s_client(port: int, name: bytes) -> bytes:
    """`openssl s_client` with `name` as the SNI bytes; its output (stdout and stderr)."""
    assert OPENSSL is not None
    cmd: list[str | bytes] = [OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", name, "-brief"]
    done = subprocess.run(cmd, input=b"", capture_output=True, timeout=30)
    return done.stdout + done.stderr


def client_hello(body_len: int, record_len: int | None = None) -> bytes:
    """A handshake record carrying the start of a ClientHello that claims `body_len` bytes."""
    msg = b"\x01" + body_len.to_bytes(3, "big") + b"\x03\x03" + b"\x00" * 32
    rec_len = len(msg) if record_len is None else record_len
    return b"\x16\x03\x01" + struct.pack("!H", rec_len) + msg


@pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command")
@pytest.mark.parametrize(
    "name",
    [
        b"*",
        b"*.a.test",
        b"a" * 255,
        b"x." * 120 + b"a.test",
        b"a.test.",
        b"A.TEST",
        b"a..test",
        b"-.test",
        b"127.0.0.1",
        b"xn--e1afmkfd.test",
    ],
    ids=repr,
)
async def test_odd_server_names_get_a_certificate_and_do_not_disturb_the_listener(tls_gate: TlsGate, name: bytes):
    """Every ASCII name a client may send completes the handshake, with the fallback certificate or the
    name's own (case-insensitively); none reaches a wrong certificate, and the listener keeps serving."""
    out = await asyncio.to_thread(s_client, tls_gate.port, name)
    assert b"CONNECTION ESTABLISHED" in out, out
    subject = out.split(b"Peer certificate:", 1)[1].split(b"\n", 1)[0]
    if name.lower().rstrip(b".") == b"a.test":
        assert b"infracore.invalid" not in subject  # the name's own certificate (trustme's subject)
    else:
        assert b"infracore.invalid" in subject, subject
    await still_serves(tls_gate)


@pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command")
# Python's ssl module cannot hand a non-ASCII name to the SNI callback: it reports the decoding error as
# "unraisable" and fails the handshake; the gate counts those instead of letting each print a traceback.
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("name", [b"\xff\xfe.test", "é.test".encode(), b"a\x01b.test"], ids=repr)
async def test_non_ascii_server_names_are_refused_cleanly(tls_gate: TlsGate, name: bytes):
    """Bytes that are no host name: the handshake fails (the connection is closed, with or without an
    alert) or gets the fallback; the connection does not hang, nothing is printed (the refusals are
    counted) and the listener keeps serving."""
    before = gate.tls.bad_sni_handshakes
    t0 = time.monotonic()
    out = await asyncio.to_thread(s_client, tls_gate.port, name)
    assert time.monotonic() - t0 < 20
    if b"CONNECTION ESTABLISHED" in out:
        assert b"infracore.invalid" in out.split(b"Peer certificate:", 1)[1].split(b"\n", 1)[0]
    else:
        assert b"alert" in out.lower() or b"unexpected eof" in out.lower(), out
        if not name.isascii():
            assert gate.tls.bad_sni_handshakes == before + 1
    await still_serves(tls_gate)


@pytest.mark.parametrize(
    "data",
    [
        client_hello(0xFFFFFF),  # a ClientHello claiming 16 MiB
        client_hello(200_000),  # over OpenSSL's ClientHello limit
        client_hello(40, record_len=0xFFFF),  # a record over TLS's 16 KiB (+ 2 KiB) limit
        b"\x17\x03\x03\x00\x05hello",  # application data before any handshake
        b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",  # plain HTTP on the HTTPS port
    ],
    ids=["16MiB-hello", "200k-hello", "64k-record", "appdata-first", "plain-http"],
)
async def test_malformed_or_oversized_client_hello_is_cut_off_at_once(tls_gate: TlsGate, data: bytes):
    """The gate answers with an alert and closes within moments (not at the handshake timeout), having
    buffered nothing like the claimed size; the listener keeps serving."""

    def attack() -> float:
        with socket.create_connection(("127.0.0.1", tls_gate.port), timeout=10) as s:
            s.sendall(data)
            return seconds_until_closed(s, 8.0)

    took = await asyncio.to_thread(attack)
    assert took < 5.0, f"the connection stayed open {took:.1f} s"
    await still_serves(tls_gate)


async def test_stalled_handshake_is_closed_at_the_handshake_timeout(tls_gate: TlsGate):
    """A client that connects and sends nothing, or half a ClientHello, holds its connection only until
    the listener's handshake timeout; other clients are served meanwhile."""
    listener = await start_tls_listener(
        tls_gate.gate.server, "127.0.0.1", 0, tls_gate.selector, handshake_timeout_s=1.0
    )

    def stall(data: bytes) -> float:
        with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as s:
            s.sendall(data)
            return seconds_until_closed(s, 10.0)

    took_all = await asyncio.gather(
        asyncio.to_thread(stall, b""),  # silent
        asyncio.to_thread(stall, client_hello(300)[:20]),  # half a ClientHello
        asyncio.to_thread(stall, b"\x16\x03\x01\x00\x00"),  # an empty handshake record
    )
    await still_serves(tls_gate, listener.port)
    for took in took_all:
        assert 0.5 < took < 6.0, f"closed after {took:.1f} s, the handshake timeout is 1 s"


async def test_client_that_never_answers_close_notify_is_dropped(tls_gate: TlsGate):
    """After a `Connection: close` response the gate sends close_notify; a client that neither answers
    nor closes holds the connection only for the listener's shutdown timeout (asyncio's default would
    keep it 30 s)."""

    def client() -> tuple[bytes, float]:
        ctx = tls_gate.client_context(["http/1.1"])
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(incoming, outgoing, server_hostname="a.test")
        with socket.create_connection(("127.0.0.1", tls_gate.port), timeout=10) as s:
            while True:
                try:
                    obj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    if outgoing.pending:
                        s.sendall(outgoing.read())
                    incoming.write(s.recv(65536))
            obj.write(b"GET /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
            s.sendall(outgoing.read())
            # From here on the client never writes again (no close_notify) and never closes.
            got = b""
            t0 = time.monotonic()
            s.settimeout(0.2)
            while time.monotonic() - t0 < 40:
                try:
                    chunk = s.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                incoming.write(chunk)
                try:
                    got += obj.read(65536)
                except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                    pass
            return got, time.monotonic() - t0

    got, took = await asyncio.to_thread(client)
    assert got.startswith(b"HTTP/1.1 200"), got[:80]
    assert took < 15.0, f"the gate kept the connection {took:.1f} s after its close_notify"
    await still_serves(tls_gate)


async def test_slow_reader_gets_the_whole_tail_of_a_closing_response(tls_gate: TlsGate):
    """A multi-MiB `Connection: close` response to a client that stops reading near the end for longer
    than the close_notify timeout: the gate closes once the origin's last byte is in its buffers, and
    the short timeout must not throw away what is still buffered. The client gets every byte."""
    total = 4 * 1024 * 1024
    tail = 384 * 1024  # fits in the gate's buffers, so the response completes (and closes) during the pause
    # Small kernel buffers on both sides (accepted sockets inherit the listener's), so that most of the
    # tail waits in the gate's own buffers rather than in the kernels' during the pause.
    tls_gate.listener.server.sockets[0].setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)

    def client() -> tuple[int, int]:
        ctx = tls_gate.client_context(["http/1.1"])
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)  # keep the kernel's share small
        raw.settimeout(30)
        raw.connect(("127.0.0.1", tls_gate.port))
        with ctx.wrap_socket(raw, server_hostname="a.test") as s:
            s.sendall(f"GET /big?bytes={total} HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n".encode())
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                assert chunk, buf
                buf += chunk
            head, body = buf.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 200"), head
            got = len(body)
            while got < total - tail:
                chunk = s.recv(min(65536, total - tail - got))
                if not chunk:
                    return got, 0
                got += len(chunk)
            time.sleep(6.0)  # the gate has the rest and has closed: longer than its close_notify timeout
            ended = 0
            while True:
                try:
                    chunk = s.recv(65536)
                except (ssl.SSLError, ConnectionResetError):
                    break
                if not chunk:
                    ended = 1
                    break
                got += len(chunk)
                time.sleep(0.01)
            return got, ended

    got, _ = await asyncio.to_thread(client)
    assert got == total, f"the client got {got} of {total} bytes ({total - got} of the tail were dropped)"
    await still_serves(tls_gate)
