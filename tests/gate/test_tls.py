"""The HTTPS listener with real TLS: SNI picks each name's certificate (exact and wildcard), unknown
names get the self-signed fallback, a certificate swapped on the board reaches new handshakes while an
open connection keeps its own, ALPN chooses HTTP/2 or HTTP/1.1, TLS 1.2 is the floor."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from core.ports import CertificateRef
from gate.tls import FALLBACK_NAME, CertSelector, ensure_fallback, lookup
from tests.gate.conftest import Origin
from tests.gate.tls_support import TlsGate, served_serial, start_tls


async def handshake(
    tg: TlsGate,
    sni: str | None,
    *,
    verify: bool = True,
    alpn: list[str] | None = None,
    ctx: ssl.SSLContext | None = None,
):
    if ctx is None:
        if verify:
            ctx = tg.client_context(alpn)
        else:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            if alpn:
                ctx.set_alpn_protocols(alpn)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", tg.port, ssl=ctx, server_hostname=sni), 10
    )
    return reader, writer


async def get_h1(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, path: str = "/echo") -> bytes:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
    body = await asyncio.wait_for(reader.readexactly(length), 10)
    return head + body


@pytest.fixture
async def tls_gate(gate_factory, origin: Origin, tmp_path: Path) -> TlsGate:
    g = await gate_factory()
    g.set_routes(
        {"host": "a.test", "upstreams": [origin.addr]},
        {"host": "b.test", "upstreams": [origin.addr]},
        {"host": "*.w.test", "upstreams": [origin.addr]},
    )
    return await start_tls(g, tmp_path)


async def test_sni_selects_each_names_certificate_and_wildcards(tls_gate: TlsGate):
    ra = tls_gate.publish("a.test")
    rb = tls_gate.publish("b.test")
    rw = tls_gate.publish("*.w.test")
    for sni, ref in (("a.test", ra), ("b.test", rb), ("x.w.test", rw), ("A.TEST", ra)):
        reader, writer = await handshake(tls_gate, sni)  # verifies the chain and the name
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        assert served_serial(der) == ref.serial, sni
        out = await get_h1(reader, writer, sni.lower())
        assert out.startswith(b"HTTP/1.1 200 ")
        assert b'"x-forwarded-proto": "https"' in out
        writer.close()


async def test_unknown_name_and_no_sni_get_the_fallback(tls_gate: TlsGate):
    tls_gate.publish("a.test")
    for sni in ("nobody.test", None):
        reader, writer = await handshake(tls_gate, sni, verify=False)
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        cert = x509.load_der_x509_certificate(der)
        assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == FALLBACK_NAME
        # The handshake completed and the gate answers (404: no route for this name) instead of a reset.
        writer.write(b"GET / HTTP/1.1\r\nHost: nobody.test\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 404 ")
        writer.close()
    # A verifying client refuses the fallback (it is not trusted), as it should.
    with pytest.raises(ssl.SSLCertVerificationError):
        await handshake(tls_gate, "nobody.test")


async def test_swap_reaches_new_handshakes_while_open_connection_keeps_its_cert(tls_gate: TlsGate):
    old = tls_gate.publish("a.test")
    r1, w1 = await handshake(tls_gate, "a.test")
    assert (await get_h1(r1, w1, "a.test")).startswith(b"HTTP/1.1 200 ")
    new = tls_gate.publish("a.test")  # certd renewed: same name, new serial, new files
    assert new.serial != old.serial
    _, w2 = await handshake(tls_gate, "a.test")
    assert served_serial(w2.get_extra_info("ssl_object").getpeercert(binary_form=True)) == new.serial
    # The connection opened before the swap still works and still holds the old certificate.
    assert (await get_h1(r1, w1, "a.test")).startswith(b"HTTP/1.1 200 ")
    assert served_serial(w1.get_extra_info("ssl_object").getpeercert(binary_form=True)) == old.serial
    w1.close()
    w2.close()
    # Withdrawn: new handshakes fall back.
    tls_gate.board.withdraw("a.test")
    _, w3 = await handshake(tls_gate, "a.test", verify=False)
    cert = x509.load_der_x509_certificate(w3.get_extra_info("ssl_object").getpeercert(binary_form=True))
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == FALLBACK_NAME
    w3.close()


async def test_broken_certificate_files_keep_the_previous_certificate(tls_gate: TlsGate, tmp_path: Path):
    good = tls_gate.publish("a.test")
    bad_cert = tmp_path / "bad.crt"
    bad_cert.write_text("not a certificate")
    tls_gate.board.publish(
        CertificateRef(
            names=("a.test",), cert_path=str(bad_cert), key_path=good.key_path, not_after=good.not_after, serial="bad"
        )
    )
    _, w = await handshake(tls_gate, "a.test")
    assert served_serial(w.get_extra_info("ssl_object").getpeercert(binary_form=True)) == good.serial
    w.close()
    assert tls_gate.selector.describe("a.test")["serial"] == good.serial


async def test_alpn_h2_http11_and_none(tls_gate: TlsGate):
    tls_gate.publish("a.test")
    for offer, expect in ((["h2", "http/1.1"], "h2"), (["http/1.1"], "http/1.1"), (None, None)):
        reader, writer = await handshake(tls_gate, "a.test", alpn=offer)
        assert writer.get_extra_info("ssl_object").selected_alpn_protocol() == expect
        if expect != "h2":  # without h2 the same HTTP/1.1 proxy path serves the request
            assert (await get_h1(reader, writer, "a.test")).startswith(b"HTTP/1.1 200 ")
        writer.close()
    async with httpx.AsyncClient(http2=False, verify=tls_gate.client_context()) as c:
        r = await c.get(
            f"https://127.0.0.1:{tls_gate.port}/echo", headers={"host": "a.test"}, extensions={"sni_hostname": "a.test"}
        )
        assert r.http_version == "HTTP/1.1" and r.status_code == 200
        assert r.json()["headers"]["x-forwarded-proto"] == "https"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_tls12_floor_and_modern_ciphers(tls_gate: TlsGate):
    tls_gate.publish("a.test")
    ctx = tls_gate.client_context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    _, w = await handshake(tls_gate, "a.test", ctx=ctx)
    sslobj = w.get_extra_info("ssl_object")
    assert sslobj.version() == "TLSv1.2"
    assert sslobj.cipher()[0].startswith("ECDHE-")
    w.close()
    _, w = await handshake(tls_gate, "a.test")
    assert w.get_extra_info("ssl_object").version() == "TLSv1.3"
    w.close()
    assert tls_gate.selector.context.minimum_version == ssl.TLSVersion.TLSv1_2
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        await handshake(tls_gate, "a.test", ctx=old)


async def test_session_resumption(tls_gate: TlsGate):
    tls_gate.publish("a.test")
    ctx = tls_gate.client_context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # the session is available right after a 1.2 handshake

    def connect(session: ssl.SSLSession | None) -> tuple[ssl.SSLSession | None, bool]:
        raw = socket.create_connection(("127.0.0.1", tls_gate.port), timeout=10)
        s = ctx.wrap_socket(raw, server_hostname="a.test", session=session)
        try:
            return s.session, bool(s.session_reused)
        finally:
            s.close()

    session, reused = await asyncio.to_thread(connect, None)
    assert not reused
    _, reused = await asyncio.to_thread(connect, session)
    assert reused


def _connect13(port: int, ctx: ssl.SSLContext, session: ssl.SSLSession | None) -> tuple[ssl.SSLSession, bool]:
    """A TLS 1.3 connection that reads one response, so the server's session tickets have arrived."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname="a.test", session=session)
    try:
        s.sendall(b"GET /echo HTTP/1.1\r\nHost: a.test\r\n\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            assert chunk, "closed before the response"
            buf += chunk
        assert s.session is not None
        return s.session, bool(s.session_reused)
    finally:
        s.close()


async def test_session_ticket_keys_rotate(tls_gate: TlsGate):
    """TLS 1.3 tickets resume while their keys are current; after the keys' lifetime new connections
    start on a context with new keys, which cannot decrypt the old tickets (a full handshake) and issues
    tickets that resume again. No rotation before the lifetime is up."""
    ref = tls_gate.publish("a.test")
    sel = tls_gate.selector
    ctx = tls_gate.client_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    first, reused = await asyncio.to_thread(_connect13, tls_gate.port, ctx, None)
    assert not reused
    _, reused = await asyncio.to_thread(_connect13, tls_gate.port, ctx, first)
    assert reused and sel.session_key_rotations == 0
    assert sel.rotate_at > time.monotonic() + sel.session_key_lifetime_s - 120
    # The ticket says it is good for longer than the keys live (OpenSSL's 7200 s, not settable from
    # Python): the rotation below, not the ticket's lifetime, is what ends its resumption.
    assert first.timeout >= sel.session_key_lifetime_s and first.ticket_lifetime_hint >= sel.session_key_lifetime_s

    sel.rotate_at = time.monotonic() - 1  # the keys' lifetime is up: the next connection rotates them
    old_context = sel.context
    second, reused = await asyncio.to_thread(_connect13, tls_gate.port, ctx, first)
    assert not reused, "a ticket from the previous keys was accepted after the rotation"
    assert sel.session_key_rotations == 1 and sel.context is not old_context
    assert sel.rotate_at > time.monotonic() + sel.session_key_lifetime_s - 120
    _, reused = await asyncio.to_thread(_connect13, tls_gate.port, ctx, second)
    assert reused and sel.session_key_rotations == 1
    # The new context serves like the old one: SNI still picks the name's certificate.
    _, w = await handshake(tls_gate, "a.test")
    assert served_serial(w.get_extra_info("ssl_object").getpeercert(binary_form=True)) == ref.serial
    w.close()


@pytest.mark.parametrize("sni", ["a.test", "unknown.test"])
async def test_one_tls13_ticket_per_handshake(tls_gate: TlsGate, sni: str):
    """A full TLS 1.3 handshake brings exactly one NewSessionTicket (OpenSSL's default is two), on a
    name's own context and on the fallback alike."""
    tls_gate.publish("a.test")
    ctx = tls_gate.client_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    tickets: list[int] = []

    def on_message(_conn: object, direction: str, _v: object, _ct: object, msg_type: object, _d: bytes) -> None:
        if direction == "read" and msg_type == ssl._TLSMessageType.NEWSESSION_TICKET:  # type: ignore[attr-defined]
            tickets.append(1)

    ctx._msg_callback = on_message  # type: ignore[attr-defined]  # CPython's debugging hook

    def connect() -> None:
        raw = socket.create_connection(("127.0.0.1", tls_gate.port), timeout=10)
        with ctx.wrap_socket(raw, server_hostname=sni) as s:
            s.sendall(f"GET /echo HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode())
            while s.recv(65536):
                pass

    await asyncio.to_thread(connect)
    assert len(tickets) == 1


async def test_rotation_regenerates_unloadable_fallback_files(tls_gate: TlsGate):
    """Fallback files deleted behind the gate's back: rotation generates them again (never keeps the old
    keys for good); connections are still served."""
    sel = tls_gate.selector
    cert_path, key_path = sel.fallback_files
    Path(cert_path).unlink()
    Path(key_path).write_text("not a key")
    sel.rotate_session_keys()
    assert sel.session_key_rotations == 1 and Path(cert_path).exists()
    _, w = await handshake(tls_gate, "unknown.test", verify=False)
    cert = x509.load_der_x509_certificate(w.get_extra_info("ssl_object").getpeercert(binary_form=True))
    assert FALLBACK_NAME in cert.subject.rfc4514_string()
    w.close()


async def test_fallback_is_generated_once_and_cached(tmp_path: Path):
    c1, k1 = ensure_fallback(tmp_path, time.time())
    first = Path(c1).read_bytes()
    c2, _ = ensure_fallback(tmp_path, time.time())
    assert c2 == c1 and Path(c2).read_bytes() == first
    assert Path(k1).stat().st_mode & 0o777 == 0o600
    # Expired (as seen from far in the future): regenerated.
    ensure_fallback(tmp_path, time.time() + 20 * 365 * 86400)
    assert Path(c1).read_bytes() != first


def test_lookup_exact_then_one_label_wildcard():
    table = {"a.example.com": 1, "*.example.com": 2}
    assert lookup(table, "a.example.com") == 1  # type: ignore[arg-type]
    assert lookup(table, "B.Example.com.") == 2  # type: ignore[arg-type]
    assert lookup(table, "x.b.example.com") is None  # type: ignore[arg-type]
    assert lookup(table, "example.com") is None  # type: ignore[arg-type]


async def test_describe_for_route_listing(tls_gate: TlsGate):
    ref = tls_gate.publish("*.w.test")
    d = tls_gate.selector.describe("*.w.test")
    assert d["serial"] == ref.serial and d["issuer"] == "trustme test CA" and d["not_after"] == ref.not_after
    assert tls_gate.selector.describe("x.w.test")["serial"] == ref.serial
    assert tls_gate.selector.describe("none.test")["source"] == "fallback"
    assert isinstance(tls_gate.selector, CertSelector)


async def test_redirect_and_hsts_end_to_end(tls_gate: TlsGate, origin: Origin):
    g = tls_gate.gate
    g.set_routes({"host": "a.test", "upstreams": [origin.addr], "tls": "manual", "policies": {"hsts_max_age_s": 600}})
    g.state.challenges.put("tok", "tok.keyauth")
    tls_gate.publish("a.test")
    async with httpx.AsyncClient(verify=tls_gate.client_context(), http2=True) as c:
        r = await c.get(f"http://127.0.0.1:{g.port}/page", headers={"host": "a.test"})
        assert r.status_code in (301, 308) and r.headers["location"] == "https://a.test/page"
        assert "strict-transport-security" not in r.headers
        r = await c.get(f"http://127.0.0.1:{g.port}/.well-known/acme-challenge/tok", headers={"host": "a.test"})
        assert r.status_code == 200 and r.text == "tok.keyauth"  # never redirected
        for http2 in (True, False):
            async with httpx.AsyncClient(verify=tls_gate.client_context(), http2=http2) as c2:
                r = await c2.get(
                    f"https://127.0.0.1:{tls_gate.port}/echo",
                    headers={"host": "a.test"},
                    extensions={"sni_hostname": "a.test"},
                )
                assert r.status_code == 200 and r.headers["strict-transport-security"] == "max-age=600"
