"""The console behind a gate route: client addresses from the gate's X-Forwarded-For (and from nobody
else's), login throttling per real client, the Host check against DNS rebinding, and the first-start
banner kept out of logs. All against a real `fsctl serve`, with clients on distinct loopback addresses
(Linux routes all of 127.0.0.0/8 to lo, so a client can bind 127.0.0.66 as its source)."""

from __future__ import annotations

import time

import httpx
import pytest


def _client(source: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=30)


def _route_to_console(server, host: str = "console.test") -> None:
    r = server.fsctl("route", "add", "--host", host, "--upstream", f"127.0.0.1:{server.console_port}")
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # the route table swaps in shortly after the API answers
        r = httpx.get(f"http://127.0.0.1:{server.http_port}/api/health", headers={"Host": host}, timeout=5)
        if r.status_code == 200:
            return
        time.sleep(0.1)
    raise AssertionError(f"the gate route to the console never answered: {r.status_code} {r.text}")


def _login_audit(server) -> list[dict]:
    return server.api("GET", "/api/audit?action=auth.login&limit=1000").json()


def test_forwarded_clients_are_throttled_and_audited_apart(server):
    server.login()  # before any failure: the admin's own session for the audit reads
    _route_to_console(server)
    gate = f"http://127.0.0.1:{server.http_port}/api/auth/login"
    host = {"Host": "console.test"}
    with _client("127.0.0.66") as attacker, _client("127.0.0.77") as user:
        codes = [
            attacker.post(gate, headers=host, json={"username": f"nobody{i}", "password": "wrong-pass"}).status_code
            for i in range(20)
        ]
        assert codes == [401] * 20
        r = attacker.post(gate, headers=host, json={"username": "nobody", "password": "wrong-pass"})
        assert r.status_code == 429, r.text  # the attacker's own address is locked out...
        r = user.post(gate, headers=host, json={"username": "admin", "password": server.admin_password})
        assert r.status_code == 200, r.text  # ...and nobody else is
        # A header the attacker forges is replaced by the gate (it is not a trusted proxy of the gate).
        r = attacker.post(
            gate,
            headers={**host, "X-Forwarded-For": "127.0.0.77"},
            json={"username": "nobody", "password": "wrong-pass"},
        )
        assert r.status_code == 429, r.text
    by_ip: dict[str, list[str]] = {}
    for a in _login_audit(server):
        by_ip.setdefault(a["client_ip"], []).append(a["outcome"])
    assert by_ip["127.0.0.66"].count("denied") + by_ip["127.0.0.66"].count("failed") == 22
    assert by_ip["127.0.0.77"] == ["ok"]


def test_a_direct_client_cannot_forge_its_address(server):
    server.login()
    url = f"{server.url}/api/auth/login"
    with _client("127.0.0.88") as direct:
        for i in range(20):
            r = direct.post(
                url,
                headers={"X-Forwarded-For": f"198.51.100.{i}"},
                json={"username": f"x{i}", "password": "wrong-pass"},
            )
            assert r.status_code == 401, r.text
        # Each request named a different address; all of them counted against the real one.
        r = direct.post(
            url, headers={"X-Forwarded-For": "198.51.100.200"}, json={"username": "x", "password": "wrong-pass"}
        )
        assert r.status_code == 429, r.text
    ips = {a["client_ip"] for a in _login_audit(server)}
    assert "127.0.0.88" in ips
    assert not any(ip.startswith("198.51.100.") for ip in ips), ips


def test_trusted_proxy_setting_believes_that_proxy_only(server_factory):
    server = server_factory(env={"INFRACORE_CONSOLE_TRUSTED_PROXIES": '["127.0.0.99/32"]'})
    server.login()
    url = f"{server.url}/api/users"
    with _client("127.0.0.99") as proxy, _client("127.0.0.98") as other:
        r = proxy.post(
            url,
            headers={"X-Forwarded-For": "203.0.113.5, 127.0.0.99"},
            json={"username": "a", "password": "password-1"},
        )
        assert r.status_code == 401
        r = other.post(url, headers={"X-Forwarded-For": "203.0.113.6"}, json={"username": "a", "password": "p"})
        assert r.status_code == 401
    ips = [a["client_ip"] for a in server.api("GET", "/api/audit?action=user.add").json()]
    assert ips == ["127.0.0.98", "203.0.113.5"]


def test_successful_login_does_not_reset_the_ip_counter(server):
    r = server.api("POST", "/api/users", json={"username": "vic", "password": "viewer-pass-1", "role": "viewer"})
    assert r.status_code == 200, r.text
    url = f"{server.url}/api/auth/login"
    with _client("127.0.0.55") as c:
        for i in range(19):
            assert c.post(url, json={"username": f"spray{i}", "password": "wrong-pass"}).status_code == 401
        assert c.post(url, json={"username": "vic", "password": "viewer-pass-1"}).status_code == 200
        assert c.post(url, json={"username": "spray", "password": "wrong-pass"}).status_code == 401
        r = c.post(url, json={"username": "spray", "password": "wrong-pass"})
        assert r.status_code == 429, r.text


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "localhost.evil.example"])
def test_unknown_host_names_are_refused(server, host):
    r = httpx.get(f"{server.url}/api/health", headers={"Host": host.format(port=server.console_port)})
    assert r.status_code == 421, r.text
    err = r.json()["error"]
    assert err["code"] == "host_not_allowed" and "console_allowed_hosts" in err["details"]["hint"]
    assert r.headers["X-Request-Id"]


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST", "[::1]:{port}", "10.1.2.3"])
def test_own_names_are_answered(server, host):
    r = httpx.get(f"{server.url}/api/health", headers={"Host": host.format(port=server.console_port)})
    assert r.status_code == 200, r.text


def test_configured_hosts_gate_routes_and_the_socket_are_answered(server_factory):
    server = server_factory(env={"INFRACORE_CONSOLE_ALLOWED_HOSTS": '["panel.example.org"]'})
    r = httpx.get(f"{server.url}/api/health", headers={"Host": "panel.example.org"})
    assert r.status_code == 200, r.text
    assert httpx.get(f"{server.url}/api/health", headers={"Host": "other.example.org"}).status_code == 421
    _route_to_console(server, "console.example.net")  # the gate's own route: its host is answered
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(server.data_dir / "console.sock"))) as c:
        r = c.get("http://evil.example/api/auth/me")
        assert r.status_code == 200 and r.json()["via"] == "socket"


def test_first_start_password_is_not_written_to_a_non_terminal(server):
    password = server.admin_password
    text = server.log()
    assert password not in text
    assert str(server.data_dir / "initial-admin-password") in text


def test_first_start_password_is_shown_on_a_terminal(tmp_path):
    import os
    import select
    import signal
    import subprocess

    from tests.conftest import FSCTL, ROOT, free_port

    data = tmp_path / "data"
    env = {**os.environ, "INFRACORE_PASSWORD_HASH_ROUNDS": "4", "INFRACORE_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}
    master, slave = os.openpty()
    log = open(tmp_path / "stdout.log", "wb")
    proc = subprocess.Popen(
        [
            *FSCTL,
            "serve",
            "--data-dir",
            str(data),
            "--console",
            f"127.0.0.1:{free_port()}",
            "--http-port",
            str(free_port()),
            "--https-port",
            str(free_port()),
        ],
        stdout=log,
        stderr=slave,
        env=env,
        cwd=ROOT,
    )
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and b"(also saved" not in seen:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    seen += os.read(master, 65536)
                except OSError:
                    break
        password = (data / "initial-admin-password").read_text().strip()
        assert f"password: {password}".encode() in seen, seen[-2000:]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        os.close(master)
        log.close()


def test_proxies_the_gate_trusts_are_skipped_by_the_console_too(server_factory):
    # nginx at 127.0.0.66 in front of the gate: the gate keeps its X-Forwarded-For and appends nginx's address.
    server = server_factory(env={"INFRACORE_GATE": '{"trusted_proxies": ["127.0.0.66/32"]}'})
    server.login()
    _route_to_console(server)
    gate = f"http://127.0.0.1:{server.http_port}/api/users"
    with _client("127.0.0.66") as nginx, _client("127.0.0.67") as other:
        r = nginx.post(
            gate,
            headers={"Host": "console.test", "X-Forwarded-For": "203.0.113.9"},
            json={"username": "a", "password": "password-1"},
        )
        assert r.status_code == 401
        r = other.post(
            gate,
            headers={"Host": "console.test", "X-Forwarded-For": "203.0.113.10"},
            json={"username": "a", "password": "password-1"},
        )
        assert r.status_code == 401
    ips = [a["client_ip"] for a in server.api("GET", "/api/audit?action=user.add").json()]
    assert ips == ["127.0.0.67", "203.0.113.9"]
