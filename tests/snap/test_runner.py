"""The job runner's protocol, as a real child process: progress lines then one result line; bad
requests get one precise error line; SIGTERM stops a backup, which keeps what it wrote."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from snap.repo import Repository

ROOT = Path(__file__).resolve().parents[2]


def _run(req: str) -> tuple[int, list[dict]]:
    p = subprocess.run(
        [sys.executable, "-m", "snap.runner"], input=req, capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    return p.returncode, [json.loads(line) for line in p.stdout.splitlines()]


def test_backup_then_scrub(tmp_path: Path) -> None:
    Repository.init(tmp_path / "repo")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_bytes(os.urandom(200_000))
    rc, lines = _run(
        json.dumps(
            {
                "op": "backup",
                "repo": str(tmp_path / "repo"),
                "nice": 5,
                "cpus": 1,
                "params": {"paths": [str(tmp_path / "src")], "plan": "p"},
            }
        )
    )
    assert rc == 0 and lines[-1]["result"]["stats"]["new_bytes"] == 200_000
    assert all("progress" in x for x in lines[:-1])
    rc, lines = _run(json.dumps({"op": "scrub", "repo": str(tmp_path / "repo"), "params": {"fraction": 1.0}}))
    assert rc == 0 and lines[-1]["result"]["ok"] is True


def test_bad_requests(tmp_path: Path) -> None:
    rc, lines = _run("{not json")
    assert rc == 2 and lines == [{"error": {"code": "bad_request", "message": lines[0]["error"]["message"]}}]
    assert "not JSON" in lines[0]["error"]["message"]
    rc, lines = _run(json.dumps({"op": "backup", "repo": str(tmp_path / "nothing"), "params": {}}))
    assert rc == 1 and lines[-1]["error"]["code"] == "snap_repository"
    assert "not a snap repository" in lines[-1]["error"]["message"]
    Repository.init(tmp_path / "repo")
    rc, lines = _run(json.dumps({"op": "explode", "repo": str(tmp_path / "repo"), "params": {}}))
    assert rc == 1 and "unknown snap operation 'explode'" in lines[-1]["error"]["message"]


def test_sigterm_stops_a_backup_and_keeps_its_packs(tmp_path: Path) -> None:
    Repository.init(tmp_path / "repo")
    (tmp_path / "src").mkdir()
    for i in range(3):
        (tmp_path / "src" / f"f{i}").write_bytes(os.urandom(8 * 1024 * 1024))
    req = {
        "op": "backup",
        "repo": str(tmp_path / "repo"),
        "params": {"paths": [str(tmp_path / "src")], "rate_limit_bytes_s": 6e6},
    }
    p = subprocess.Popen(
        [sys.executable, "-m", "snap.runner"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    assert p.stdin is not None and p.stdout is not None
    p.stdin.write(json.dumps(req))
    p.stdin.close()
    deadline = time.monotonic() + 60
    while True:
        line = json.loads(p.stdout.readline())
        if line.get("progress", {}).get("stored_bytes", 0) > 9 * 1024 * 1024:
            break
        assert time.monotonic() < deadline
    p.send_signal(signal.SIGTERM)
    last = [json.loads(x) for x in p.stdout.read().splitlines()][-1]
    assert p.wait(30) == 1 and last["error"]["code"] == "cancelled"
    p.stdout.close()
    repo = Repository.open(tmp_path / "repo")
    assert repo.snapshots() == [] and len(repo.index) >= 8  # its packs are indexed, ready for reuse
    assert not repo.damaged_index_files and not list((tmp_path / "repo" / "locks").iterdir())
