"""Restore a snapshot (or a sub-path of it) into a new directory, verifying every chunk and each file's
size, and restoring modes, mtimes, symlinks, hard links, FIFOs and empty directories (owners when run
as root). A damaged file is reported and removed, never left looking good. Synchronous: run in a thread.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import structlog

from core.errors import Conflict
from snap.backup import Cancelled
from snap.errors import DamagedData
from snap.repo import Repository, iter_lines
from snap.tree import Entry, check_entry

log = structlog.get_logger("snap.restore")


@dataclass
class RestoreResult:
    snapshot: str
    target: str
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    bytes: int = 0
    skipped: int = 0  # sockets/devices, not restorable
    damaged: list[dict[str, str]] = field(default_factory=list)  # {"path", "error"}

    @property
    def ok(self) -> bool:
        return not self.damaged

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def _under(path: str, sub: str | None) -> bool:
    return sub is None or path == sub or path.startswith(sub + "/") or sub.startswith(path + "/")


def run_restore(
    repo: Repository,
    snapshot_id: str,
    target: Path,
    *,
    sub_path: str | None = None,
    force: bool = False,
    workers: int = 2,
    progress: RestoreResult | None = None,
    cancel: threading.Event | None = None,
) -> RestoreResult:
    """Restore into `target`, which must not exist or be empty unless `force` (then existing files with
    the same names are replaced; nothing else is touched). Returns what was done and what was damaged."""
    cancel = cancel or threading.Event()
    snap = repo.snapshot(snapshot_id)
    sub = sub_path.strip("/") if sub_path else None
    target = target.absolute()
    if target.exists() and any(target.iterdir()) and not force:
        raise Conflict(
            f"restore target {target} exists and is not empty",
            hint="choose a new directory, or pass --force to write into it",
        )
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    res = progress or RestoreResult(snap.id, str(target))
    res.snapshot, res.target = snap.id, str(target)
    as_root = os.geteuid() == 0
    created: set[str] = {""}  # manifest dirs made by this restore: a parent must be one of them
    dir_meta: list[Entry] = []
    restored: dict[str, str] = {}  # manifest path of an inode's first name -> where its data now is
    linked: dict[str, Entry] = {}  # first names of multiply-linked files outside the sub-path
    with (
        repo.lock("shared", f"restore {snap.id[:12]}") as lock,
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="snap-restore") as pool,
    ):
        repo.load_index()  # as it is now, under the lock
        for line in iter_lines(repo, snap.tree):
            if cancel.is_set():
                raise Cancelled()
            lock.refresh()
            e = check_entry(line)
            p = e["path"]
            if not _under(p, sub):
                if e["type"] == "file" and e.get("nlink", 1) > 1:
                    linked[p] = e
                continue
            parent = p.rpartition("/")[0]
            if parent not in created:
                res.damaged.append({"path": p, "error": "its parent directory is not in the snapshot"})
                continue
            dest = os.path.join(target, p)
            kind = e["type"]
            try:
                if kind == "dir":
                    _make_dir(dest, force)
                    created.add(p)
                    dir_meta.append(e)
                    res.dirs += 1
                    continue
                if force:
                    _remove_existing(dest)
                if kind == "hardlink" and e["link"] not in restored and e["link"] in linked:
                    # the first name lies outside the restored sub-path: this name gets the data
                    e = {**linked.pop(e["link"]), "path": p, "first": e["link"]}
                    kind = "file"
                if kind == "file":
                    try:
                        _write_file(repo, pool, e, dest, workers, cancel)
                    except DamagedData as err:
                        with contextlib.suppress(OSError):
                            os.unlink(dest)
                        res.damaged.append({"path": p, "error": err.message})
                        log.error("file damaged, not restored", path=p, error=err.message)
                        continue
                    restored[e["first"] if "first" in e else p] = dest
                    res.files += 1
                    res.bytes += e["size"]
                elif kind == "hardlink":
                    if e["link"] not in restored:
                        res.damaged.append({"path": p, "error": f"hard link to {e['link']}, which was not restored"})
                        continue
                    os.link(restored[e["link"]], dest, follow_symlinks=False)
                    res.files += 1
                    continue  # the inode's metadata was set with its first name
                elif kind == "symlink":
                    os.symlink(e["target"], dest)
                    res.symlinks += 1
                elif kind == "fifo":
                    os.mkfifo(dest, 0o600)
                else:
                    res.skipped += 1
                    continue
                _set_meta(dest, e, as_root)
            except OSError as err:
                res.damaged.append({"path": p, "error": f"cannot restore: {err.strerror or err}"})
        for e in reversed(dir_meta):  # deepest first, after their contents, so mtimes stick
            _set_meta(os.path.join(target, e["path"]), e, as_root)
    log.info(
        "restore finished",
        snapshot=snap.id[:12],
        target=str(target),
        files=res.files,
        bytes=res.bytes,
        damaged=len(res.damaged),
    )
    return res


def _make_dir(dest: str, force: bool) -> None:
    try:
        os.mkdir(dest, 0o700)
    except FileExistsError:
        st = os.lstat(dest)
        if not stat.S_ISDIR(st.st_mode):
            if not force:
                raise
            os.unlink(dest)
            os.mkdir(dest, 0o700)


def _remove_existing(dest: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        st = os.lstat(dest)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(21, "a directory is in the way", dest)
        os.unlink(dest)


def _write_file(
    repo: Repository, pool: ThreadPoolExecutor, e: Entry, dest: str, workers: int, cancel: threading.Event
) -> None:
    """Write a file's chunks, read and verified ahead in the pool (bounded); checks the total size."""
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        ahead: deque[Future[bytes]] = deque()
        chunks = iter(e["chunks"])
        written = 0
        while True:
            while len(ahead) < workers + 1:
                c = next(chunks, None)
                if c is None:
                    break
                ahead.append(pool.submit(repo.read_blob, bytes.fromhex(c)))
            if not ahead:
                break
            if cancel.is_set():
                raise Cancelled()
            try:
                data = ahead.popleft().result()
            except DamagedData:
                for fut in ahead:
                    fut.cancel()
                raise
            f.write(data)
            written += len(data)
    if written != e["size"]:
        raise DamagedData(f"restored size {written} differs from the recorded size {e['size']}")


def _set_meta(dest: str, e: Entry, as_root: bool) -> None:
    link = e["type"] == "symlink"
    if as_root:
        os.chown(dest, e["uid"], e["gid"], follow_symlinks=False)
    if not link:
        os.chmod(dest, stat.S_IMODE(e["mode"]))
    os.utime(dest, ns=(e["mtime_ns"], e["mtime_ns"]), follow_symlinks=False)
