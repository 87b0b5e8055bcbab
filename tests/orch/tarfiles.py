"""Real tar files for the artifact tests: good ones, and the shapes an attacker would send."""

from __future__ import annotations

import io
import secrets
import tarfile
from pathlib import Path
from typing import Any

Entry = tuple[Any, ...]  # (name, "file", bytes) | (name, "dir") | (name, "symlink"|"hardlink", target) | ...


def build(entries: list[Entry], *, gz: bool = True, pax: dict[str, str] | None = None) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz" if gz else "w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, *rest in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1_700_000_000
            if pax:
                ti.pax_headers = dict(pax)
            data = None
            if kind == "file":
                data = rest[0]
                ti.size, ti.mode = len(data), rest[1] if len(rest) > 1 else 0o644
            elif kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            elif kind == "symlink":
                ti.type, ti.linkname = tarfile.SYMTYPE, rest[0]
            elif kind == "hardlink":
                ti.type, ti.linkname = tarfile.LNKTYPE, rest[0]
            elif kind == "chr":
                ti.type, ti.devmajor, ti.devminor = tarfile.CHRTYPE, 1, 3  # /dev/null's numbers
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def app(version: str) -> bytes:
    """A small release: a script, a config file, a symlink and a hard link that stay inside."""
    return build(
        [
            ("./", "dir"),
            ("./bin/", "dir"),
            ("./bin/app.py", "file", f"print('hello from {version}')\n".encode(), 0o755),
            ("./config/app.yaml", "file", f"version: {version}\n".encode()),
            ("./current.yaml", "symlink", "config/app.yaml"),
            ("./bin/app-copy.py", "hardlink", "./bin/app.py"),
        ]
    )


class _Zeros(io.RawIOBase):
    def __init__(self, n: int) -> None:
        self.left = n

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n


def gzip_bomb(unpacked: int) -> bytes:
    """A tar.gz of one file of `unpacked` zero bytes (about 1000:1)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", compresslevel=1) as tf:
        ti = tarfile.TarInfo("zeros.bin")
        ti.size = unpacked
        tf.addfile(ti, io.BufferedReader(_Zeros(unpacked)))
    return out.getvalue()


def attacks(tmp_path: Path) -> dict[str, tuple[bytes, str, list[Path]]]:
    """name -> (tar.gz bytes, the rule that must refuse it, paths that must not exist afterwards)."""
    outside = tmp_path / f"outside-{secrets.token_hex(4)}"
    etc = Path("/etc") / f"infracore-tartest-{secrets.token_hex(4)}"
    return {
        "dotdot": (
            build([("ok.txt", "file", b"ok"), (f"../{outside.name}", "file", b"pwned")]),
            "parent_path",
            [outside],
        ),
        "deep_dotdot": (build([(f"a/../../../{outside.name}", "file", b"pwned")]), "parent_path", [outside]),
        "absolute": (build([(str(etc), "file", b"pwned")]), "absolute_path", [etc]),
        "symlink_out": (
            build([("esc", "symlink", "../.."), ("esc/x", "file", b"pwned")]),
            "symlink_outside",
            [tmp_path / "x"],
        ),
        "symlink_abs": (
            build([("esc", "symlink", str(tmp_path)), ("esc/" + outside.name, "file", b"pwned")]),
            "symlink_outside",
            [outside],
        ),
        "symlink_chain": (
            build([("a", "symlink", "."), ("b", "symlink", "a/.."), ("b/" + outside.name, "file", b"pwned")]),
            "symlink_outside",
            [outside],
        ),
        "hardlink_out": (build([("h", "hardlink", "/etc/passwd")]), "hardlink_outside", []),
        "hardlink_up": (build([("h", "hardlink", f"../{outside.name}")]), "hardlink_outside", [outside]),
        "device": (build([("null", "chr")]), "device_file", []),
        "fifo": (build([("pipe", "fifo")]), "fifo_file", []),
    }
