"""Retention arithmetic: which log files to delete, oldest first, for an age limit and a total size cap.

Pure: the caller passes the files and `now`, and deletes what comes back (files and their index rows).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class FileStat:
    file_id: int
    service: str
    first_ts: float
    last_ts: float
    size: int


def plan_retention(files: Iterable[FileStat], *, now: float, max_age_s: float, max_total_bytes: int) -> list[int]:
    """Ids of the files to delete, oldest first.

    A file goes when its newest line is older than `max_age_s`; then, while the files left add up to
    more than `max_total_bytes`, the oldest of them (by newest line, then id) goes too, across all
    services. A file being written may go as well: the writer starts a new one on its next line.
    """
    ordered = sorted(files, key=lambda f: (f.last_ts, f.first_ts, f.file_id))
    cutoff = now - max_age_s
    doomed: list[int] = []
    kept: list[FileStat] = []
    for f in ordered:
        (doomed.append(f.file_id) if f.last_ts < cutoff else kept.append(f))
    total = sum(f.size for f in kept)
    for f in kept:
        if total <= max_total_bytes:
            break
        doomed.append(f.file_id)
        total -= f.size
    return doomed
