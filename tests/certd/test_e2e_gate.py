"""End to end through `fsctl serve`: a route with `tls: auto` gets a certificate from Pebble on its own.

The server's gate listens for plain HTTP on Pebble's validation port (PEBBLE_HTTP01_PORT), so Pebble's
HTTP-01 requests reach the gate's real ACME responder, which serves the tokens certd put into the
kernel's ChallengeStore; the gate declares the route's host through CertificateBoard.set_wanted.
(Serving the issued certificate on the gate's TLS port through `fsctl serve` is checked where the
gate wires its TLS listener; here the chain is verified with a real TLS handshake on the files.)
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.certd.conftest import tls_handshake, unique_name


def _serve_on_pebble_port(server_factory: Any, pebble: Any, deadline_s: float = 90) -> Any:
    """Start `fsctl serve` with its HTTP port on Pebble's validation port; another test run may hold
    that port for a while, so retry until a deadline."""
    deadline = time.monotonic() + deadline_s
    attempt = 0
    while True:
        attempt += 1
        args = ["--acme-directory", pebble.directory, "--acme-ca-bundle", str(pebble.ca_bundle),
                "--http-port", str(pebble.http01_port)]  # the last --http-port wins over the fixture's
        try:
            return server_factory(name=f"data{attempt}", extra_args=args)
        except AssertionError as e:
            if "in use" not in str(e).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.5)  # the port is busy: wait our turn


def _cert(srv: Any, name: str) -> dict | None:
    r = srv.fsctl("cert", "ls", "--json")
    assert r.returncode == 0, r.stderr
    return next((c for c in json.loads(r.stdout) if c["name"] == name), None)


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
    tls_handshake(c["cert_path"], c["key_path"], pebble.root_pem, f"www.{other}")
    # And renew replaces it with a new serial.
    r = srv.fsctl("cert", "renew", other, "--json", timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["serial"] != c["serial"]
