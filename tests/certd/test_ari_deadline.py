"""Reading a CA's renewal information has a total deadline: a CA (or anyone in its place) that trickles
bytes cannot hold certd's only worker thread past `request_timeout_s`."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from certd.acme_client import AcmeIssuer, AriFailure

TRICKLE_FOR_S = 12.0  # the server gives up after this (bounded), far past the 1 s deadline under test


class TrickleServer:
    """Plain HTTP on loopback: /dir answers at once (with renewalInfo), anything else trickles one byte
    of a valid answer every 0.2 s — each read gets a byte well within a per-read timeout."""

    def __init__(self, trickle_headers: bool, close: bool = False) -> None:
        self.trickle_headers = trickle_headers
        self.close_header = b"Connection: close\r\n" if close else b""
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            request = conn.recv(4096)
            if request.startswith(b"GET /dir "):
                body = f'{{"renewalInfo": "http://127.0.0.1:{self.port}/ri"}}'.encode()
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                    + str(len(body)).encode()
                    + b"\r\n\r\n"
                    + body
                )
                return
            body = b'{"suggestedWindow": {"start": "2026-12-01T00:00:00Z", "end": "2026-12-02T00:00:00Z"}}' + b" " * 500
            head = b"HTTP/1.1 200 OK\r\n" + self.close_header + b"Content-Length: " + str(len(body)).encode() + b"\r\n"
            if not self.trickle_headers:
                conn.sendall(head + b"\r\n")
                out = body
            else:
                out = head + b"X-Slow: " + b"a" * 400 + b"\r\n\r\n" + body
            t0 = time.monotonic()
            for i in range(len(out)):
                if self.stop.is_set() or time.monotonic() - t0 > TRICKLE_FOR_S:
                    return
                try:
                    conn.sendall(out[i : i + 1])
                except OSError:
                    return
                time.sleep(0.2)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


@pytest.fixture(
    params=[(True, False), (False, False), (False, True)],
    ids=["trickled-headers", "trickled-body", "trickled-body-connection-close"],
)
def trickle(request: pytest.FixtureRequest) -> Iterator[TrickleServer]:
    # With `Connection: close` http.client lets go of its socket once the headers are read: the
    # deadline must still reach the body.
    server = TrickleServer(trickle_headers=request.param[0], close=request.param[1])
    yield server
    server.close()


def test_a_trickling_answer_is_cut_at_the_total_deadline(trickle: TrickleServer, tmp_path: Path) -> None:
    issuer = AcmeIssuer(f"http://127.0.0.1:{trickle.port}/dir", tmp_path, request_timeout_s=1.0)
    t0 = time.monotonic()
    with pytest.raises(AriFailure) as failure:
        issuer.renewal_info("AQI.AQ")
    elapsed = time.monotonic() - t0
    assert "within 1 s in all" in failure.value.message
    # A per-read timeout would wait for the whole trickle (12 s); the total deadline ends it at ~1 s.
    assert elapsed < 4.0, elapsed


def test_a_prompt_answer_is_still_read(tmp_path: Path) -> None:
    body = b'{"suggestedWindow": {"start": "2026-12-01T00:00:00Z", "end": "2026-12-02T00:00:00Z"}}'
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        for _ in range(2):
            conn, _ = server.accept()
            with conn:
                request = conn.recv(4096)
                payload = (
                    f'{{"renewalInfo": "http://127.0.0.1:{port}/ri"}}'.encode()
                    if request.startswith(b"GET /dir ")
                    else body
                )
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nRetry-After: 120\r\nContent-Length: "
                    + str(len(payload)).encode()
                    + b"\r\n\r\n"
                    + payload
                )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        answer = AcmeIssuer(f"http://127.0.0.1:{port}/dir", tmp_path, request_timeout_s=5.0).renewal_info("AQI.AQ")
    finally:
        thread.join(5)
        server.close()
    assert answer is not None and answer.retry_after_s == 120.0
    assert answer.window.end - answer.window.start == 86400


# --- TLS, a slow connect, proxies ------------------------------------------------------------------


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (its own CA) and its key, as files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ari test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class Relay:
    """A TCP relay on loopback to `port`: server→client bytes of the first `slow_for_s` seconds are
    passed on in small pieces 0.3 s apart (each read gets bytes well within a per-read timeout, the TLS
    handshake takes longer than the deadline); after that, as they come. Optionally a CONNECT proxy
    (answers `CONNECT`, then relays), counting the tunnels it made."""

    def __init__(self, port: int, slow_for_s: float = 0.0, proxy: bool = False, answer_after_s: float = 0.0) -> None:
        self.target, self.slow_for_s, self.proxy, self.answer_after_s = port, slow_for_s, proxy, answer_after_s
        self.tunnels: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, client: socket.socket) -> None:
        t0 = time.monotonic()
        with client:
            if self.proxy:
                head = b""
                while b"\r\n\r\n" not in head and len(head) < 8192:
                    data = client.recv(1)
                    if not data:
                        return
                    head += data
                self.tunnels.append(head.split(b"\r\n", 1)[0])
                time.sleep(self.answer_after_s)
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            with socket.create_connection(("127.0.0.1", self.target), timeout=TRICKLE_FOR_S) as upstream:
                threading.Thread(target=self._pump, args=(client, upstream, None), daemon=True).start()
                self._pump(upstream, client, t0)

    def _pump(self, src: socket.socket, dst: socket.socket, slow_from: float | None) -> None:
        src.settimeout(TRICKLE_FOR_S)
        with contextlib.suppress(OSError):
            while not self.stop.is_set():
                data = src.recv(65536)
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                if slow_from is not None and time.monotonic() - slow_from < self.slow_for_s:
                    step = max(1, len(data) // 4)
                    for i in range(0, len(data), step):
                        time.sleep(0.3)
                        dst.sendall(data[i : i + step])
                else:
                    dst.sendall(data)

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


class TlsTrickleServer(TrickleServer):
    """TrickleServer over TLS (certificate for 127.0.0.1 at `cert`)."""

    def __init__(self, tmp_path: Path, trickle_headers: bool = False) -> None:
        self.cert, key = _self_signed(tmp_path)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(self.cert, key)
        super().__init__(trickle_headers)

    def _one(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(TRICKLE_FOR_S)
            tls = self.ctx.wrap_socket(conn, server_side=True)
        except OSError:
            conn.close()
            return
        super()._one(tls)


def _dir_url(scheme: str, port: int) -> str:
    return f"{scheme}://127.0.0.1:{port}/dir"


def test_a_connect_longer_than_the_deadline_still_ends_at_it(tmp_path: Path) -> None:
    """The TLS handshake alone takes ~1.5 s (a slow path, a blackholed address tried first): the deadline
    has passed before the request is sent, so the trickled answer after it is not waited for."""
    server = TlsTrickleServer(tmp_path)
    relay = Relay(server.port, slow_for_s=1.3)
    try:
        issuer = AcmeIssuer(_dir_url("https", relay.port), tmp_path, ca_bundle=server.cert, request_timeout_s=1.0)
        issuer._directory = {"renewalInfo": f"https://127.0.0.1:{relay.port}/ri"}
        issuer._directory_at = time.monotonic()
        t0 = time.monotonic()
        with pytest.raises(AriFailure) as failure:
            issuer.renewal_info("AQI.AQ")
        elapsed = time.monotonic() - t0
    finally:
        relay.close()
        server.close()
    assert "within 1 s in all" in failure.value.message
    assert elapsed < 4.0, elapsed


def test_tls_answer_through_a_connect_proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTPS_PROXY is honoured (as `requests` does for the ACME orders): the fetch tunnels through it,
    and the deadline still holds through the tunnel."""
    server = TlsTrickleServer(tmp_path, trickle_headers=True)
    proxy = Relay(server.port, proxy=True)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    try:
        issuer = AcmeIssuer(
            f"https://127.0.0.1:{server.port}/dir", tmp_path, ca_bundle=server.cert, request_timeout_s=1.0
        )
        status, _, body = issuer._fetch(f"https://127.0.0.1:{server.port}/dir")  # a prompt answer
        assert status == 200 and b"renewalInfo" in body
        t0 = time.monotonic()
        with pytest.raises(AriFailure) as failure:
            issuer._fetch(f"https://127.0.0.1:{server.port}/ri/AQI.AQ")  # a trickled one
        assert time.monotonic() - t0 < 4.0
        assert "within 1 s in all" in failure.value.message
        assert proxy.tunnels[0] == f"CONNECT 127.0.0.1:{server.port} HTTP/1.1".encode()
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        count = len(proxy.tunnels)
        assert issuer._fetch(f"https://127.0.0.1:{server.port}/dir")[0] == 200
        assert len(proxy.tunnels) == count  # NO_PROXY: direct
    finally:
        proxy.close()
        server.close()


def test_the_deadline_spans_the_proxy_tunnel_and_the_tls_handshake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proxy answers CONNECT after 0.6 s, then the handshake takes ~1.2 s: each phase alone is within
    the 1 s deadline (and would be under a per-phase timeout); together they are not."""
    server = TlsTrickleServer(tmp_path)
    proxy = Relay(server.port, proxy=True, answer_after_s=0.6, slow_for_s=2.0)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    try:
        issuer = AcmeIssuer(
            f"https://127.0.0.1:{server.port}/dir", tmp_path, ca_bundle=server.cert, request_timeout_s=1.0
        )
        t0 = time.monotonic()
        with pytest.raises(AriFailure) as failure:
            issuer._fetch(f"https://127.0.0.1:{server.port}/dir")
        elapsed = time.monotonic() - t0
    finally:
        proxy.close()
        server.close()
    assert "within 1 s in all" in failure.value.message
    assert elapsed < 1.8, elapsed


def test_a_ca_directory_and_a_bad_certificate_are_ari_failures(tmp_path: Path) -> None:
    server = TlsTrickleServer(tmp_path)
    cadir = tmp_path / "cadir"
    cadir.mkdir()
    try:
        for bundle in (cadir, None):  # a CA path without the server's CA; the default (certifi) bundle
            issuer = AcmeIssuer(
                f"https://127.0.0.1:{server.port}/dir", tmp_path, ca_bundle=bundle, request_timeout_s=5.0
            )
            with pytest.raises(AriFailure, match="certificate verify failed"):
                issuer.offers_ari()
    finally:
        server.close()


def test_an_ipv6_literal_url_is_parsed(tmp_path: Path) -> None:
    try:
        listener = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            request = conn.recv(4096)
            assert f"Host: [::1]:{port}".encode() in request
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        assert AcmeIssuer(f"http://[::1]:{port}/dir", tmp_path, request_timeout_s=5.0).offers_ari() is False
    finally:
        thread.join(5)
        listener.close()
