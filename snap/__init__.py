"""Snap: content-addressed, deduplicated snapshots of declared directories, with cron plans,
retention, prune, scrub and verified restore (format: docs/snap-format.md).

Primitives: `Repository` and `BlobSaver` (repo), `Chunker` (chunker), `run_backup`, `run_restore`,
`scrub` / `prune` / `forget` (maintenance), `apply_policy` (retention), `SnapService` (the component,
which runs jobs through `snap.runner` in a child process).
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from snap.config import ForgetBody, PlanBody, RestoreBody, ScrubBody, SnapConfig, load_snap_config
    from snap.service import SnapService

# The public face, imported on first use: the `snap.runner` child imports this package too, and needs
# neither the settings models nor the asyncio shell (they would triple its start-up time).
_PUBLIC = {
    "ForgetBody": "snap.config",
    "PlanBody": "snap.config",
    "RestoreBody": "snap.config",
    "ScrubBody": "snap.config",
    "SnapConfig": "snap.config",
    "load_snap_config": "snap.config",
    "SnapService": "snap.service",
}


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'snap' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = ["ForgetBody", "PlanBody", "RestoreBody", "ScrubBody", "SnapConfig", "SnapService", "load_snap_config"]
