"""The manifest (tree) of a snapshot: walking source paths into entries, writing them as JSON lines into
tree blobs, reading them back, and checking entries read from a repository before they are trusted."""

from __future__ import annotations

import fnmatch
import json
import os
import stat
from collections.abc import Callable, Iterator
from typing import Any

from snap.chunker import Chunker
from snap.errors import DamagedData

Entry = dict[str, Any]
TYPES = frozenset({"file", "dir", "symlink", "hardlink", "fifo", "special"})


def rel(path: str) -> str:
    """The manifest form of an absolute path: without the leading '/'."""
    return path.lstrip("/")


def _meta(st: os.stat_result, path: str, kind: str) -> Entry:
    return {
        "path": path,
        "type": kind,
        "mode": st.st_mode,
        "uid": st.st_uid,
        "gid": st.st_gid,
        "mtime_ns": st.st_mtime_ns,
        "size": st.st_size if kind == "file" else 0,
        "inode": st.st_ino,
        "dev": st.st_dev,
        "nlink": st.st_nlink,
    }


def excluded(relpath: str, name: str, patterns: list[str]) -> bool:
    """Whether a path is excluded: a pattern matches its name, or its path relative to the source root."""
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(relpath, p) for p in patterns)


def walk(
    sources: list[str], excludes: list[str], on_error: Callable[[str, OSError], None]
) -> Iterator[tuple[Entry, str]]:
    """(entry, absolute path) for every object under `sources` and each source's parent directories,
    depth first with names sorted. Hard links after the first name become `hardlink` entries.
    Objects that vanish or cannot be read are passed to `on_error` and skipped."""
    seen_dirs: set[str] = set()
    inodes: dict[tuple[int, int], str] = {}
    for src in sorted({os.path.normpath(os.path.abspath(s)) for s in sources}):
        parts = src.strip("/").split("/")
        for i in range(1, len(parts)):
            parent = "/" + "/".join(parts[:i])
            if parent not in seen_dirs:
                seen_dirs.add(parent)
                try:
                    yield _meta(os.lstat(parent), rel(parent), "dir"), parent
                except OSError as e:
                    on_error(parent, e)
        yield from _walk_one(src, src, excludes, seen_dirs, inodes, on_error)


def _walk_one(
    root: str,
    path: str,
    excludes: list[str],
    seen_dirs: set[str],
    inodes: dict[tuple[int, int], str],
    on_error: Callable[[str, OSError], None],
) -> Iterator[tuple[Entry, str]]:
    try:
        st = os.lstat(path)
    except OSError as e:
        on_error(path, e)
        return
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        if path in seen_dirs:
            return
        seen_dirs.add(path)
        try:
            with os.scandir(path) as it:
                names = sorted(e.name for e in it)
        except OSError as e:
            on_error(path, e)
            names = []
        yield _meta(st, rel(path), "dir"), path
        for name in names:
            child = os.path.join(path, name)
            if excludes and excluded(os.path.relpath(child, root), name, excludes):
                continue
            yield from _walk_one(root, child, excludes, seen_dirs, inodes, on_error)
    elif stat.S_ISREG(mode):
        entry = _meta(st, rel(path), "file")
        if st.st_nlink > 1:
            first = inodes.get((st.st_dev, st.st_ino))
            if first is not None:
                entry.update(type="hardlink", link=first, size=0)
                yield entry, path
                return
            inodes[(st.st_dev, st.st_ino)] = rel(path)
        yield entry, path
    elif stat.S_ISLNK(mode):
        entry = _meta(st, rel(path), "symlink")
        try:
            entry["target"] = os.readlink(path)
        except OSError as err:
            on_error(path, err)
            return
        yield entry, path
    elif stat.S_ISFIFO(mode):
        yield _meta(st, rel(path), "fifo"), path
    else:
        yield _meta(st, rel(path), "special"), path


def encode(entry: Entry) -> bytes:
    # ensure_ascii keeps surrogate-escaped (non-UTF-8) names as \udcXX escapes that round-trip exactly
    return json.dumps(entry, separators=(",", ":"), ensure_ascii=True).encode() + b"\n"


class TreeWriter:
    """Accumulates manifest lines and emits content-defined tree chunks as they become final, so memory
    stays bounded for any number of entries. `chunks()` after `close()` gives them all in order."""

    def __init__(self, chunker: Chunker, emit: Any) -> None:
        self._chunker = chunker
        self._emit = emit  # callable(chunk bytes) -> None, called in order
        self._buf = bytearray()
        self._limit = 2 * chunker.params.max_size

    def add(self, entry: Entry) -> None:
        self._buf += encode(entry)
        if len(self._buf) >= self._limit:
            pieces = list(self._chunker.cut(self._buf))
            for p in pieces[:-1]:
                self._emit(p)
            self._buf = bytearray(pieces[-1])

    def close(self) -> None:
        if self._buf:
            for p in self._chunker.cut(self._buf):
                self._emit(p)
            self._buf = bytearray()


def check_entry(line: bytes) -> Entry:
    """An entry from a manifest line, refused with `DamagedData` when it could make a restore write
    outside its target or is malformed (a damaged or hostile repository)."""
    try:
        e = json.loads(line)
    except ValueError as err:
        raise DamagedData(f"manifest line is not JSON: {err}") from err
    if not isinstance(e, dict) or e.get("type") not in TYPES or not isinstance(e.get("path"), str):
        raise DamagedData(f"manifest entry is malformed: {line[:200]!r}")
    for key in ("mode", "uid", "gid", "mtime_ns", "size"):
        if not isinstance(e.get(key), int) or e[key] < 0:
            raise DamagedData(f"manifest entry {e['path']!r}: {key} must be a non-negative integer")
    safe_path(e["path"])
    if e["type"] == "hardlink":
        safe_path(str(e.get("link", "")))
    if e["type"] == "symlink" and (not isinstance(e.get("target"), str) or "\0" in e["target"]):
        raise DamagedData(f"manifest entry {e['path']!r}: bad symlink target")
    if e["type"] == "file" and (
        not isinstance(e.get("chunks"), list) or not all(isinstance(c, str) and len(c) == 64 for c in e["chunks"])
    ):
        raise DamagedData(f"manifest entry {e['path']!r}: bad chunk list")
    return e


def safe_path(p: str) -> str:
    parts = p.split("/")
    if not p or p.startswith("/") or "\0" in p or any(x in ("", ".", "..") for x in parts):
        raise DamagedData(f"manifest path {p!r} is not a plain relative path (refused: it could escape the target)")
    return p
