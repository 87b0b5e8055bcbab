"""Blocking file work of the artifact store, run in its worker threads: what an upload is (by content),
the scan of an archive against the rules of orch/_tarcheck.py, and the unpack into a release dir.

An archive is read as a stream (`tarfile` mode `r|`) through a reader that stops at a byte bound, with
headers that carry metadata (pax, GNU long names) capped in size: neither a bomb's data nor a forged
header can make us read or hold more than the limits say. The unpack writes into a fresh staging dir
beside the release dir and renames it into place at the end; any rejection removes the staging dir, so
no partial release dir and nothing outside it remains.
"""

from __future__ import annotations

import gzip
import io
import os
import secrets
import shutil
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Protocol

from orch._tarcheck import Kind, Member, TarChecker, TarLimits, TarRejected, normalise

ArtifactKind = Literal["tar.gz", "tar", "file"]
COPY_CHUNK = 1024 * 1024
MAX_META_HEADER = 1024 * 1024  # a pax/long-name header larger than this is refused before it is read
_META_TYPES = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)


class ArchiveInvalid(ValueError):
    """The archive cannot be read (truncated, corrupt)."""


class _SafeTarInfo(tarfile.TarInfo):
    def _proc_member(self, tf: tarfile.TarFile) -> Any:  # tarfile's hook for every header
        if self.type in _META_TYPES and self.size > MAX_META_HEADER:
            raise TarRejected(
                self.name or "(header)",
                "bad_header",
                f"a metadata header of {self.size} bytes (at most {MAX_META_HEADER})",
            )
        return super()._proc_member(tf)  # type: ignore[misc]  # tarfile's private hook: not in typeshed


class _Reader(Protocol):
    """What `_Bounded` reads from: a file, or the gzip stream over one."""

    def read(self, size: int = -1, /) -> bytes: ...


class _Bounded(io.RawIOBase):
    """A reader that refuses to deliver more than `limit` bytes in total (the decompressed stream)."""

    def __init__(self, f: _Reader, limit: int) -> None:
        self._f, self._left = f, limit

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n > self._left:
            n = self._left + 1
        data = self._f.read(n)
        self._left -= len(data)
        if self._left < 0:
            raise TarRejected("(archive)", "too_large", "the archive decompresses to more than the limit allows")
        return data

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


def detect_kind(path: Path) -> ArtifactKind:
    """`tar.gz` when the file is gzip whose content starts with a valid tar header, `tar` for a plain
    tar, else `file` (a single file, installed as is). By content: the name is not looked at."""
    with open(path, "rb") as f:
        head = f.read(512)
        if head[:2] == b"\x1f\x8b":
            f.seek(0)
            try:
                with gzip.GzipFile(fileobj=f) as gz:
                    inner = gz.read(512)
            except (OSError, EOFError, zlib.error):
                return "file"
            return "tar.gz" if _is_tar_header(inner) else "file"
    return "tar" if _is_tar_header(head) else "file"


def _is_tar_header(block: bytes) -> bool:
    if len(block) < 512:
        return False
    try:
        tarfile.TarInfo.frombuf(block, tarfile.ENCODING, "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def _member(ti: tarfile.TarInfo) -> Member:
    kind: Kind
    if ti.issparse():
        kind = "other"
    elif ti.isreg():
        kind = "file"
    elif ti.isdir():
        kind = "dir"
    elif ti.issym():
        kind = "symlink"
    elif ti.islnk():
        kind = "hardlink"
    elif ti.ischr() or ti.isblk():
        kind = "device"
    elif ti.isfifo():
        kind = "fifo"
    else:
        kind = "other"
    return Member(ti.name, kind, ti.size, ti.linkname)


def _raw_bound(limits: TarLimits) -> int:
    # File data plus headers and padding (at most ~3 blocks a member, and the metadata headers' cap).
    return limits.max_unpacked_bytes + limits.max_members * 1536 + 16 * MAX_META_HEADER


def _members(path: Path, kind: ArtifactKind, limits: TarLimits) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    with open(path, "rb") as raw:
        src: _Reader = gzip.GzipFile(fileobj=raw) if kind == "tar.gz" else raw
        bounded = io.BufferedReader(_Bounded(src, _raw_bound(limits)), COPY_CHUNK)
        try:
            with tarfile.open(fileobj=bounded, mode="r|", tarinfo=_SafeTarInfo) as tf:
                for ti in tf:
                    yield tf, ti
        except TarRejected:
            raise
        except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
            raise ArchiveInvalid(f"the archive cannot be read: {e}") from e


def scan(path: Path, kind: ArtifactKind, limits: TarLimits) -> dict[str, int]:
    """Check every member (and read through the data, so a corrupt archive shows now); the counts."""
    checker = TarChecker(limits)
    for tf, ti in _members(path, kind, limits):
        checker.check(_member(ti))
        if ti.isreg():
            f = tf.extractfile(ti)
            assert f is not None
            while f.read(COPY_CHUNK):
                pass
    return {"members": checker.members, "unpacked_bytes": checker.unpacked_bytes}


def unpack(path: Path, kind: ArtifactKind, dest: Path, limits: TarLimits, filename: str) -> dict[str, int]:
    """Unpack the artifact at `path` into `dest` (which must not exist): via a staging dir beside it,
    renamed into place when every member passed. A single file is copied to `dest/filename` (mode 0755)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.parent / f".staging-{dest.name}-{secrets.token_hex(4)}"
    staging.mkdir(mode=0o755)
    try:
        if kind == "file":
            out = staging / filename
            shutil.copyfile(path, out)
            os.chmod(out, 0o755)
            counts = {"members": 1, "unpacked_bytes": out.stat().st_size}
        else:
            counts = _extract(path, kind, staging, limits)
        os.rename(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return counts


def _extract(path: Path, kind: ArtifactKind, root: Path, limits: TarLimits) -> dict[str, int]:
    checker = TarChecker(limits)
    real_root = os.path.realpath(root)
    dir_modes: list[tuple[str, int]] = []
    for tf, ti in _members(path, kind, limits):
        rel = checker.check(_member(ti))
        if not rel:
            continue  # `./`: the release dir itself (its mode stays ours)
        target = os.path.join(real_root, rel)
        parent = os.path.dirname(target)
        os.makedirs(parent, mode=0o755, exist_ok=True)
        # Belt and braces: the rules already guarantee this (no member through a symlink).
        if os.path.realpath(parent) != parent or not (parent + "/").startswith(real_root + "/"):
            raise TarRejected(ti.name, "through_symlink", "the path leaves the release dir")
        if ti.isdir():
            os.makedirs(target, mode=0o755, exist_ok=True)
            dir_modes.append((target, (ti.mode & 0o777) | 0o700))
        elif ti.issym():
            os.symlink(ti.linkname, target)
        elif ti.islnk():
            os.link(os.path.join(real_root, normalise(ti.linkname)), target, follow_symlinks=False)
        else:
            src = tf.extractfile(ti)
            assert src is not None
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(src, out, COPY_CHUNK)
            os.chmod(target, (ti.mode & 0o777) | 0o600)  # no setuid/setgid/sticky; the owner can read it
            os.utime(target, (ti.mtime, ti.mtime), follow_symlinks=False)
    for d, mode in reversed(dir_modes):  # last: a read-only dir must not stop its own contents
        os.chmod(d, mode)
    return {"members": checker.members, "unpacked_bytes": checker.unpacked_bytes}


def remove_tree(path: Path) -> None:
    """Remove a release dir (made writable first: archives may hold read-only dirs)."""
    if not path.exists():
        return
    for dirpath, dirnames, _ in os.walk(path):
        for d in dirnames:
            p = os.path.join(dirpath, d)
            if not os.path.islink(p):
                os.chmod(p, 0o700)
    os.chmod(path, 0o700)
    shutil.rmtree(path)
