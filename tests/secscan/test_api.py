"""`GET /api/security/scan` and `fsctl security scan` through a real `fsctl serve`: platform findings from
the running kernel (admin without 2FA, long-lived token, TLS route without redirect, file modes, a
service listening beyond loopback), `security.finding` events on the SSE stream, roles."""

from __future__ import annotations

import json
import os
import sys
import time

import httpx

from tests.e2e.test_events import sse_events


def wait_security_events(server, ids: set[str], timeout: float = 20) -> dict[str, dict]:
    headers = {"Authorization": f"Bearer {server.login()}", "Last-Event-ID": "0"}
    found: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    with httpx.stream("GET", f"{server.url}/api/events", headers=headers, timeout=timeout) as r:
        assert r.status_code == 200
        for ev in sse_events(r.iter_lines()):
            if ev.get("event") == "security.finding":
                data = json.loads(ev["data"])["data"]
                found[data["id"]] = data
            if ids <= found.keys() or time.monotonic() > deadline:
                break
    return found


def test_scan_through_the_api_and_the_cli(server, tmp_path):
    # Give the platform something to find.
    r = server.api("POST", "/api/tokens", json={"name": "ci", "role": "admin", "expires_in_s": 3 * 365 * 86400})
    assert r.status_code == 200, r.text
    token_id = r.json()["id"]
    r = server.api(
        "POST",
        "/api/routes",
        json={
            "host": "shop.test",
            "upstreams": ["127.0.0.1:9"],
            "tls": "manual",
            "policies": {"redirect_https": False},
        },
    )
    assert r.status_code in (200, 201), r.text
    route_id = r.json()["id"]
    os.chmod(server.data_dir / "initial-admin-password", 0o644)

    r = server.api("GET", "/api/security/scan")
    assert r.status_code == 200, r.text
    report = r.json()
    found = {f["id"]: f for f in report["findings"]}
    expected = {
        "platform.admin_no_2fa.admin": "medium",
        f"platform.token_long_lived.{token_id}": "medium",
        f"platform.route_no_redirect.{route_id}": "medium",
        "platform.mode.initial-admin-password": "critical",
        "platform.initial_password_file": "low",
    }
    assert {k: found[k]["severity"] for k in expected if k in found} == expected, sorted(found)
    assert report["failing"] is True and report["counts"]["critical"] >= 1
    assert all(found[k]["new"] is True for k in expected)
    assert (
        found["platform.mode.initial-admin-password"]["fix"]
        == f"`chmod 0600 {server.data_dir / 'initial-admin-password'}`"
    )
    assert "firewall" in {f["category"] for f in report["findings"]}  # (sshd's only where it is installed)
    assert report["sources"]["root"] == "/"
    assert report["sources"]["sockets"] == "live (psutil)"
    # The server's own edge ports are expected to face outside.
    assert f"sockets.tcp.{server.http_port}" not in found and f"sockets.tcp.{server.https_port}" not in found

    events = wait_security_events(server, set(expected))
    assert set(expected) <= events.keys()
    assert events["platform.mode.initial-admin-password"]["severity"] == "critical"

    # A second scan: nothing new, the same findings.
    again = server.api("GET", "/api/security/scan").json()
    assert not any(f["new"] for f in again["findings"] if f["id"] in expected)

    # The CLI through the API: exit 2 on high/critical, JSON for scripts, text for people.
    r = server.fsctl("security", "scan", "--json")
    assert r.returncode == 2, r.stderr
    assert set(expected) <= {f["id"] for f in json.loads(r.stdout)["findings"]}
    r = server.fsctl("security", "scan", "--min-severity", "high")
    assert r.returncode == 2 and "CRITICAL initial-admin-password holds the initial admin password" in r.stdout
    assert "MEDIUM" not in r.stdout

    os.chmod(server.data_dir / "initial-admin-password", 0o600)
    fixed = server.api("GET", "/api/security/scan").json()
    assert "platform.mode.initial-admin-password" not in {f["id"] for f in fixed["findings"]}

    # The response schema is in the OpenAPI document.
    doc = server.api("GET", "/api/openapi.json", token=None).json()
    op = doc["paths"]["/api/security/scan"]["get"]
    assert op["x-required-role"] == "admin"
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/ScanReport")
    assert "FindingOut" in doc["components"]["schemas"]


def test_only_admins_may_scan(server):
    assert server.api("GET", "/api/security/scan", token=None).status_code == 401
    assert (
        server.api(
            "POST", "/api/users", json={"username": "vera", "password": "viewer-pass-1", "role": "viewer"}
        ).status_code
        == 200
    )
    viewer = server.login("vera", "viewer-pass-1")
    assert server.api("GET", "/api/security/scan", token=viewer).status_code == 403
    # The findings reach admins' event streams only (a viewer's browser must not receive them either).
    assert server.api("GET", "/api/security/scan").status_code == 200  # publishes security.finding events
    assert (
        server.api(
            "POST", "/api/users", json={"username": "marker", "password": "marker-pass-1", "role": "viewer"}
        ).status_code
        == 200
    )
    assert wait_security_events(server, {"platform.admin_no_2fa.admin"}), "the admin sees the findings"
    seen = []
    with httpx.stream(
        "GET",
        f"{server.url}/api/events",
        timeout=20,
        headers={"Authorization": f"Bearer {viewer}", "Last-Event-ID": "0"},
    ) as r:
        for ev in sse_events(r.iter_lines()):
            seen.append(ev.get("event"))
            if ev.get("event") == "user.created" and "marker" in ev.get("data", ""):
                break
    assert "user.created" in seen and "security.finding" not in seen, seen


def test_a_service_listening_beyond_loopback_is_named(server, tmp_path):
    app = tmp_path / "wide.py"
    app.write_text(
        "import http.server, sys\n"
        "http.server.ThreadingHTTPServer(('0.0.0.0', int(sys.argv[1])),"
        " http.server.SimpleHTTPRequestHandler).serve_forever()\n"
    )
    spec = tmp_path / "wide.yaml"
    spec.write_text(
        f"name: wide\ncmd: [{json.dumps(sys.executable)}, {json.dumps(str(app))}, '${{PORT}}']\n"
        f"workdir: {tmp_path}\nports: [{{name: http, internal: auto}}]\n"
        "healthcheck: { tcp: '127.0.0.1:${PORT}', interval: 1s, timeout: 1s, retries: 3 }\n"
    )
    r = server.fsctl("service", "apply", "-f", str(spec), "--wait", timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    info = server.api("GET", "/api/services/wide").json()
    inst = info["instances"][0]
    pid, port = inst["pid"], next(iter(inst["ports"].values()))
    report = server.api("GET", "/api/security/scan").json()
    found = {f["id"]: f for f in report["findings"]}
    f = found[f"platform.service_exposed.wide.tcp.{port}"]
    assert f["severity"] == "high" and f["details"]["pid"] == pid
    assert f"sockets.tcp.{port}" in found and pid in found[f"sockets.tcp.{port}"]["details"]["pids"]
    server.fsctl("service", "rm", "wide")
