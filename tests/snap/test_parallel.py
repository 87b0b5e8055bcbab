"""The parallel backup engine gives the same snapshot as a serial one: many small files processed whole
by several workers, large files cut by the reading thread, results taken back in walk order."""

from __future__ import annotations

import hashlib
import io
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from snap import backup
from snap.backup import BackupRequest, run_backup
from snap.chunker import Chunker
from snap.pack import DATA
from snap.repo import Repository, iter_lines
from snap.restore import run_restore
from snap.tree import check_entry
from tests.snap.helpers import digest, make_tree


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """Hundreds of small files of every size class around the thresholds, a few large ones, the usual
    kinds (links, fifo, empty dirs), in several directories."""
    root = tmp_path / "src"
    root.mkdir()
    make_tree(root / "kinds", large_mib=3)
    rng = random.Random(11)
    cdc_min = Chunker().params.min_size
    sizes = [
        0,
        1,
        4095,
        4096,
        cdc_min - 1,
        cdc_min,
        cdc_min + 1,
        backup.SMALL_FILE - 1,
        backup.SMALL_FILE,
        backup.SMALL_FILE + 1,
    ] + [rng.randint(1, 96 * 1024) for _ in range(300)]
    for i, n in enumerate(sizes):
        d = root / f"d{i % 7}"
        d.mkdir(exist_ok=True)
        text = i % 3 == 0
        data = (b"line %d ok\n" % i * (n // 10 + 1))[:n] if text else rng.randbytes(n)
        (d / f"f{i:04d}").write_bytes(data)
    # the same content under two names: stored once
    (root / "d0" / "dup").write_bytes((root / "d1" / "f0001").read_bytes())
    return root


def _manifest(repo: Repository, tree: list[str]) -> list[dict]:
    return [check_entry(line) for line in iter_lines(repo, tree)]


def _under(repo: Repository, tree: list[str], src: Path) -> list[dict]:
    """The manifest's entries below `src` (its parent directories belong to pytest, which other test
    runs change at any time)."""
    prefix = str(src).lstrip("/") + "/"
    return [e for e in _manifest(repo, tree) if e["path"].startswith(prefix)]


def _packs(repo: Repository) -> set[tuple[str, ...]]:
    """Each pack as the sequence of its data blobs, in offset order (pack names also cover tree blobs)."""
    packs: dict[str, list[tuple[int, str]]] = {}
    for bid, ref in repo.index.items():
        if ref.type == DATA:
            packs.setdefault(ref.pack, []).append((ref.offset, bid.hex()))
    return {tuple(b for _, b in sorted(v)) for v in packs.values()}


def _expected_chunks(path: Path) -> list[str]:
    with open(path, "rb") as f:
        return [hashlib.sha256(c).hexdigest() for c in Chunker().cut_stream(io.BytesIO(f.read()))]


def test_parallel_backup_equals_serial_and_is_deterministic(tmp_path: Path, src: Path) -> None:
    results = []
    for name, workers in (("serial", 1), ("four", 4), ("four-again", 4)):
        repo = Repository.init(tmp_path / name)
        snap = run_backup(repo, BackupRequest(paths=[str(src)], plan="p", workers=workers))
        assert snap.stats["error_count"] == 0
        results.append((repo, snap, _packs(repo)))
    (r1, s1, p1), (r4, s4, p4), (r4b, s4b, p4b) = results
    # the same manifest (same entries in the same order) and the same packs: blobs reach the packs in
    # walk order whatever the threads' timing
    assert _under(r1, s1.tree, src) == _under(r4, s4.tree, src) == _under(r4b, s4b.tree, src)
    assert p1 == p4 == p4b and len(p1) >= 2
    entries = _manifest(r4, s4.tree)
    paths = [e["path"] for e in entries]
    assert paths == sorted(paths, key=lambda p: p.split("/"))  # walk order: depth first, names sorted
    files = {e["path"]: e for e in entries if e["type"] == "file"}
    assert len(files) > 300
    for rel, e in files.items():
        real = Path("/" + rel)
        assert e["chunks"] == _expected_chunks(real), rel  # the chunks a plain serial cut gives
        assert e["size"] == real.stat().st_size
    target = tmp_path / "restore"
    assert run_restore(r4, s4.id, target).ok
    assert digest(target / str(src).lstrip("/")) == digest(src)


def test_small_file_that_grew_is_read_again_as_a_stream(
    tmp_path: Path, src: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file small when walked but larger than a worker may hold when read (it grew in between) is
    re-read by the streaming path, not cut short or dropped. The cap is lowered to make every
    small file above 2 KiB take that path."""
    repo, repo2 = Repository.init(tmp_path / "ref"), Repository.init(tmp_path / "capped")
    ref = run_backup(repo, BackupRequest(paths=[str(src)], plan="p", workers=3))
    monkeypatch.setattr(backup, "_SMALL_READ_CAP", 2048)
    snap = run_backup(repo2, BackupRequest(paths=[str(src)], plan="p", workers=3))
    assert snap.stats["error_count"] == 0
    assert _under(repo2, snap.tree, src) == _under(repo, ref.tree, src)


def test_read_small_refuses_what_it_cannot_hold_or_is_no_regular_file(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x" * 5000)
    assert backup._read_small(str(f), 4999) == "grew"
    got = backup._read_small(str(f), 5000)
    assert isinstance(got, tuple) and got[0] == b"x" * 5000
    os.mkfifo(tmp_path / "fifo")
    assert backup._read_small(str(tmp_path / "fifo"), 100) is None  # not waited on
    os.symlink(f, tmp_path / "link")
    assert backup._read_small(str(tmp_path / "link"), 10_000) is None  # not followed
    assert backup._read_small(str(tmp_path / "gone"), 100) is None


def test_read_small_of_a_file_that_grew_huge_holds_at_most_the_cap(tmp_path: Path) -> None:
    """A file small when walked may be hundreds of MiB when a worker opens it (or grow while it is
    read): the worker reads at most `cap + 1` bytes, never the whole file (sparse here: no disk used)."""
    import tracemalloc

    f = tmp_path / "huge"
    with open(f, "wb") as out:
        out.truncate(300 * 1024 * 1024)
    tracemalloc.start()
    try:
        assert backup._read_small(str(f), 4 * 1024 * 1024) == "grew"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024, peak  # the old read took st_size + 1 = 300 MiB at once


def test_a_small_file_that_grew_huge_is_streamed_in_bounded_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a whole backup: a file walked at 1 KiB that is 300 MiB (sparse) when read is streamed, the
    snapshot holds it whole, and memory stays far below its size."""
    import tracemalloc

    src = tmp_path / "src"
    src.mkdir()
    for k in range(40):
        (src / f"a{k:02}").write_bytes(os.urandom(3000))
    grow = src / "b-grows"
    grow.write_bytes(b"x" * 1024)
    (src / "c").write_bytes(b"after")
    repo = Repository.init(tmp_path / "repo")
    real_walk = backup.walk

    def walk_then_grow(*args: Any, **kwargs: Any) -> Iterator[Any]:
        for entry, abspath in real_walk(*args, **kwargs):
            if abspath == str(grow):  # walked (stat taken) at 1 KiB; 300 MiB before any worker reads it
                with open(grow, "r+b") as out:
                    out.truncate(300 * 1024 * 1024)
            yield entry, abspath

    # The walk is the real one over the real files: only the moment the file grows is fixed here.
    monkeypatch.setattr(backup, "walk", walk_then_grow)
    tracemalloc.start()
    try:
        snap = run_backup(repo, BackupRequest(paths=[str(src)], plan="p", workers=2))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert snap.stats["error_count"] == 0
    assert peak < 150 * 1024 * 1024, peak
    tree = _under(repo, snap.tree, src)
    entry = next(e for e in tree if e["path"].endswith("b-grows"))
    assert entry["size"] == 300 * 1024 * 1024


def test_a_cancel_drops_the_queued_reads(tmp_path: Path) -> None:
    """Cancelled while reads are queued: the queued ones are dropped, not run before the cancel is told.
    Which files were read is seen in their access times (relatime: a read sets an atime older than
    the mtime)."""
    import threading

    src = tmp_path / "src"
    src.mkdir()
    files = []
    for k in range(40):
        f = src / f"f{k:02}"
        f.write_bytes(os.urandom(1024 * 1024))
        os.utime(f, (1_000_000, f.stat().st_mtime))
        files.append(f)
    if os.stat(files[0]).st_atime != 1_000_000:
        pytest.skip("cannot set access times here")
    cancel = threading.Event()
    with pytest.raises(backup.Cancelled):
        run_backup(
            Repository.init(tmp_path / "repo"),
            BackupRequest(paths=[str(src)], plan="p", workers=1),
            cancel=cancel,
            on_chunk=cancel.set,
        )
    read = [f.name for f in files if os.stat(f).st_atime != 1_000_000]
    if not read:
        pytest.skip("access times are not updated on read here")
    # At the cancel up to 18 reads were queued (16 * workers + 2); one may be running.
    assert len(read) <= 6, read
