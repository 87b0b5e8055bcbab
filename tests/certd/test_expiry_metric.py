"""`cert_expiry_seconds{name}` through the real wiring of `fsctl serve`: certd's MetricsSource is read
by probe each tick, so it is in `/metrics`, in probe's store (`/api/metrics/query`), and an alert rule
on it fires and reaches its webhook — for the certificate running out, not for the one with time left."""

from __future__ import annotations

import datetime
import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.probe.test_exposition import parse

DAY = 86400


def _pair(name: str, days: float) -> tuple[str, str]:
    """A certificate for `name` valid from an hour ago for `days` more, and its key (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict]]]:
    """A real HTTP receiver on loopback that keeps every JSON body POSTed to it."""
    received: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/hook", received
    finally:
        httpd.shutdown()
        httpd.server_close()


def _poll(fn: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.2)


def test_cert_expiry_metric_is_exposed_stored_and_alerts_reach_the_webhook(server_factory: Any, webhook: Any) -> None:
    url, received = webhook
    srv = server_factory()
    for name, days in (("soon.test", 5), ("later.test", 60)):
        cert_pem, key_pem = _pair(name, days)
        r = srv.api("POST", "/api/certs/import", json={"cert_pem": cert_pem, "key_pem": key_pem})
        assert r.status_code == 200, r.text
    r = srv.api(
        "POST",
        "/api/alerts/rules",
        json={
            "name": "cert-expiring",
            "metric": "cert_expiry_seconds",
            "op": "<",
            "threshold": 10 * DAY,
            "webhook": url,
        },
    )
    assert r.status_code == 200, r.text

    # The alert fires for the certificate with 5 days left, and the webhook gets it.
    hooks = _poll(
        lambda: [h for h in received if h.get("event") == "alert.triggered"],
        30,
        f"the alert at the webhook\n{srv.log()[-3000:]}",
    )
    assert [h["labels"] for h in hooks] == [{"name": "soon.test"}]
    assert hooks[0]["metric"] == "cert_expiry_seconds" and 4.9 * DAY < hooks[0]["value"] < 5 * DAY
    active = srv.api("GET", "/api/alerts").json()["active"]
    assert [(a["labels"], a["status"]) for a in active] == [({"name": "soon.test"}, "firing")]

    # One series per certificate in Prometheus exposition ...
    tok = srv.api("POST", "/api/tokens", json={"name": "prometheus", "role": "viewer"}).json()["token"]
    text = httpx.get(f"{srv.url}/metrics", headers={"Authorization": f"Bearer {tok}"}).text
    kind, samples = parse(text)["cert_expiry_seconds"]
    assert kind == "gauge"
    values = {series.split('"')[1]: value for series, value in samples}
    assert sorted(series for series, _ in samples) == [
        'cert_expiry_seconds{name="later.test"}',
        'cert_expiry_seconds{name="soon.test"}',
    ]
    assert 4.9 * DAY < values["soon.test"] < 5 * DAY and 59.9 * DAY < values["later.test"] < 60 * DAY

    # ... and in probe's store.
    def stored() -> dict:
        r = srv.api("GET", "/api/metrics/query?name=cert_expiry_seconds&from=5m&step=1")
        assert r.status_code == 200, r.text
        return {s["labels"]["name"]: s["points"] for s in r.json()["series"] if s["points"]}

    series = _poll(lambda: len(stored()) == 2 and stored(), 20, "both series in probe's store")
    assert 59.9 * DAY < series["later.test"][-1][1] < 60 * DAY

    # A removed certificate's series goes away with it.
    assert srv.fsctl("cert", "rm", "later.test").returncode == 0
    text = _poll(
        lambda: (
            (t := httpx.get(f"{srv.url}/metrics", headers={"Authorization": f"Bearer {tok}"}).text)
            and 'name="later.test"' not in t
            and t
        ),
        10,
        "later.test gone from /metrics",
    )
    assert 'cert_expiry_seconds{name="soon.test"}' in text
    assert srv.stop() == 0
