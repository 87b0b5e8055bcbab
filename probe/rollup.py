"""Rollup, retention and resolution arithmetic of the time-series store. Pure: times are passed in.

Theory of operation: raw points are instants `(series, t, v)` with `t` in whole seconds. A rollup
bucket of width `w` starting at `t` (a multiple of `w`) covers `[t, t + w)` and keeps the average,
minimum, maximum, last value and the count of points it summarises. 5-second buckets are made from
raw points, 1-minute buckets from 5-second ones; merging weights each average by its count, so a
1-minute average equals the average of the raw points under it. A bucket is made once it is complete
(its end is older than `now - grace`), in bounded spans, and remembered by a watermark (`done_until`).
Retention removes raw points older than `now - keep` and buckets whose end is at or before it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Resolution:
    name: str  # "raw" | "5s" | "1m"
    width_s: int
    table: str


RAW = Resolution("raw", 1, "points_raw")
FIVE_S = Resolution("5s", 5, "points_5s")
ONE_M = Resolution("1m", 60, "points_1m")
RESOLUTIONS: tuple[Resolution, ...] = (RAW, FIVE_S, ONE_M)
BY_NAME = {r.name: r for r in RESOLUTIONS}

# (series, t, avg, min, max, last, n)
Bucket = tuple[int, int, float, float, float, float, int]

# Steps offered when the caller gives none: about `_TARGET_POINTS` points per query.
_NICE_STEPS = (1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)
_TARGET_POINTS = 300


def rollup_points(points: Iterable[tuple[int, int, float]], width_s: int) -> list[Bucket]:
    """Raw `(series, t, v)` points → buckets of `width_s`, sorted by (series, t)."""
    out: list[Bucket] = []
    cur_key: tuple[int, int] | None = None
    total = lo = hi = last = 0.0
    n = 0
    for series, t, v in sorted(points, key=lambda p: (p[0], p[1])):
        key = (series, t - t % width_s)
        if key != cur_key:
            if cur_key is not None:
                out.append((cur_key[0], cur_key[1], total / n, lo, hi, last, n))
            cur_key, total, lo, hi, n = key, 0.0, v, v, 0
        total += v
        lo = min(lo, v)
        hi = max(hi, v)
        last = v
        n += 1
    if cur_key is not None:
        out.append((cur_key[0], cur_key[1], total / n, lo, hi, last, n))
    return out


def merge_buckets(buckets: Iterable[Bucket], width_s: int) -> list[Bucket]:
    """Finer buckets → buckets of `width_s` (a multiple of theirs), averages weighted by count."""
    out: list[Bucket] = []
    cur_key: tuple[int, int] | None = None
    weighted = lo = hi = last = 0.0
    n = 0
    for series, t, avg, bmin, bmax, blast, bn in sorted(buckets, key=lambda b: (b[0], b[1])):
        key = (series, t - t % width_s)
        if key != cur_key:
            if cur_key is not None:
                out.append((cur_key[0], cur_key[1], weighted / n, lo, hi, last, n))
            cur_key, weighted, lo, hi, n = key, 0.0, bmin, bmax, 0
        weighted += avg * bn
        lo = min(lo, bmin)
        hi = max(hi, bmax)
        last = blast
        n += bn
    if cur_key is not None:
        out.append((cur_key[0], cur_key[1], weighted / n, lo, hi, last, n))
    return out


def rollup_span(
    done_until: int | None, oldest_t: int | None, now: float, width_s: int, *, grace_s: float, max_span_s: int
) -> tuple[int, int] | None:
    """The next `[start, end)` to roll up into `width_s` buckets, or None when nothing is complete.

    `done_until` is the watermark (everything before it is rolled up); `oldest_t` the oldest source
    point, used when there is no watermark yet. `end` is a bucket edge no later than `now - grace_s`
    and at most `max_span_s` after `start`, so one pass never holds the writer for long.
    """
    complete = math.floor((now - grace_s) / width_s) * width_s
    if done_until is None:
        if oldest_t is None:
            return None
        done_until = oldest_t - oldest_t % width_s
    end = min(complete, done_until + max(width_s, max_span_s - max_span_s % width_s))
    if end <= done_until:
        return None
    return done_until, end


def retention_bound(now: float, keep_s: float, width_s: int) -> int:
    """The largest `t` to delete (inclusive) at resolution `width_s` keeping `keep_s` seconds.

    Raw points (`width_s == 1`) are instants: deleted when `t < now - keep_s`. A bucket is deleted
    when its end is at or before `now - keep_s`: `t + width_s <= now - keep_s`.
    """
    edge = now - keep_s
    if width_s == 1:
        return math.ceil(edge) - 1
    return math.floor(edge - width_s)


def choose_resolution(step_s: int, from_t: float, now: float, keep_s: Mapping[str, float]) -> Resolution:
    """The coarsest resolution whose width divides `step_s`; coarser still when that one's retention no
    longer reaches back to `from_t` (then the points come out at its width)."""
    idx = 0
    for i, r in enumerate(RESOLUTIONS):
        if r.width_s <= step_s and step_s % r.width_s == 0:
            idx = i
    while idx < len(RESOLUTIONS) - 1 and from_t < now - keep_s[RESOLUTIONS[idx].name]:
        idx += 1
    return RESOLUTIONS[idx]


def default_step(from_t: float, to_t: float) -> int:
    """A round step giving about 300 points over `[from_t, to_t)`."""
    want = max(1.0, (to_t - from_t) / _TARGET_POINTS)
    for s in _NICE_STEPS:
        if s >= want:
            return s
    return _NICE_STEPS[-1]


def align(t: float, step_s: int) -> int:
    """The start of the `step_s` bucket holding `t`."""
    return math.floor(t / step_s) * step_s
