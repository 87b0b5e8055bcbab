"""End to end through `fsctl serve`: a route with `tls: auto` gets a certificate from Pebble on its own.

The server's gate listens for plain HTTP on Pebble's validation port (PEBBLE_HTTP01_PORT), so Pebble's
HTTP-01 requests reach the gate's real ACME responder, which serves the tokens certd put into the
kernel's ChallengeStore; the gate declares the route's host through CertificateBoard.set_wanted.
The certificate is then checked where users meet it: on the gate's HTTPS port, by SNI, with a client
that trusts only Pebble's root, in front of a real upstream — and across a renewal with a connection
held open.
"""

from __future__ import annotations

import http.client
import http.server
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.certd.conftest import tls_handshake, unique_name


@pytest.fixture
def upstream() -> Iterator[int]:
    """A real HTTP/1.1 origin on loopback that names itself in every answer."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = f"upstream saw {self.headers['Host']}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


class HttpsClient:
    """One keep-alive TLS connection to the gate with an SNI name, trusting only `root`."""

    def __init__(self, port: int, name: str, root: Path) -> None:
        ctx = ssl.create_default_context(cafile=str(root))
        self.name = name
        self.tls = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname=name)

    @property
    def serial(self) -> str:
        return str((self.tls.getpeercert() or {})["serialNumber"]).lower().lstrip("0")

    def get(self, path: str = "/") -> tuple[int, bytes]:
        self.tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {self.name}\r\n\r\n".encode())
        resp = http.client.HTTPResponse(self.tls)
        resp.begin()
        return resp.status, resp.read()

    def close(self) -> None:
        self.tls.close()


def _serve_on_pebble_port(server_factory: Any, pebble: Any, deadline_s: float = 90) -> Any:
    """Start `fsctl serve` with its HTTP port on Pebble's validation port; another test run may hold
    that port for a while, so retry until a deadline."""
    deadline = time.monotonic() + deadline_s
    attempt = 0
    while True:
        attempt += 1
        args = [
            "--acme-directory",
            pebble.directory,
            "--acme-ca-bundle",
            str(pebble.ca_bundle),
            "--http-port",
            str(pebble.http01_port),
        ]  # the last --http-port wins over the fixture's
        try:
            return server_factory(name=f"data{attempt}", extra_args=args)
        except AssertionError as e:
            if "in use" not in str(e).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.5)  # the port is busy: wait our turn


def _cert(srv: Any, name: str) -> dict[str, Any] | None:
    r = srv.fsctl("cert", "ls", "--json")
    assert r.returncode == 0, r.stderr
    found: dict[str, Any] | None = next((c for c in json.loads(r.stdout) if c["name"] == name), None)
    return found


def test_tls_auto_route_gets_a_pebble_certificate(pebble, server_factory) -> None:
    srv = _serve_on_pebble_port(server_factory, pebble)
    name = unique_name("hello")
    r = srv.fsctl("route", "add", "--host", name, "--upstream", "127.0.0.1:9", "--tls", "auto")
    if r.returncode != 0 and "tls" in r.stderr:
        pytest.skip(f"this gate does not accept --tls auto yet: {r.stderr.strip()}")
    assert r.returncode == 0, r.stderr

    deadline = time.monotonic() + 60
    cert = None
    while time.monotonic() < deadline:
        cert = _cert(srv, name)
        if cert and cert["source"] == "acme":
            break
        time.sleep(0.2)
    assert cert and cert["source"] == "acme", f"no ACME certificate within 60s: {cert}\n{srv.log()[-3000:]}"
    assert cert["status"] == "valid" and cert["origin"] == "wanted" and cert["issuer"].startswith("Pebble")
    peer = tls_handshake(cert["cert_path"], cert["key_path"], pebble.root_pem, name)
    assert ("DNS", name) in peer["subjectAltName"]

    # `fsctl cert issue` with two names goes through the same responder.
    other = unique_name("multi")
    r = srv.fsctl("cert", "issue", other, "--also", f"www.{other}", timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"issued {other} ({other}, www.{other}): valid")
    c = _cert(srv, other)
    assert c is not None
    tls_handshake(c["cert_path"], c["key_path"], pebble.root_pem, f"www.{other}")
    # And renew replaces it with a new serial.
    r = srv.fsctl("cert", "renew", other, "--json", timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["serial"] != c["serial"]


def test_tls_auto_is_served_by_the_gate_and_renewal_keeps_open_connections(pebble, server_factory, upstream) -> None:
    srv = _serve_on_pebble_port(server_factory, pebble)
    name = unique_name("live")
    r = srv.fsctl("route", "add", "--host", name, "--upstream", f"127.0.0.1:{upstream}", "--tls", "auto")
    assert r.returncode == 0, r.stderr

    deadline = time.monotonic() + 60
    cert = None
    while time.monotonic() < deadline and not (cert and cert["source"] == "acme"):
        time.sleep(0.2)
        cert = _cert(srv, name)
    assert cert and cert["source"] == "acme", f"no ACME certificate within 60s: {cert}\n{srv.log()[-3000:]}"

    # The gate serves it for new handshakes with that SNI name (the swap is immediate, but allow the
    # board's notification a moment), verified against Pebble's root, with the upstream behind it.
    deadline = time.monotonic() + 10
    while True:
        try:
            held = HttpsClient(srv.https_port, name, pebble.root_pem)
            break
        except ssl.SSLCertVerificationError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    try:
        first_serial = cert["serial"].lower().lstrip("0")
        assert held.serial == first_serial
        assert held.get() == (200, f"upstream saw {name}".encode())

        # Renew while `held` stays open: new handshakes get the new serial, the held one keeps working.
        r = srv.fsctl("cert", "renew", name, "--json", timeout=120)
        assert r.returncode == 0, r.stderr
        second_serial = json.loads(r.stdout)["serial"].lower().lstrip("0")
        assert second_serial != first_serial
        deadline = time.monotonic() + 10
        while True:
            fresh = HttpsClient(srv.https_port, name, pebble.root_pem)
            if fresh.serial == second_serial or time.monotonic() > deadline:
                break
            fresh.close()
            time.sleep(0.2)
        try:
            assert fresh.serial == second_serial
            assert fresh.get() == (200, f"upstream saw {name}".encode())
        finally:
            fresh.close()
        assert held.get() == (200, f"upstream saw {name}".encode())
        assert held.serial == first_serial
    finally:
        held.close()
