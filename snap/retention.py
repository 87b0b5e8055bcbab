"""Retention arithmetic: which snapshots a keep-last/hourly/daily/weekly/monthly/yearly policy keeps.

Pure: snapshot times in, decisions out. It follows restic's `forget --keep-*` exactly, so the same
timestamps give the same answer: snapshots are walked newest first; `last` keeps the N newest; each
calendar bucket policy keeps a snapshot when its bucket (day, ISO week, month, ...) differs from the
bucket of the last snapshot *that policy* kept, until it has kept N. A snapshot is kept when any policy
keeps it. Since restic 0.16, a policy with counts left after the walk also keeps the oldest snapshot
(`keep_oldest=True`, the default; restic 0.14/0.15 behave as `keep_oldest=False`).
Buckets are computed in the time zone given (restic uses each snapshot's own recorded zone; we
record UTC).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo


@dataclass(frozen=True)
class RetentionPolicy:
    """Counts per bucket; 0 means the rule is off, -1 means unlimited (as in restic)."""

    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0

    def empty(self) -> bool:
        return not any((self.last, self.hourly, self.daily, self.weekly, self.monthly, self.yearly))


@dataclass(frozen=True)
class Decision:
    id: str
    time: float
    keep: bool
    reasons: tuple[str, ...] = field(default_factory=tuple)


_BUCKETS: tuple[tuple[str, Callable[[datetime], int]], ...] = (
    ("hourly", lambda d: d.year * 1_000_000 + d.month * 10_000 + d.day * 100 + d.hour),
    ("daily", lambda d: d.year * 10_000 + d.month * 100 + d.day),
    ("weekly", lambda d: d.isocalendar()[0] * 100 + d.isocalendar()[1]),
    ("monthly", lambda d: d.year * 100 + d.month),
    ("yearly", lambda d: d.year),
)


def _own_bucket(nr: int) -> Callable[[datetime], int]:
    """The "last" rule's bucket function: each snapshot (its position `nr`) is a bucket of its own."""
    return lambda _d: nr


def apply_policy(
    snapshots: Sequence[tuple[str, float]], policy: RetentionPolicy, tz: tzinfo = UTC, *, keep_oldest: bool = True
) -> list[Decision]:
    """Decide for each `(id, epoch seconds)`; returns decisions newest first.

    An empty policy keeps everything (restic refuses to forget with no policy; so do we).
    Ties in time are ordered by id, so the answer is deterministic.
    """
    ordered = sorted(snapshots, key=lambda s: (s[1], s[0]), reverse=True)
    if policy.empty():
        return [Decision(i, t, True, ("no policy",)) for i, t in ordered]
    counts = {
        "last": policy.last,
        "hourly": policy.hourly,
        "daily": policy.daily,
        "weekly": policy.weekly,
        "monthly": policy.monthly,
        "yearly": policy.yearly,
    }
    last_bucket: dict[str, int | None] = dict.fromkeys(counts)
    out: list[Decision] = []
    for nr, (sid, t) in enumerate(ordered):
        d = datetime.fromtimestamp(t, tz)
        reasons: list[str] = []
        for name, bucket in (("last", _own_bucket(nr)), *_BUCKETS):
            if counts[name] == 0:
                continue
            val = bucket(d)
            if val != last_bucket[name] or (keep_oldest and nr == len(ordered) - 1):
                last_bucket[name] = val
                reasons.append(name)
                if counts[name] > 0:
                    counts[name] -= 1
        out.append(Decision(sid, t, bool(reasons), tuple(reasons)))
    return out
