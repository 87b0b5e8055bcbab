"""The PEM files under `<data>/certs/`: `<name>.crt` (full chain) and `<name>.key` (mode 0600),
replaced as a pair so that a crash at any point leaves a matching pair on disk.

Protocol of `write_pair` (blocking: call it from a worker thread):

1. write `<name>.key.new` (0600), then `<name>.crt.new`, each fsynced; fsync the directory;
2. rename `.key.new` → `.key`, then `.crt.new` → `.crt`; fsync the directory.

`recover` (run at start, before anything reads the files) finishes or undoes a write a crash cut short:

- both `.new` files present: the crash came before step 2, the old pair is untouched → drop both;
- only `.key.new`: the crash came while writing `.crt.new` (never created) → drop it;
- only `.crt.new`: the crash came between the two renames of step 2; both new files were complete
  (fsynced in step 1) and the new key is already in place → finish by renaming `.crt.new` → `.crt`.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import structlog

log = structlog.get_logger("certd.files")


def _write_synced(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # O_CREAT's mode is filtered by the umask; the key must be 0600 exactly
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)


def stage_pair(directory: Path, stem: str, cert_pem: bytes, key_pem: bytes) -> None:
    """Step 1 of `write_pair` (blocking: fsyncs): the new pair as `.new` files, durable on disk."""
    ensure_dir(directory)
    _write_synced(directory / f"{stem}.key.new", key_pem, 0o600)
    _write_synced(directory / f"{stem}.crt.new", cert_pem, 0o644)
    _fsync_dir(directory)


def swap_pair(directory: Path, stem: str) -> tuple[Path, Path]:
    """Step 2 of `write_pair` without its final fsync: two renames, microseconds. Run it on the event
    loop, where the gate loads certificates, so no reader on the loop can see a half-swapped pair."""
    crt, key = directory / f"{stem}.crt", directory / f"{stem}.key"
    os.replace(directory / f"{stem}.key.new", key)
    os.replace(directory / f"{stem}.crt.new", crt)
    return crt, key


def sync_dir(directory: Path) -> None:
    """Make the renames durable (blocking)."""
    _fsync_dir(directory)


def write_pair(directory: Path, stem: str, cert_pem: bytes, key_pem: bytes) -> tuple[Path, Path]:
    """Replace `<stem>.crt` and `<stem>.key` atomically as a pair (blocking); returns (cert, key) paths."""
    stage_pair(directory, stem, cert_pem, key_pem)
    paths = swap_pair(directory, stem)
    sync_dir(directory)
    return paths


def write_secret(path: Path, data: bytes) -> None:
    """Write one private file (0600) atomically: temp file, fsync, rename."""
    ensure_dir(path.parent)
    tmp = path.with_name(path.name + ".new")
    _write_synced(tmp, data, 0o600)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def remove_pair(directory: Path, stem: str) -> None:
    for suffix in (".crt", ".key", ".crt.new", ".key.new"):
        with contextlib.suppress(FileNotFoundError):
            (directory / f"{stem}{suffix}").unlink()


def recover(directory: Path) -> list[str]:
    """Finish or undo pair writes a crash interrupted (see the module docstring); returns what it did."""
    if not directory.is_dir():
        return []
    done: list[str] = []
    for crt_new in sorted(directory.glob("*.crt.new")):
        stem = crt_new.name[: -len(".crt.new")]
        key_new = directory / f"{stem}.key.new"
        if key_new.exists():
            crt_new.unlink()
            key_new.unlink()
            done.append(f"{stem}: dropped an unfinished write (previous pair kept)")
        else:
            os.replace(crt_new, directory / f"{stem}.crt")
            done.append(f"{stem}: finished an interrupted swap (new pair in place)")
    for key_new in sorted(directory.glob("*.key.new")):
        key_new.unlink()
        done.append(f"{key_new.name[: -len('.key.new')]}: dropped an unfinished key write (previous pair kept)")
    if done:
        _fsync_dir(directory)
        for what in done:
            log.warning("recovered certificate files", what=what, directory=str(directory))
    return done
