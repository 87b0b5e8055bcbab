"""Repository locks: shared locks coexist, exclusive ones exclude; a lock left by a dead process or not
refreshed for 30 minutes is stale and removed; a refused locker leaves no lock file behind."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from snap.errors import RepositoryLocked
from snap.repo import Repository


def _plant(repo: Repository, **doc: object) -> Path:
    base = {
        "kind": "shared",
        "pid": os.getpid(),
        "hostname": socket.gethostname(),
        "time": time.time(),
        "op": "backup planted",
    }
    return repo.write_file("locks", json.dumps({**base, **doc}).encode())


def test_shared_locks_coexist_and_exclusive_excludes(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "repo")
    with repo.lock("shared", "a"), repo.lock("shared", "b"):
        with pytest.raises(RepositoryLocked, match="locked by"):
            repo.lock("exclusive", "prune")
        assert len(list((tmp_path / "repo" / "locks").iterdir())) == 2  # the refused one removed its file
    with repo.lock("exclusive", "prune"), pytest.raises(RepositoryLocked, match="prune"):
        repo.lock("shared", "backup")
    assert list((tmp_path / "repo" / "locks").iterdir()) == []


def test_stale_locks_are_ignored_and_removed(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "repo")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    p1 = _plant(repo, pid=int(dead.stdout), kind="exclusive")  # its process is gone
    p2 = _plant(repo, time=time.time() - 31 * 60, hostname="elsewhere")  # not refreshed for 31 min
    with repo.lock("exclusive", "prune"):
        assert not p1.exists() and not p2.exists()


def test_a_live_lock_from_another_host_is_respected(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "repo")
    _plant(repo, hostname="other-host", pid=1)
    with pytest.raises(RepositoryLocked) as e:
        repo.lock("exclusive", "prune")
    assert e.value.details["holder"]["hostname"] == "other-host"
    assert e.value.hint and "wait" in e.value.hint
