"""A repository is outside input: a hostile or damaged manifest must not make a restore write outside
its target, follow a planted symlink, or crash; bad entries are reported one by one."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from snap.backup import BackupRequest, run_backup
from snap.errors import DamagedData
from snap.maintenance import prune, scrub
from snap.pack import DATA, TREE
from snap.repo import BlobSaver, Repository
from snap.restore import run_restore
from snap.tree import check_entry


def _snapshot(repo: Repository, entries: list[dict], data: bytes = b"payload") -> str:
    saver = BlobSaver(repo)
    cid = repo.crypto.blob_id(data)
    saver.add(cid, DATA, repo.store_form(data), len(data))
    lines = b"".join(json.dumps(e).encode() + b"\n" for e in entries).replace(b'"CHUNK"', f'"{cid.hex()}"'.encode())
    tid = repo.crypto.blob_id(lines)
    saver.add(tid, TREE, repo.store_form(lines), len(lines))
    saver.flush()
    return repo.save_snapshot(time=1.0, plan="evil", paths=["/x"], parent=None, tree=[tid.hex()], stats={}).id


def _e(path: str, kind: str = "file", **kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "path": path,
        "type": kind,
        "mode": 0o100644 if kind == "file" else 0o40755,
        "uid": 0,
        "gid": 0,
        "mtime_ns": 0,
        "size": 7 if kind == "file" else 0,
    }
    if kind == "file":
        base["chunks"] = ["CHUNK"]
    return {**base, **kw}


def test_traversal_and_planted_symlinks_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    repo = Repository.init(tmp_path / "repo")
    sid = _snapshot(
        repo,
        [
            _e("x", "dir"),
            _e("x/ok.txt"),
            _e("x/link", "symlink", target=str(outside), mode=0o120777),
            _e("x/link/pwned.txt"),  # through the symlink just restored
            _e("x/hl", "hardlink", link="x/ok.txt"),
            _e("x/hl2", "hardlink", link="x/nothing-here"),
        ],
    )
    target = tmp_path / "target"
    res = run_restore(repo, sid, target)
    assert not res.ok
    assert (target / "x" / "ok.txt").read_bytes() == b"payload"
    assert os.readlink(target / "x" / "link") == str(outside)
    assert list(outside.iterdir()) == []  # nothing written through the symlink
    bad = {d["path"]: d["error"] for d in res.damaged}
    assert "parent directory is not in the snapshot" in bad["x/link/pwned.txt"]
    assert "not restored" in bad["x/hl2"]
    assert os.stat(target / "x" / "hl").st_ino == os.stat(target / "x" / "ok.txt").st_ino


@pytest.mark.parametrize(
    "entry, fragment",
    [
        (_e("../escape"), "not a plain relative path"),
        (_e("/etc/passwd"), "not a plain relative path"),
        (_e("a/./b"), "not a plain relative path"),
        (_e("a//b"), "not a plain relative path"),
        (_e("nul\x00byte"), "not a plain relative path"),
        (_e("h", "hardlink", link="../../etc/shadow"), "not a plain relative path"),
        (_e("f", mode=-1), "mode must be a non-negative integer"),
        (_e("f", chunks=["zz"]), "bad chunk list"),
        ({"path": "f", "type": "device"}, "malformed"),
        (_e("s", "symlink", target=None), "bad symlink target"),
    ],
)
def test_bad_entries(entry: dict, fragment: str) -> None:
    with pytest.raises(DamagedData, match=fragment):
        check_entry(json.dumps(entry).encode())


def test_a_hostile_entry_stops_the_restore_with_a_precise_error(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "repo")
    sid = _snapshot(repo, [_e("x", "dir"), _e("../../escape")])
    with pytest.raises(DamagedData, match="could escape the target"):
        run_restore(repo, sid, tmp_path / "target")
    assert not (tmp_path / "escape").exists()


def test_garbage_snapshot_and_index_files(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(os.urandom(100_000))
    repo = Repository.init(tmp_path / "repo")
    good = run_backup(repo, BackupRequest(paths=[str(src)]))
    junk = b"not a document"
    (tmp_path / "repo" / "snapshots" / hashlib.sha256(junk).hexdigest()).write_bytes(junk)
    assert [s.id for s in Repository.open(tmp_path / "repo").snapshots()] == [good.id]  # skipped and logged
    # every index file damaged: the packs are re-indexed from their trailers, the data stays restorable
    for f in (tmp_path / "repo" / "index").iterdir():
        f.write_bytes(junk)
    again = Repository.open(tmp_path / "repo")
    assert again.damaged_index_files  # reported; the rebuilt index (same content, same name) replaced it
    assert run_restore(again, good.id, tmp_path / "r").ok
    prune(again)
    assert scrub(Repository.open(tmp_path / "repo")).ok
