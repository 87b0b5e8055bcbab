"""Upgrades: today's release started on a data dir the previous release made (tests/fixtures/datadir-r1)
backs its databases up, migrates them and keeps every user, route, service and alert rule; a data dir
from a newer release is refused with a message saying so, and left untouched."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, start_server

FIXTURE = ROOT / "tests" / "fixtures" / "datadir-r1"


def _copy(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(FIXTURE, data, ignore=shutil.ignore_patterns("README.md"))
    data.chmod(0o700)
    return data


def test_the_previous_releases_data_dir_is_backed_up_migrated_and_kept(server_factory: Any, tmp_path: Path) -> None:
    data = _copy(tmp_path)
    before = sqlite3.connect(data / "state.db").execute("SELECT count(*) FROM schema_migrations").fetchone()[0]
    srv = server_factory("data")
    backups = sorted(p.name for p in (data / "upgrade-backups").iterdir())
    assert any(n.startswith("state-") for n in backups), backups
    copy = next((data / "upgrade-backups").glob("state-*.db"))
    assert sqlite3.connect(copy).execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == before
    after = sqlite3.connect(data / "state.db").execute("SELECT count(*) FROM schema_migrations").fetchone()[0]
    assert after > before  # this release's migrations were applied on top

    assert srv.login("vic", "viewer-pass-1")
    assert [r["host"] for r in srv.api("GET", "/api/routes").json()] == ["old.test"]
    svc = srv.api("GET", "/api/services/sleeper").json()
    assert svc["spec"]["cmd"] == ["sleep", "1000"]
    assert [r["name"] for r in srv.api("GET", "/api/alerts/rules").json()] == ["hot"]
    assert srv.stop() == 0

    again = server_factory("data")  # a second start has nothing to migrate: no new copy
    assert sorted(p.name for p in (data / "upgrade-backups").iterdir()) == backups
    assert again.stop() == 0


def _rows(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT component, version, name FROM schema_migrations ORDER BY 1, 2").fetchall()


def test_a_data_dir_from_a_newer_release_is_refused_and_untouched(server_factory: Any, tmp_path: Path) -> None:
    srv = server_factory("data")  # made by this release, then "upgraded" by a future one
    assert srv.stop() == 0
    data = srv.data_dir
    with sqlite3.connect(data / "state.db") as db:
        db.execute("INSERT INTO schema_migrations (component, version, name) VALUES ('gate', 999, 'from the future')")
    rows = _rows(data / "state.db")
    srv = start_server(data, wait=False)
    try:
        assert srv.proc.wait(60) != 0
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
    log = srv.log()
    assert "the gate schema is at version 999, newer than this release knows" in log, log[-2000:]
    assert _rows(data / "state.db") == rows
    assert not (data / "upgrade-backups").exists()
