"""Authentication, roles, tokens and the audit log through the real API and CLI."""

import time

import httpx


def test_first_run_password_logs_in_with_the_cli(server):
    r = server.fsctl("login", "--user", "admin", "--password-stdin", input=server.admin_password + "\n", token=None)
    assert r.returncode == 0, r.stderr
    assert "logged in to" in r.stdout and "as admin (admin)" in r.stdout
    # The saved session is used by later commands without --token.
    r = server.fsctl("status", token=None)
    assert r.returncode == 0, r.stderr
    assert "admin (admin)" in r.stdout and "console" in r.stdout


def test_cli_says_not_logged_in_and_not_running(server, tmp_path):
    r = server.fsctl("token", "ls", token=None)
    assert r.returncode == 1 and "not logged in" in r.stderr and "fsctl login" in r.stderr
    env_server = server.env.copy()
    server.env["XDG_CONFIG_HOME"] = str(tmp_path / "empty")
    r = server.fsctl("status", "--server", "http://127.0.0.1:1", token=None)
    server.env = env_server
    assert r.returncode == 1 and "cannot reach the Infra-Core server" in r.stderr and "fsctl serve" in r.stderr


def test_wrong_passwords_are_throttled_with_429(server):
    url = f"{server.url}/api/auth/login"
    codes = [
        httpx.post(url, json={"username": "admin", "password": f"wrong-{i}"}, timeout=30).status_code for i in range(5)
    ]
    assert codes == [401] * 5
    r = httpx.post(url, json={"username": "admin", "password": server.admin_password}, timeout=30)
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "throttled"
    assert int(r.headers["Retry-After"]) >= 1
    assert "too many failed logins" in r.json()["error"]["message"]


def test_viewer_cannot_mutate(server):
    r = server.api("POST", "/api/users", json={"username": "vic", "password": "viewer-pass-1", "role": "viewer"})
    assert r.status_code == 200, r.text
    viewer = server.login("vic", "viewer-pass-1")
    assert server.api("GET", "/api/users", token=viewer).status_code == 200
    for method, path, body in [
        ("POST", "/api/tokens", {"name": "x"}),
        ("POST", "/api/users", {"username": "eve", "password": "password-123"}),
        ("DELETE", "/api/users/admin", None),
    ]:
        r = server.api(method, path, token=viewer, json=body)
        assert r.status_code == 403, (method, path, r.text)
        assert r.json()["error"]["code"] == "forbidden"
    audit = [a for a in server.api("GET", "/api/audit?actor=vic").json() if a["action"] != "auth.login"]
    assert [a["outcome"] for a in audit] == ["denied"] * 3
    assert [a["status"] for a in audit] == [403] * 3
    assert server.api("GET", "/api/audit", token=viewer).status_code == 403  # the audit log is admin-only


def test_expired_and_revoked_tokens_are_refused(server):
    r = server.api("POST", "/api/tokens", json={"name": "short", "role": "viewer", "expires_in_s": 1})
    short = r.json()["token"]
    r = server.api("POST", "/api/tokens", json={"name": "long", "role": "admin"})
    long_token, long_id = r.json()["token"], r.json()["id"]
    assert server.api("GET", "/api/status", token=long_token).status_code == 200
    assert server.api("DELETE", f"/api/tokens/{long_id}").json()["state"] == "revoked"
    r = server.api("GET", "/api/status", token=long_token)
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
    time.sleep(1.2)
    r = server.api("GET", "/api/status", token=short)
    assert r.status_code == 401 and "expired" in r.json()["error"]["message"]
    assert server.api("GET", "/api/status", token="ic_made_up").status_code == 401
    assert server.api("GET", "/api/status", token=None).status_code == 401


def test_token_commands_and_every_mutation_is_audited(server):
    r = server.fsctl("token", "create", "--name", "deploy-bot", "--role", "viewer", "--expires", "7d", "--json")
    assert r.returncode == 0, r.stderr
    import json

    created = json.loads(r.stdout)
    assert created["token"].startswith("ic_") and created["role"] == "viewer"
    r = server.fsctl("token", "ls")
    assert "deploy-bot" in r.stdout and created["token"] not in r.stdout
    assert server.fsctl("token", "revoke", str(created["id"])).returncode == 0
    r = server.fsctl("user", "add", "ops", "--role", "admin", "--password-stdin", input="ops-password-1\n")
    assert r.returncode == 0, r.stderr
    r = server.fsctl("user", "passwd", "ops", "--password-stdin", input="ops-password-2\n")
    assert r.returncode == 0, r.stderr
    assert "ops" in server.fsctl("user", "ls").stdout
    audit = json.loads(server.fsctl("audit", "--json", "--limit", "100").stdout)
    actions = [a["action"] for a in reversed(audit)]
    assert actions == ["auth.login", "token.create", "token.revoke", "user.add", "user.passwd"]
    assert all(a["actor"] == "admin" and a["outcome"] == "ok" and a["client_ip"] == "127.0.0.1" for a in audit)
    revoke = next(a for a in audit if a["action"] == "token.revoke")
    assert revoke["before"]["state"] == "active" and revoke["after"]["state"] == "revoked"
    text = json.dumps(audit)
    assert created["token"] not in text and "ops-password" not in text  # secrets never reach the audit log
    assert "ops-password" not in server.log() and created["token"] not in server.log()


def test_unix_socket_is_admin_for_the_local_root(server):
    sock = str(server.data_dir / "console.sock")
    r = server.fsctl("status", "--server", f"unix:{sock}", token=None)
    assert r.returncode == 0, r.stderr
    assert "local:uid=" in r.stdout


def test_two_factor_login_through_the_api_and_cli(server):
    import json

    import pyotp

    r = server.fsctl("user", "add", "tess", "--role", "viewer", "--password-stdin", input="tess-password\n")
    assert r.returncode == 0, r.stderr
    tess = server.login("tess", "tess-password")
    enrol = server.api("POST", "/api/users/tess/totp", token=tess).json()
    totp = pyotp.TOTP(enrol["secret"])
    # Confirm with the previous step's code (accepted: one step of drift), so the current one is unused.
    r = server.api("POST", "/api/users/tess/totp/confirm", token=tess, json={"code": totp.at(time.time() - 30)})
    assert r.status_code == 200, r.text
    r = httpx.post(f"{server.url}/api/auth/login", json={"username": "tess", "password": "tess-password"}, timeout=30)
    assert r.status_code == 401 and r.json()["error"]["code"] == "otp_required"
    r = server.fsctl(
        "login", "--user", "tess", "--password-stdin", "--otp", totp.now(), input="tess-password\n", token=None
    )
    assert r.returncode == 0, r.stderr
    users = json.loads(server.fsctl("user", "ls", "--json").stdout)
    assert next(u for u in users if u["username"] == "tess")["totp"] is True
    audit = server.api("GET", "/api/audit?action=user.totp.*").json()
    assert [a["action"] for a in reversed(audit)] == ["user.totp.begin", "user.totp.enable"]
    assert enrol["secret"] not in json.dumps(audit) and enrol["secret"] not in server.log()
