"""Snap: content-addressed, deduplicated snapshots of declared directories, with cron plans,
retention, prune, scrub and verified restore (format: docs/snap-format.md).

Primitives: `Repository` and `BlobSaver` (repo), `Chunker` (chunker), `run_backup`, `run_restore`,
`scrub` / `prune` / `forget` (maintenance), `apply_policy` (retention), `SnapService` (the component,
which runs jobs through `snap.runner` in a child process).
"""

__all__ = ["backup", "chunker", "maintenance", "repo", "restore", "retention", "service"]
