"""Damage, crashes and concurrency: a flipped byte or a truncated pack is caught by scrub and restore
naming the file; a backup killed with SIGKILL leaves a consistent repository that the next run reuses;
prune never runs beside a backup and never drops a referenced chunk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from snap.backup import BackupRequest, run_backup
from snap.errors import RepositoryLocked
from snap.maintenance import forget, prune, scrub
from snap.repo import Repository
from snap.restore import run_restore
from snap.retention import RetentionPolicy
from tests.snap.helpers import digest

ROOT = Path(__file__).resolve().parents[2]


def _src(tmp_path: Path, files: int = 4, mib: int = 3) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(files):
        (src / f"f{i}.bin").write_bytes(os.urandom(mib * 1024 * 1024))
    (src / "small.txt").write_text("small\n")
    return src


def _pack_of(repo: Repository, path: str) -> str:
    from snap.repo import iter_lines
    from snap.tree import check_entry

    snap = repo.snapshots()[-1]
    for line in iter_lines(repo, snap.tree):
        e = check_entry(line)
        if e["path"] == path.lstrip("/"):
            return repo.index[bytes.fromhex(e["chunks"][0])].pack
    raise AssertionError(path)


def test_flipped_byte_is_caught_by_scrub_and_restore(tmp_path: Path) -> None:
    src = _src(tmp_path)
    repo = Repository.init(
        tmp_path / "repo",
    )
    snap = run_backup(repo, BackupRequest(paths=[str(src)], plan="p"))
    pack = _pack_of(repo, str(src / "f2.bin"))
    ref = next(r for r in repo.index.values() if r.pack == pack)
    p = repo.pack_path(pack)
    data = bytearray(p.read_bytes())
    data[ref.offset + ref.length // 2] ^= 0x01
    os.chmod(p, 0o600)
    p.write_bytes(bytes(data))

    rep = scrub(Repository.open(tmp_path / "repo"))
    assert not rep.ok
    assert any(d["pack"] == pack for d in rep.damaged_packs)
    assert rep.damaged_blobs and all(d["pack"] == pack for d in rep.damaged_blobs)
    affected = {path for a in rep.affected for path in a["paths"]}
    assert str(src / "f2.bin") in affected or any(str(src / f"f{i}.bin") in affected for i in range(4))
    assert rep.affected[0]["snapshot"] == snap.id

    res = run_restore(Repository.open(tmp_path / "repo"), snap.id, tmp_path / "r")
    assert not res.ok
    damaged = {d["path"] for d in res.damaged}
    assert damaged == {a.lstrip("/") for a in affected}
    assert all("does not match" in d["error"] or "decompress" in d["error"] for d in res.damaged)
    # the damaged files are not left behind; the rest is restored exactly
    got = tmp_path / "r" / str(src).lstrip("/")
    for f in src.iterdir():
        rel = str(f).lstrip("/")
        if rel in damaged:
            assert not (got / f.name).exists()
        else:
            assert (got / f.name).read_bytes() == f.read_bytes()


def test_truncated_pack(tmp_path: Path) -> None:
    src = _src(tmp_path, files=2, mib=5)
    repo = Repository.init(tmp_path / "repo")
    snap = run_backup(repo, BackupRequest(paths=[str(src)]))
    pack = _pack_of(repo, str(src / "f1.bin"))
    p = repo.pack_path(pack)
    os.truncate(p, p.stat().st_size // 2)
    rep = scrub(Repository.open(tmp_path / "repo"))
    assert not rep.ok
    assert any("truncated" in d["error"] or "trailer" in d["error"] for d in rep.damaged_packs + rep.damaged_blobs)
    res = run_restore(Repository.open(tmp_path / "repo"), snap.id, tmp_path / "r")
    assert not res.ok
    assert any("truncated" in d["error"] for d in res.damaged)
    assert (tmp_path / "r" / str(src).lstrip("/") / "small.txt").read_text() == "small\n"


def test_sample_scrub_of_a_healthy_repository(tmp_path: Path) -> None:
    src = _src(tmp_path, files=6, mib=3)
    repo = Repository.init(tmp_path / "repo")
    run_backup(repo, BackupRequest(paths=[str(src)]))
    rep = scrub(repo, fraction=0.5, seed=1)
    assert rep.ok and 1 <= rep.packs_checked < rep.packs_total


_CHILD = """
import sys
from snap.backup import BackupRequest, run_backup
from snap.repo import Repository
repo = Repository.open(__import__('pathlib').Path(sys.argv[1]))
print("started", flush=True)
run_backup(repo, BackupRequest(paths=[sys.argv[2]], plan="p", rate_limit_bytes_s=float(sys.argv[3])))
print("done", flush=True)
"""


def _child(repo: Path, src: Path, rate: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(repo), str(src), str(rate)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _close_pipes(child: subprocess.Popen[str]) -> None:
    """Its stdout and stderr: left open, each was a ResourceWarning in whichever later test the GC ran."""
    for pipe in (child.stdout, child.stderr):
        if pipe is not None:
            pipe.close()


def _wait_for(cond: Callable[[], object], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_sigkill_mid_backup_then_rerun_reuses_and_scrub_passes(tmp_path: Path) -> None:
    src = _src(tmp_path, files=8, mib=4)  # 32 MiB of random data: four or five packs
    Repository.init(tmp_path / "repo")
    child = _child(tmp_path / "repo", src, 8e6)  # ~4 s at 8 MB/s
    repo_path = tmp_path / "repo"
    try:
        _wait_for(
            lambda: len(Repository.open(repo_path).list_packs()) >= 2 if (repo_path / "packs").exists() else False
        )
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        _close_pipes(child)
    repo = Repository.open(repo_path)  # indexes the packs the killed run left
    assert repo.snapshots() == []
    written = len(repo.index)
    assert written >= 2
    snap = run_backup(repo, BackupRequest(paths=[str(src)], plan="p"))
    assert snap.stats["new_bytes"] <= 32 * 1024 * 1024 - written * 256 * 1024  # reused at least those chunks
    assert scrub(Repository.open(repo_path)).ok
    res = run_restore(repo, snap.id, tmp_path / "r")
    assert res.ok and digest(tmp_path / "r" / str(src).lstrip("/")) == digest(src)


def test_prune_refuses_while_a_backup_runs_and_never_drops_referenced(tmp_path: Path) -> None:
    src = _src(tmp_path, files=6, mib=4)
    repo = Repository.init(tmp_path / "repo")
    old_src = tmp_path / "old"
    old_src.mkdir()
    (old_src / "gone.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    old = run_backup(repo, BackupRequest(paths=[str(old_src)], plan="old"))
    repo.remove_snapshot(old.id)  # its chunks are now garbage for prune
    child = _child(tmp_path / "repo", src, 8e6)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "started"
        _wait_for(lambda: any((tmp_path / "repo" / "locks").iterdir()))
        with pytest.raises(RepositoryLocked, match="backup"):
            prune(Repository.open(tmp_path / "repo"))
        assert child.wait(120) == 0, child.stderr.read() if child.stderr else ""
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        _close_pipes(child)
    repo = Repository.open(tmp_path / "repo")
    rep = prune(repo)
    assert rep.packs_deleted + rep.packs_repacked >= 1
    assert scrub(Repository.open(tmp_path / "repo")).ok
    (snap,) = repo.snapshots()
    res = run_restore(repo, snap.id, tmp_path / "r")
    assert res.ok and digest(tmp_path / "r" / str(src).lstrip("/")) == digest(src)


def test_forget_then_prune_repacks_and_keeps_the_rest(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    repo = Repository.init(tmp_path / "repo")
    snaps = []
    for i in range(4):
        (src / f"day{i}.bin").write_bytes(os.urandom(1024 * 1024))
        if i:
            (src / f"day{i - 1}.bin").unlink()
        snaps.append(run_backup(repo, BackupRequest(paths=[str(src)], plan="p")))
    decisions = forget(repo, {"p": RetentionPolicy(last=2)})
    assert [d["keep"] for d in decisions] == [True, True, False, False]
    rep = prune(repo)
    assert rep.blobs_dropped >= 2
    assert scrub(Repository.open(tmp_path / "repo")).ok
    for s in snaps[2:]:
        assert run_restore(repo, s.id, tmp_path / f"r{s.id[:6]}").ok
    assert len(Repository.open(tmp_path / "repo").snapshots()) == 2
