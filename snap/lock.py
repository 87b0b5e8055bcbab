"""Repository locks (docs/snap-format.md, "Locks"): shared for backup/restore/scrub, exclusive for
prune/forget. A lock is a file in `locks/`; stale ones (dead pid on this host, or not refreshed for
30 minutes) are ignored and removed."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import structlog

from snap.errors import RepositoryLocked

log = structlog.get_logger("snap.lock")

STALE_AFTER_S = 30 * 60
REFRESH_EVERY_S = 5 * 60
Kind = Literal["shared", "exclusive"]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RepoLock:
    """A held lock. Release it (or leave the `with`) when done; `refresh()` from long loops."""

    def __init__(self, locks_dir: Path, kind: Kind, op: str, write: Callable[[bytes], Path]) -> None:
        self.dir = locks_dir
        self.kind = kind
        self.op = op
        self._write = write
        self.path: Path | None = None
        self._refreshed = 0.0

    def _doc(self) -> bytes:
        return json.dumps(
            {
                "kind": self.kind,
                "pid": os.getpid(),
                "hostname": socket.gethostname(),
                "time": time.time(),
                "op": self.op,
            }
        ).encode()

    def acquire(self) -> RepoLock:
        self.path = self._write(self._doc())
        self._refreshed = time.monotonic()
        for other in self.dir.iterdir():
            if other == self.path or other.name.startswith("."):
                continue
            doc = _read(other)
            if doc is None:
                continue
            if _stale(doc):
                log.info("removing stale lock", lock=other.name, pid=doc.get("pid"), op=doc.get("op"))
                other.unlink(missing_ok=True)
                continue
            if self.kind == "exclusive" or doc.get("kind") == "exclusive":
                self.release()
                raise RepositoryLocked(
                    f"the repository is locked by {doc.get('op', '?')} (pid {doc.get('pid')} on "
                    f"{doc.get('hostname')}, {doc.get('kind')} lock)",
                    hint="wait for it to finish and retry; a lock whose process died is ignored automatically",
                    details={"holder": doc},
                )
        return self

    def refresh(self, force: bool = False) -> None:
        if self.path is None or (not force and time.monotonic() - self._refreshed < REFRESH_EVERY_S):
            return
        new = self._write(self._doc())
        if new != self.path:
            self.path.unlink(missing_ok=True)
            self.path = new
        self._refreshed = time.monotonic()

    def release(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None

    def __enter__(self) -> RepoLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _stale(doc: dict[str, Any]) -> bool:
    if time.time() - float(doc.get("time", 0)) > STALE_AFTER_S:
        return True
    return doc.get("hostname") == socket.gethostname() and not _pid_alive(int(doc.get("pid", 0)))
