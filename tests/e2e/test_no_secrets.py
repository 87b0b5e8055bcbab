"""No secret reaches a log: a realistic session against a real `fsctl serve` at debug level — logins
(right, wrong, with a one-time code and a recovery code), tokens, users and password changes, two-factor
enrolment, basic-auth routes, the console behind a gate route, a service with a secret in its env —
then every place the platform writes logs or records (its stdout/stderr, logbus's files, the audit
log, the event store) is searched for every secret used."""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from pathlib import Path

import bcrypt
import httpx
import pyotp

from tests.conftest import free_port


def _gate(server, host: str, path: str, **kw) -> httpx.Response:
    headers = {"Host": host, **kw.pop("headers", {})}
    return httpx.request(
        kw.pop("method", "GET"), f"http://127.0.0.1:{server.http_port}{path}", headers=headers, timeout=30, **kw
    )


def _wait_route(server, host: str, path: str, ok: set[int]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if _gate(server, host, path).status_code in ok:
            return
        time.sleep(0.1)
    raise AssertionError(f"route {host} never answered with one of {ok}")


def _captured(server) -> dict[str, str]:
    """Every text the server wrote that a log reader sees, by where it came from."""
    out = {"server stdout/stderr": server.log()}
    for p in sorted((server.data_dir / "logs").rglob("*")):
        if p.is_file():
            out[f"logbus {p.relative_to(server.data_dir)}"] = p.read_bytes().decode(errors="replace")
    db = sqlite3.connect(f"file:{server.data_dir / 'state.db'}?mode=ro", uri=True)
    try:
        out["audit table"] = json.dumps([list(r) for r in db.execute("SELECT * FROM audit")])
        out["event store"] = json.dumps([list(r) for r in db.execute("SELECT * FROM events")])
    finally:
        db.close()
    return out


def test_no_secret_appears_in_any_log(server_factory, tmp_path: Path):
    server = server_factory(env={"INFRACORE_LOG_LEVEL": "debug"})
    secrets: dict[str, str] = {}
    admin_pw = secrets["initial admin password"] = server.admin_password
    url = server.url

    # Logins: a typo of the real password first (a near-miss is as secret as the password), then the CLI.
    typo = secrets["mistyped admin password"] = admin_pw[:-2] + "zz"
    assert (
        httpx.post(f"{url}/api/auth/login", json={"username": "admin", "password": typo}, timeout=30).status_code == 401
    )
    r = server.fsctl("login", "--user", "admin", "--password-stdin", input=admin_pw + "\n", token=None)
    assert r.returncode == 0, r.stderr
    admin = secrets["admin session token"] = server.login()

    # An API token, used through a gate route to the console.
    r = server.api("POST", "/api/tokens", token=admin, json={"name": "ci", "role": "admin"})
    api_token = secrets["API token"] = r.json()["token"]
    assert (
        server.fsctl(
            "route", "add", "--host", "console.test", "--upstream", f"127.0.0.1:{server.console_port}", token=api_token
        ).returncode
        == 0
    )
    _wait_route(server, "console.test", "/api/health", {200})
    assert (
        _gate(server, "console.test", "/api/status", headers={"Authorization": f"Bearer {api_token}"}).status_code
        == 200
    )
    r = _gate(
        server, "console.test", "/api/auth/login", method="POST", json={"username": "admin", "password": admin_pw}
    )
    assert r.status_code == 200
    secrets["session token through the gate"] = r.json()["token"]

    # Users and passwords, over the API and the CLI.
    carol_pw = secrets["carol's first password"] = "carol-first-Pa55word"
    r = server.api("POST", "/api/users", token=admin, json={"username": "carol", "password": carol_pw, "role": "admin"})
    assert r.status_code == 200, r.text
    carol_pw = secrets["carol's second password"] = "carol-second-Pa55word"
    r = server.fsctl("user", "passwd", "carol", "--password-stdin", input=f"{carol_pw}\n", token=admin)
    assert r.returncode == 0, r.stderr
    carol = secrets["carol's session"] = server.login("carol", carol_pw)

    # Two-factor enrolment, then logins with a one-time code and a recovery code.
    enrol = server.api("POST", "/api/users/carol/totp", token=carol).json()
    secrets["TOTP secret"] = enrol["secret"]
    totp = pyotp.TOTP(enrol["secret"])
    r = server.api("POST", "/api/users/carol/totp/confirm", token=carol, json={"code": totp.at(time.time() - 30)})
    assert r.status_code == 200, r.text
    codes = r.json()["recovery_codes"]
    for i, code in enumerate(codes):
        secrets[f"recovery code {i}"] = code
        secrets[f"recovery code {i} as typed"] = code.replace("-", "")
    login = {"username": "carol", "password": carol_pw}
    r = httpx.post(f"{url}/api/auth/login", json={**login, "otp": totp.now()}, timeout=30)
    assert r.status_code == 200, r.text
    secrets["session after OTP"] = r.json()["token"]
    r = httpx.post(f"{url}/api/auth/login", json={**login, "otp": codes[0]}, timeout=30)
    assert r.status_code == 200, r.text
    secrets["session after recovery code"] = r.json()["token"]
    assert httpx.post(f"{url}/api/auth/login", json={**login, "otp": codes[0]}, timeout=30).status_code == 401  # spent
    r = server.fsctl("user", "totp", "recovery-codes", "carol", token=carol)
    assert r.returncode == 0, r.stderr
    for i, line in enumerate(ln.strip() for ln in r.stdout.splitlines() if ln.startswith("  ")):
        secrets[f"regenerated recovery code {i}"] = line

    # A basic-auth route: the password, its Authorization header and its bcrypt hash.
    bob_pw = secrets["basic-auth password"] = "bob-basic-Pa55word"
    bob_hash = secrets["basic-auth bcrypt hash"] = bcrypt.hashpw(bob_pw.encode(), bcrypt.gensalt(4)).decode()
    r = server.fsctl(
        "route",
        "add",
        "--host",
        "basic.test",
        "--upstream",
        f"127.0.0.1:{server.console_port}",
        "--basic-auth",
        f"bob:{bob_hash}",
        token=admin,
    )
    assert r.returncode == 0, r.stderr
    _wait_route(server, "basic.test", "/api/health", {401})
    good = secrets["basic-auth header"] = base64.b64encode(f"bob:{bob_pw}".encode()).decode()
    assert _gate(server, "basic.test", "/api/health", headers={"Authorization": f"Basic {good}"}).status_code == 200
    bad = secrets["wrong basic-auth header"] = base64.b64encode(b"bob:not-bobs-Pa55word").decode()
    assert _gate(server, "basic.test", "/api/health", headers={"Authorization": f"Basic {bad}"}).status_code == 401
    assert server.api("GET", "/api/routes", token=admin).status_code == 200

    # A service with a secret in its environment (the service itself never prints it).
    db_key = secrets["service env secret"] = "svc-env-S3cret-value-42"
    spec = tmp_path / "quiet.yaml"
    spec.write_text(f"name: quiet\ncmd: sleep 30\nenv:\n  DB_PASSWORD: {db_key}\n  API_KEY: {db_key}\n")
    r = server.fsctl("service", "apply", "-f", str(spec), token=admin)
    assert r.returncode == 0, r.stderr
    assert server.fsctl("service", "rm", "quiet", token=admin).returncode == 0

    # An alert rule that fires at once, with a webhook URL carrying secrets in its user info, path and
    # query (as Slack's and Discord's do) and pointing at a closed port, so delivery fails and is logged.
    hook_secret = secrets["webhook path secret"] = "hook-path-S3cret"
    secrets["webhook query secret"] = "hook-query-S3cret"
    secrets["webhook password"] = "hook-Pa55word"
    hook = f"http://hook-user:hook-Pa55word@127.0.0.1:{free_port()}/services/T0/{hook_secret}?token=hook-query-S3cret"
    r = server.api(
        "POST",
        "/api/alerts/rules",
        token=admin,
        json={"name": "always", "metric": "host_load1", "op": ">=", "threshold": -1, "webhook": hook},
    )
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "webhook delivery failed" not in server.log():
        time.sleep(0.2)
    assert "webhook delivery failed" in server.log()

    # Revoke, log out: the calls that name a token by id must not log the token either.
    token_id = server.api("GET", "/api/tokens", token=admin).json()[0]["id"]
    assert server.api("DELETE", f"/api/tokens/{token_id}", token=admin).status_code == 200
    assert server.api("POST", "/api/auth/logout", token=carol).status_code == 204

    assert server.stop() == 0
    captured = _captured(server)
    assert any("auth.login" in text for text in captured.values())  # the search looks at the right places
    leaks = [
        f"{name} in {where}" for name, value in secrets.items() for where, text in captured.items() if value in text
    ]
    assert not leaks, "secrets found in logs:\n  " + "\n  ".join(leaks)
