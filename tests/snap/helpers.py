"""Test helpers: a source tree with every kind of file, and a digest of a tree's content and metadata."""

from __future__ import annotations

import hashlib
import os
import random
import stat
from pathlib import Path
from typing import Any


def make_tree(root: Path, *, large_mib: int = 6, seed: int = 7) -> None:
    rng = random.Random(seed)
    (root / "docs" / "deep" / "deeper").mkdir(parents=True)
    (root / "empty-dir" / "nested-empty").mkdir(parents=True)
    (root / "empty-file").write_bytes(b"")
    (root / "small.txt").write_text("hello\n")
    (root / "docs" / "deep" / "deeper" / "note.md").write_text("# note\n" * 100)
    (root / "big.bin").write_bytes(rng.randbytes(large_mib * 1024 * 1024))
    (root / "compressible.log").write_bytes(b"".join(b"line %d status=ok\n" % i for i in range(200_000)))
    (root / "ünïcødé 名前 \u2013.txt").write_text("unicode name\n")
    (root / os.fsdecode(b"latin1-\xe9t\xe9")).write_bytes(b"a non-UTF-8 name\n")
    os.symlink("small.txt", root / "link-to-small")
    os.symlink("/nonexistent/target", root / "dangling")
    os.symlink("docs", root / "dir-link")
    os.link(root / "small.txt", root / "hardlink-to-small")
    os.link(root / "big.bin", root / "docs" / "hard-big")
    os.mkfifo(root / "fifo")
    os.chmod(root / "small.txt", 0o640)
    os.chmod(root / "docs" / "deep", 0o750)
    (root / "script.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(root / "script.sh", 0o4755)  # setuid survives
    if os.geteuid() == 0:
        os.chown(root / "script.sh", 1234, 5678)
        os.lchown(root / "link-to-small", 4321, 8765)
    for i, p in enumerate(sorted(root.rglob("*"), reverse=True)):
        os.utime(p, ns=(1_600_000_000_123_456_789 + i * 1_000_000_007,) * 2, follow_symlinks=False)


def digest(root: Path) -> dict[str, Any]:
    """rel path -> (kind, mode, mtime_ns, uid, gid, content hash / link target, hard-link group)."""
    out: dict[str, Any] = {}
    groups: dict[tuple[int, int], str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    content = hashlib.sha256(f.read()).hexdigest()
                group = groups.setdefault((st.st_dev, st.st_ino), rel) if st.st_nlink > 1 else None
                out[rel] = ("file", st.st_mode, st.st_mtime_ns, st.st_uid, st.st_gid, content, group)
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = ("symlink", st.st_mtime_ns, st.st_uid, st.st_gid, os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", st.st_mode, st.st_mtime_ns, st.st_uid, st.st_gid)
            else:
                out[rel] = ("other", st.st_mode, st.st_mtime_ns)
    return out
