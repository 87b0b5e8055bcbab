"""A change the API acknowledged survives `kill -9`, and the database stays sound."""

import sqlite3

from tests.conftest import start_server


def test_kill_9_right_after_an_acknowledged_mutation(tmp_path):
    data = tmp_path / "data"
    srv = start_server(data)
    r = srv.api("POST", "/api/users", json={"username": "durable", "password": "durable-pass", "role": "viewer"})
    assert r.status_code == 200
    token = srv.api("POST", "/api/tokens", json={"name": "kept", "role": "admin"}).json()["token"]
    srv.proc.kill()  # SIGKILL: no drain, no close
    srv.proc.wait()

    with sqlite3.connect(data / "state.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    again = start_server(data, console_port=srv.console_port)
    try:
        users = again.api("GET", "/api/users", token=token).json()
        assert "durable" in [u["username"] for u in users]
        assert again.api("GET", "/api/status", token=token).status_code == 200
        assert again.login("durable", "durable-pass")
        audit = again.api("GET", "/api/audit", token=token).json()
        assert "user.add" in [a["action"] for a in audit]
        assert not (data / "initial-admin-password").read_text() == ""  # no second admin was created
        assert [u["username"] for u in users].count("admin") == 1
    finally:
        assert again.stop() == 0
    with sqlite3.connect(data / "state.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
