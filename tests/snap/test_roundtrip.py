"""Backup and restore end to end on a real directory tree: bit-identical round trip with metadata,
deduplication, unchanged-file skip, sub-path restore, refusal to overwrite, encryption."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.errors import Conflict
from snap.backup import BackupRequest, run_backup
from snap.errors import WrongPassphrase
from snap.repo import Repository
from snap.restore import run_restore
from tests.snap.helpers import digest, make_tree


@pytest.fixture
def src(tmp_path: Path) -> Path:
    root = tmp_path / "src" / "app"
    root.mkdir(parents=True)
    make_tree(root)
    return root


def test_round_trip_is_bit_identical_with_metadata(tmp_path: Path, src: Path) -> None:
    repo = Repository.init(tmp_path / "repo")
    snap = run_backup(repo, BackupRequest(paths=[str(src)], plan="p"))
    assert snap.stats["error_count"] == 0
    target = tmp_path / "restore"
    res = run_restore(repo, snap.id, target)
    assert res.ok, res.damaged
    restored = target / str(src).lstrip("/")
    assert digest(restored) == digest(src)
    # hard links are links again, not copies
    assert os.stat(restored / "small.txt").st_ino == os.stat(restored / "hardlink-to-small").st_ino
    assert os.stat(restored / "big.bin").st_ino == os.stat(restored / "docs" / "hard-big").st_ino
    # the parents of the source path exist in the target with their metadata
    assert (target / "tmp").is_dir() or (target / str(src).lstrip("/").split("/")[0]).is_dir()


def test_reopened_repository_reads_the_same(tmp_path: Path, src: Path) -> None:
    repo = Repository.init(tmp_path / "repo")
    snap = run_backup(repo, BackupRequest(paths=[str(src)]))
    again = Repository.open(tmp_path / "repo")
    assert [s.id for s in again.snapshots()] == [snap.id]
    res = run_restore(again, snap.id[:8], tmp_path / "r")
    assert res.ok and digest(tmp_path / "r" / str(src).lstrip("/")) == digest(src)


def test_same_data_under_two_names_is_stored_once(tmp_path: Path) -> None:
    root = tmp_path / "d"
    root.mkdir()
    data = os.urandom(5 * 1024 * 1024)
    (root / "a").write_bytes(data)
    (root / "b").write_bytes(data)  # a copy, not a hard link
    repo = Repository.init(tmp_path / "repo")
    snap = run_backup(repo, BackupRequest(paths=[str(root)]))
    assert snap.stats["read_bytes"] == 2 * len(data)
    assert snap.stats["new_bytes"] == len(data)
    assert snap.stats["stored_bytes"] < len(data) * 1.01 + 4096


def test_second_backup_skips_unchanged_files_and_dedups(tmp_path: Path, src: Path) -> None:
    repo = Repository.init(tmp_path / "repo")
    first = run_backup(repo, BackupRequest(paths=[str(src)], plan="p"))
    second = run_backup(repo, BackupRequest(paths=[str(src)], plan="p"))
    assert second.parent == first.id
    assert second.stats["read_bytes"] == 0
    assert second.stats["unchanged_files"] == first.stats["files"]
    assert second.stats["new_bytes"] == 0
    # a changed file is read again; only its new chunks are stored
    with open(src / "big.bin", "r+b") as f:
        f.seek(3 * 1024 * 1024)
        f.write(b"changed!")
    third = run_backup(repo, BackupRequest(paths=[str(src)], plan="p"))
    assert third.stats["read_bytes"] == (src / "big.bin").stat().st_size
    assert 0 < third.stats["new_bytes"] <= 4 * 1024 * 1024 + 8
    res = run_restore(repo, third.id, tmp_path / "r3")
    assert res.ok and digest(tmp_path / "r3" / str(src).lstrip("/")) == digest(src)


def test_insert_in_the_middle_of_a_large_file_reuses_most_chunks(tmp_path: Path) -> None:
    root = tmp_path / "d"
    root.mkdir()
    data = os.urandom(24 * 1024 * 1024)
    (root / "big").write_bytes(data)
    repo = Repository.init(tmp_path / "repo")
    run_backup(repo, BackupRequest(paths=[str(root)], plan="p"))
    mid = len(data) // 2
    (root / "big").write_bytes(data[:mid] + b"an insert" * 1000 + data[mid:])
    snap = run_backup(repo, BackupRequest(paths=[str(root)], plan="p"))
    assert snap.stats["new_bytes"] < 0.25 * len(data), snap.stats


def test_sub_path_restore_and_no_overwrite(tmp_path: Path, src: Path) -> None:
    repo = Repository.init(tmp_path / "repo")
    snap = run_backup(repo, BackupRequest(paths=[str(src)]))
    target = tmp_path / "sub"
    res = run_restore(repo, snap.id, target, sub_path=str(src / "docs"))
    assert res.ok
    got = target / str(src).lstrip("/")
    assert (got / "docs" / "deep" / "deeper" / "note.md").read_text() == "# note\n" * 100
    assert not (got / "small.txt").exists()
    with pytest.raises(Conflict, match="not empty"):
        run_restore(repo, snap.id, target)
    res = run_restore(repo, snap.id, target, force=True)
    assert res.ok and digest(got) == digest(src)


def test_excludes(tmp_path: Path, src: Path) -> None:
    repo = Repository.init(tmp_path / "repo")
    snap = run_backup(repo, BackupRequest(paths=[str(src)], excludes=["*.log", "docs/deep"]))
    res = run_restore(repo, snap.id, tmp_path / "r")
    got = tmp_path / "r" / str(src).lstrip("/")
    assert res.ok
    assert not (got / "compressible.log").exists()
    assert (got / "docs").is_dir() and not (got / "docs" / "deep").exists()


def test_encrypted_repository(tmp_path: Path, src: Path) -> None:
    repo = Repository.init(tmp_path / "repo", encryption="aes-256-gcm", passphrase=b"correct horse")
    snap = run_backup(repo, BackupRequest(paths=[str(src)]))
    with pytest.raises(WrongPassphrase):
        Repository.open(tmp_path / "repo", passphrase=b"wrong")
    again = Repository.open(tmp_path / "repo", passphrase=b"correct horse")
    res = run_restore(again, snap.id, tmp_path / "r")
    assert res.ok and digest(tmp_path / "r" / str(src).lstrip("/")) == digest(src)
    # nothing readable at rest: the log's text appears in no pack
    for pack in again.list_packs():
        assert b"status=ok" not in again.pack_path(pack).read_bytes()


def test_a_replaced_file_with_the_same_size_and_mtime_is_read_again(tmp_path: Path) -> None:
    root = tmp_path / "d"
    root.mkdir()
    f = root / "config.db"
    f.write_bytes(b"A" * 100_000)
    os.utime(f, ns=(1_700_000_000_000_000_000,) * 2)
    repo = Repository.init(tmp_path / "repo")
    run_backup(repo, BackupRequest(paths=[str(root)], plan="p"))
    tmp = root / "config.db.new"
    tmp.write_bytes(b"B" * 100_000)  # same size, same mtime below, but a new inode (write + rename)
    os.utime(tmp, ns=(1_700_000_000_000_000_000,) * 2)
    os.replace(tmp, f)
    snap = run_backup(repo, BackupRequest(paths=[str(root)], plan="p"))
    assert snap.stats["unchanged_files"] == 0 and snap.stats["read_bytes"] == 100_000
    assert run_restore(repo, snap.id, tmp_path / "r").ok
    assert (tmp_path / "r" / str(f).lstrip("/")).read_bytes() == b"B" * 100_000
