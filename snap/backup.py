"""The backup engine: walk the sources, cut files into chunks, hash and compress new chunks in worker
threads, pack them, write the tree and then the snapshot (docs/snap-format.md, "Crash consistency").

Synchronous: run it in a thread (the service does), never on the event loop. The work runs in a small
thread pool (hashlib, zstd and pyfastcdc's cutting loop release the GIL): a small file (≤ `SMALL_FILE`)
is read, cut, hashed and compressed whole by one worker, so many small files are processed in
parallel; a large file is read and cut by the calling thread, its chunks hashed and compressed in the
pool. Results are taken in walk order, so the manifest and the packs' contents do not depend on
timing. In-flight work is bounded by `INFLIGHT_BYTES` (and a count), which bounds memory.
"""

from __future__ import annotations

import functools
import os
import stat
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import structlog

from snap.chunker import Chunker
from snap.errors import DamagedData
from snap.pack import DATA, TREE
from snap.repo import BlobSaver, Repository, SnapshotInfo, iter_lines
from snap.tree import Entry, TreeWriter, check_entry, walk

log = structlog.get_logger("snap.backup")

SMALL_FILE = 1024 * 1024  # files up to this size (when walked) are processed whole by one worker
_SMALL_READ_CAP = 4 * SMALL_FILE  # a "small" file that grew past this while queued is re-read as a stream
INFLIGHT_BYTES = 32 * 1024 * 1024  # plaintext bytes submitted to the pool and not yet taken back


class Cancelled(Exception):
    """The backup was asked to stop; what it wrote stays and is reused by the next run."""


@dataclass
class BackupRequest:
    paths: list[str]
    plan: str = ""
    excludes: list[str] = field(default_factory=list)
    rate_limit_bytes_s: float | None = None
    parent: str | None = "auto"  # "auto": the newest snapshot of the same plan and paths; None: none
    workers: int = 2


@dataclass
class Progress:
    """Live figures, updated by the backup thread and read by anyone (plain ints: torn reads are harmless)."""

    files: int = 0
    dirs: int = 0
    bytes: int = 0  # bytes of file contents covered so far (read, or reused from the parent)
    read_bytes: int = 0  # bytes actually read from disk
    new_bytes: int = 0  # plaintext bytes of chunks the repository did not have
    stored_bytes: int = 0  # bytes added to packs (compressed, sealed)
    unchanged_files: int = 0
    errors: list[str] = field(default_factory=list)
    current: str = ""
    started: float = 0.0
    expected_bytes: int = 0  # the parent snapshot's size, for a progress bar (0: unknown)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["errors"] = self.errors[:50]
        d["error_count"] = len(self.errors)
        return d


class _RateLimiter:
    def __init__(self, bytes_per_s: float | None, cancel: threading.Event) -> None:
        self.rate = bytes_per_s
        self.cancel = cancel
        self.t0 = time.monotonic()
        self.done = 0

    def take(self, n: int) -> None:
        if not self.rate:
            return
        self.done += n
        ahead = self.done / self.rate - (time.monotonic() - self.t0)
        if ahead > 0:
            self.cancel.wait(ahead)


def find_parent(repo: Repository, plan: str, paths: list[str]) -> SnapshotInfo | None:
    same = [s for s in repo.snapshots() if s.plan == plan and sorted(s.paths) == sorted(paths)]
    return same[-1] if same else None


def _parent_files(repo: Repository, parent: SnapshotInfo | None) -> dict[str, tuple[int, int, int, list[str]]]:
    """path -> (size, mtime_ns, inode, chunks) of the parent's files: tuples, not entry dicts, to keep a
    parent of a million files in a few hundred MB rather than gigabytes."""
    if parent is None:
        return {}
    out: dict[str, tuple[int, int, int, list[str]]] = {}
    try:
        for line in iter_lines(repo, parent.tree):
            e = check_entry(line)
            if e["type"] == "file":
                out[e["path"]] = (e["size"], e["mtime_ns"], e.get("inode", -1), e["chunks"])
    except DamagedData as e:
        log.warning("parent snapshot unreadable; reading every file", parent=parent.id, error=e.message)
        return {}
    return out


def run_backup(
    repo: Repository,
    req: BackupRequest,
    *,
    now: float | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    on_chunk: Callable[[], None] | None = None,
) -> SnapshotInfo:
    """Back up `req.paths` into `repo` under a shared lock; returns the new snapshot.

    Files that cannot be read are recorded in `stats.errors` and left out; the snapshot is still
    written. On `cancel` (or any exception) the packs written so far are flushed and indexed, then
    `Cancelled` (or the exception) propagates and no snapshot is written.
    """
    progress = progress or Progress()
    cancel = cancel or threading.Event()
    progress.started = time.time() if now is None else now
    t0 = time.monotonic()
    paths = sorted({os.path.normpath(os.path.abspath(p)) for p in req.paths})
    with repo.lock("shared", f"backup {req.plan or paths}") as lock:
        repo.load_index()  # packs of other runs since we opened, and of interrupted ones
        parent = (
            find_parent(repo, req.plan, paths)
            if req.parent == "auto"
            else (repo.snapshot(req.parent) if req.parent else None)
        )
        old = _parent_files(repo, parent)
        progress.expected_bytes = int(parent.stats.get("bytes", 0)) if parent else 0
        saver = BlobSaver(repo)
        chunker = Chunker(repo.chunker_params)
        limiter = _RateLimiter(req.rate_limit_bytes_s, cancel)
        tree_ids: list[str] = []

        def emit_tree(chunk: bytes) -> None:
            bid = repo.crypto.blob_id(chunk)
            if not saver.known(bid):
                saver.add(bid, TREE, repo.store_form(chunk), len(chunk))
            tree_ids.append(bid.hex())

        tree = TreeWriter(Chunker(repo.chunker_params), emit_tree)
        pending: deque[Entry] = deque()  # entries in walk order, waiting for their chunks
        # (future, entry, chunk index or -1 for a whole small file, plaintext bytes it holds)
        inflight: deque[tuple[Future[Any], Entry, int, int]] = deque()
        held = [0]  # plaintext bytes in `inflight`
        max_items = 16 * req.workers + 2
        redo: list[tuple[str, Entry]] = []  # small files that grew past the cap: re-read as streams
        local = threading.local()

        def work(data: bytes) -> tuple[bytes, int, bytes | None]:
            bid = repo.crypto.blob_id(data)
            if saver.known(bid):  # a racy read is fine: at worst a chunk is compressed twice, stored once
                return bid, len(data), None
            return bid, len(data), repo.store_form(data)

        extra, extra_lock = [0], threading.Lock()  # bytes workers hold beyond what `held` counted for them

        def work_file(
            abspath: str, counted: int = 0
        ) -> tuple[list[tuple[bytes, int, bytes | None]], int, int, int] | str | None:
            """A whole small file: its chunks (id, length, stored form or None when known), size, mtime and
            the bytes beyond `counted` it holds; "grew" when it is now too large to hold, None when it vanished
            or is no regular file."""
            data_st = _read_small(abspath, _SMALL_READ_CAP)
            if not isinstance(data_st, tuple):
                return data_st
            data, st = data_st
            over = max(len(data) - counted, 0)  # it grew since the walk (up to the cap): count what it holds
            if over:
                with extra_lock:
                    extra[0] += over
            ck = getattr(local, "chunker", None)
            if ck is None:
                ck = local.chunker = Chunker(repo.chunker_params)
            # a file no longer than the minimum chunk size is one chunk: no copy through the chunker
            pieces = [data] if 0 < len(data) <= ck.params.min_size else list(ck.cut(data))
            return [work(c) for c in pieces], len(data), st.st_mtime_ns, over

        def take(item: tuple[Future[Any], Entry, int, int]) -> None:
            fut, entry, i, nbytes = item
            held[0] -= nbytes
            if i >= 0:
                results = [fut.result()]
            else:
                got = fut.result()
                if not isinstance(got, tuple):
                    if got == "grew":
                        redo.append((entry.pop("_abspath"), entry))
                    else:
                        entry["_wait"] = -1  # dropped from the manifest below
                        on_error(entry.pop("_abspath"), OSError("not a regular file any more, or unreadable"))
                    return
                results, size, mtime_ns, over = got
                if over:
                    with extra_lock:
                        extra[0] -= over
                entry.pop("_abspath", None)
                entry["chunks"] = [""] * len(results)
                entry["size"], entry["mtime_ns"] = size, mtime_ns
                progress.bytes += size
                progress.read_bytes += size
            for k, (bid, raw_len, stored) in enumerate(results):
                entry["chunks"][i if i >= 0 else k] = bid.hex()
                if stored is not None and saver.add(bid, DATA, stored, raw_len):
                    progress.new_bytes += raw_len
                    progress.stored_bytes += len(stored)
            entry["_wait"] -= 1
            if i < 0 and on_chunk:
                on_chunk()

        def drain(keep: int) -> None:
            """Take results in order until at most `keep` items (and `INFLIGHT_BYTES`) are in flight."""
            while inflight and (
                len(inflight) > min(keep, max_items)
                or (keep and held[0] + extra[0] > INFLIGHT_BYTES)
                or inflight[0][0].done()
            ):  # finished ones too: progress stays current
                take(inflight.popleft())
            while pending and pending[0].get("_wait", 0) <= 0:
                e = pending.popleft()
                if e.pop("_wait", 0) == 0:
                    tree.add(e)

        def submit(fn: Any, arg: Any, entry: Entry, i: int, nbytes: int) -> None:
            inflight.append((pool.submit(fn, arg), entry, i, nbytes))
            held[0] += nbytes

        def on_error(path: str, e: OSError) -> None:
            progress.errors.append(f"{path}: {e.strerror or e}")
            log.warning("cannot back up path", path=path, error=e.strerror or str(e))

        def _stream_file(abspath: str, entry: Entry) -> None:
            entry["chunks"], entry["_wait"] = [], 1
            if _read_file(
                abspath, entry, chunker, pool, work, submit, drain, max_items, limiter, progress, cancel, on_chunk
            ):
                entry["_wait"] -= 1
            else:
                entry["_wait"] = -1  # vanished or unreadable: left out of the manifest, error recorded
                _discard(inflight, held, entry)
                on_error(abspath, OSError("not a regular file any more, or unreadable"))
                drain(max_items)

        try:
            with ThreadPoolExecutor(max_workers=req.workers, thread_name_prefix="snap-hash") as pool:
                try:
                    for entry, abspath in walk(paths, req.excludes, on_error):
                        if cancel.is_set():
                            raise Cancelled()
                        lock.refresh()
                        progress.current = abspath
                        if entry["type"] == "dir":
                            progress.dirs += 1
                        if entry["type"] != "file":
                            pending.append(entry)
                            drain(max_items)
                            continue
                        progress.files += 1
                        prev = old.get(entry["path"])
                        if (
                            prev is not None
                            and prev[:3] == (entry["size"], entry["mtime_ns"], entry["inode"])
                            and all(bytes.fromhex(c) in repo.index for c in prev[3])
                        ):
                            entry["chunks"] = list(prev[3])
                            progress.unchanged_files += 1
                            progress.bytes += entry["size"]
                            pending.append(entry)
                            drain(max_items)
                            continue
                        # _wait starts at 1 while the file is being read, so the entry cannot reach the tree
                        # before its last chunk is known even if every submitted chunk is already done.
                        entry["chunks"], entry["_wait"] = [], 1
                        pending.append(entry)
                        if entry["size"] <= SMALL_FILE:
                            entry["_abspath"] = abspath
                            counted = max(entry["size"], 4096)
                            submit(functools.partial(work_file, counted=counted), abspath, entry, -1, counted)
                            limiter.take(entry["size"])
                            drain(max_items)
                        else:
                            _stream_file(abspath, entry)
                        while redo:
                            _stream_file(*redo.pop(0))
                    while True:
                        drain(0)
                        if not redo:
                            break
                        while redo:
                            _stream_file(*redo.pop(0))
                    tree.close()
                except BaseException:
                    # A failed read or a cancel: the queued work is dropped, not run before the error is told.
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
            stats = {
                "files": progress.files,
                "dirs": progress.dirs,
                "bytes": progress.bytes,
                "read_bytes": progress.read_bytes,
                "new_bytes": progress.new_bytes,
                "stored_bytes": progress.stored_bytes,
                "unchanged_files": progress.unchanged_files,
                "errors": progress.errors[:100],
                "error_count": len(progress.errors),
                "duration_s": round(time.monotonic() - t0, 3),
            }
        finally:
            saver.flush()  # packs → index, even on failure: the next run reuses them
        snap = repo.save_snapshot(
            time=progress.started,
            plan=req.plan,
            paths=paths,
            parent=parent.id if parent else None,
            tree=tree_ids,
            stats=stats,
        )
        log.info(
            "snapshot saved", snapshot=snap.id[:12], plan=req.plan, **{k: v for k, v in stats.items() if k != "errors"}
        )
        return snap


def _discard(inflight: deque, held: list[int], entry: Entry) -> None:
    for item in list(inflight):
        if item[1] is entry:
            inflight.remove(item)
            held[0] -= item[3]


def _read_small(abspath: str, cap: int) -> tuple[bytes, os.stat_result] | str | None:
    """The contents and stat of a regular file of at most `cap` bytes; "grew" when it is longer, None
    when it cannot be opened as a regular file (same checks as `_read_file`)."""
    try:
        fd = os.open(abspath, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        if st.st_size > cap:  # grew since the walk: not read at all here
            return "grew"
        os.set_blocking(fd, True)
        parts: list[bytes] = []
        got = 0
        while True:
            # Never more than `cap + 1` bytes in all, however much the file grows while it is read.
            want = max(st.st_size - got, 0) + 1 if got <= st.st_size else 1024 * 1024
            b = os.read(fd, min(want, cap - got + 1))
            if not b:
                break
            parts.append(b)
            got += len(b)
            if got > cap:
                return "grew"
    except OSError:
        return None
    finally:
        os.close(fd)
    return (parts[0] if len(parts) == 1 else b"".join(parts)), st


def _read_file(
    abspath: str,
    entry: Entry,
    chunker: Chunker,
    pool: ThreadPoolExecutor,
    work: Any,
    submit: Any,
    drain: Any,
    limit: int,
    limiter: _RateLimiter,
    progress: Progress,
    cancel: threading.Event,
    on_chunk: Any,
) -> bool:
    try:
        # O_NOFOLLOW | O_NONBLOCK: a file swapped for a symlink or a FIFO since the walk is not followed
        # or waited on; fstat then confirms it is still a regular file.
        fd = os.open(abspath, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    with os.fdopen(fd, "rb", buffering=0) as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return False
        os.set_blocking(fd, True)
        size = 0
        try:
            for i, data in enumerate(chunker.cut_stream(f)):
                if cancel.is_set():
                    raise Cancelled()
                entry["chunks"].append("")
                entry["_wait"] += 1
                submit(work, data, entry, i, len(data))
                size += len(data)
                progress.bytes += len(data)
                progress.read_bytes += len(data)
                limiter.take(len(data))
                drain(limit)
                if on_chunk:
                    on_chunk()
        except OSError:
            return False
    # The file may have changed while it was read: record what was read, with the times it had then.
    entry["size"] = size
    entry["mtime_ns"] = st.st_mtime_ns
    return True
