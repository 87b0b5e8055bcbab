"""Pidfiles: one JSON record per running instance under `<data>/run/orch/`, written atomically, so the
next run of the platform can adopt instances that outlived it (see `Runtime.adopt`)."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger("orch.pidfiles")


class PidFiles:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def path(self, service: str, index: int) -> Path:
        return self.run_dir / f"{service}-{index}.json"

    def write(self, service: str, index: int, record: dict[str, Any]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.path(service, index)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"service": service, "index": index, **record}))
        os.replace(tmp, path)

    def remove(self, service: str, index: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(service, index).unlink()

    def scan(self) -> list[dict[str, Any]]:
        """Every readable record (with `service` and `index`); unreadable files are removed with a warning."""
        out = []
        for path in sorted(self.run_dir.glob("*.json")):
            try:
                rec = json.loads(path.read_text())
                rec["service"], rec["index"] = str(rec["service"]), int(rec["index"])
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.warning("ignoring unreadable pidfile", path=str(path), error=str(e))
                path.unlink(missing_ok=True)
                continue
            out.append(rec)
        return out
