"""A full disk under the data dir: mutating calls and logins answer 507 naming the data dir, the
attempts stay in the audit log (waiting in memory, written once space is back). Real `fsctl serve` with
its data dir on a small tmpfs (needs root to mount; skipped otherwise)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48m,mode=0700", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(path: Path) -> Path:
    ballast = path / "ballast"
    with open(ballast, "wb", buffering=0) as f:
        for size in (1 << 20, 1 << 12, 1 << 9):
            chunk = b"\0" * size
            try:
                while True:
                    f.write(chunk)
            except OSError as e:
                assert e.errno == 28, e  # ENOSPC
    return ballast


def _written(data_dir: Path, target: str) -> bool:
    db = sqlite3.connect(f"file:{data_dir / 'state.db'}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute("SELECT COUNT(*) FROM audit WHERE target = ?", (target,)).fetchone()[0] > 0
    finally:
        db.close()


def test_full_disk_answers_507_and_keeps_the_audit(server_factory, small_disk):
    server = server_factory(extra_args=["--data-dir", str(small_disk / "data")])
    server.data_dir = small_disk / "data"
    try:
        token = server.login()
        ballast = _fill(small_disk)
        r = server.api(
            "POST",
            "/api/users",
            token=token,
            json={"username": "while-full", "password": "a-password-1", "role": "viewer"},
        )
        assert r.status_code == 507, r.text
        err = r.json()["error"]
        assert err["code"] == "insufficient_storage"
        assert str(server.data_dir) in err["message"] and err["details"]["data_dir"] == str(server.data_dir)
        assert "free space" in err["details"]["hint"] and err["details"]["request_id"]
        r = httpx.post(
            f"{server.url}/api/auth/login", timeout=30, json={"username": "admin", "password": server.admin_password}
        )
        assert r.status_code == 507, r.text
        assert r.json()["error"]["code"] == "insufficient_storage"

        # The attempts are in the audit log already (waiting in memory)...
        waiting = server.api("GET", "/api/audit?limit=5", token=token).json()
        assert [(a["action"], a["status"], a["pending"]) for a in waiting[:2]] == [
            ("auth.login", 507, True),
            ("user.add", 507, True),
        ]
        assert waiting[1]["target"] == "user:while-full" and waiting[1]["outcome"] == "failed"

        ballast.unlink()  # space is back: a retry writes them without any call, in order, with their own times
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not _written(server.data_dir, "user:while-full"):
            time.sleep(0.2)
        assert _written(server.data_dir, "user:while-full"), server.log()
        r = server.api(
            "POST",
            "/api/users",
            token=token,
            json={"username": "after-full", "password": "a-password-1", "role": "viewer"},
        )
        assert r.status_code == 200, r.text
        audit = server.api("GET", "/api/audit?limit=5", token=token).json()
        got = [(a["action"], a["target"], a["status"], a.get("pending", False)) for a in audit[:3]]
        assert got == [
            ("user.add", "user:after-full", 200, False),
            ("auth.login", "user:admin", 507, False),
            ("user.add", "user:while-full", 507, False),
        ], got
        assert audit[2]["at"] <= audit[1]["at"] <= audit[0]["at"]
        assert all(isinstance(a["id"], int) for a in audit[:3])
        assert server.api("GET", "/api/status", token=token).status_code == 200
    finally:
        rc = server.stop()  # before the tmpfs goes away; a failure above stays the reported one
    assert rc == 0, server.log()
