"""The metrics time-series store: `metrics.db`, its own SQLite (WAL) file next to `state.db`.

Schema: `series` maps (name, labels) to an id; `points_raw` holds raw 1-second points keyed by
(t, series), so each tick appends at the end of the table and dirties a page or two, not one page per
series (with (series, t) every tick rewrote every series' last page into the WAL: ~0.7 MiB per tick
for 180 series); raw points are read by time range (rollups, short queries, the newest seconds).
`points_5s` and `points_1m` hold rollup buckets (avg/min/max/last/n) keyed by (series, t), so a
series' range is one contiguous B-tree scan — they are written once per bucket, not every second.
`rollup_marks` remembers how far each rollup has got. All point tables are `WITHOUT ROWID`.

Writes: one transaction per tick for all its points (`write`). Rollups (`rollup`) and retention
(`apply_retention`) run incrementally in short transactions: each pass covers a bounded time span, and
its source points are read through the reader connection (WAL) before the writer lock is taken.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from core.errors import BadRequest
from core.store import Migration, Store
from probe.rollup import (
    FIVE_S,
    ONE_M,
    RAW,
    RESOLUTIONS,
    Bucket,
    Resolution,
    align,
    choose_resolution,
    merge_buckets,
    retention_bound,
    rollup_points,
    rollup_span,
)

log = structlog.get_logger("probe.tsdb")

COMPONENT = "probe_metrics"

_BUCKET_COLUMNS = """
    series INTEGER NOT NULL,
    t INTEGER NOT NULL,
    avg REAL NOT NULL,
    min REAL NOT NULL,
    max REAL NOT NULL,
    last REAL NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (series, t)
"""

METRICS_MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "series, raw points, 5s and 1m rollups",
        f"""
        CREATE TABLE series (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            labels TEXT NOT NULL,
            UNIQUE (name, labels)
        );
        CREATE TABLE points_raw (
            series INTEGER NOT NULL,
            t INTEGER NOT NULL,
            v REAL NOT NULL,
            PRIMARY KEY (series, t)
        ) WITHOUT ROWID;
        CREATE TABLE points_5s ({_BUCKET_COLUMNS}) WITHOUT ROWID;
        CREATE TABLE points_1m ({_BUCKET_COLUMNS}) WITHOUT ROWID;
        CREATE TABLE rollup_marks (
            resolution TEXT PRIMARY KEY,
            done_until INTEGER NOT NULL
        );
        """,
    ),
    Migration(
        2,
        "raw points keyed by (t, series): appends instead of one dirty page per series per tick",
        """
        CREATE TABLE points_raw_by_time (
            t INTEGER NOT NULL,
            series INTEGER NOT NULL,
            v REAL NOT NULL,
            PRIMARY KEY (t, series)
        ) WITHOUT ROWID;
        INSERT INTO points_raw_by_time (t, series, v) SELECT t, series, v FROM points_raw;
        DROP TABLE points_raw;
        ALTER TABLE points_raw_by_time RENAME TO points_raw;
        """,
    ),
]

DEFAULT_KEEP_S: Mapping[str, float] = {"raw": 86400.0, "5s": 7 * 86400.0, "1m": 30 * 86400.0}
MAX_POINTS_PER_SERIES = 20_000

# Each rollup pass covers at most this much source time (keeps writer-lock holds short).
_MAX_SPAN_S = {"5s": 600, "1m": 3600}
# Raw retention deletes at most this much time per transaction.
_RETENTION_SLICE_S = 600
# A bucket is rolled up this long after it closes, so the tick writing its last second has landed.
GRACE_S = 3.0


def labels_key(labels: Mapping[str, str]) -> str:
    """The canonical text of a label set (sorted keys, compact JSON): part of a series' identity."""
    return json.dumps(dict(sorted(labels.items())), separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class SeriesRef:
    id: int
    name: str
    labels: Mapping[str, str]


class MetricsStore:
    """Series, points and rollups in `metrics.db`. Safe for concurrent use by tasks of one loop."""

    def __init__(self, path: Path, *, keep_s: Mapping[str, float] | None = None) -> None:
        self.path = path
        self.keep_s = {**DEFAULT_KEEP_S, **(keep_s or {})}
        # metrics.db is history, possibly far larger than the state: one pre-upgrade copy, none over 256 MiB
        self.store = Store(path, synchronous="NORMAL", upgrade_backups_keep=1, upgrade_backup_max_bytes=256 << 20)
        self._ids: dict[tuple[str, str], int] = {}
        self._by_name: dict[str, list[SeriesRef]] = {}
        self._marks: dict[str, int] = {}  # resolution → rolled up before this second

    # --- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> None:
        await self.store.open()
        await self.store.migrate(COMPONENT, METRICS_MIGRATIONS)
        for row in await self.store.fetchall("SELECT id, name, labels FROM series"):
            self._remember(int(row["id"]), row["name"], row["labels"])
        for row in await self.store.fetchall("SELECT resolution, done_until FROM rollup_marks"):
            self._marks[row[0]] = int(row[1])

    async def close(self) -> None:
        await self.store.close()

    def _remember(self, sid: int, name: str, key: str) -> None:
        self._ids[(name, key)] = sid
        self._by_name.setdefault(name, []).append(SeriesRef(sid, name, json.loads(key)))

    # --- writes ---------------------------------------------------------------------------------

    async def write(self, t: int, points: Sequence[tuple[str, str, float]]) -> int:
        """Store one tick's points `(name, labels_key, value)` at second `t`, in one transaction.

        A point for a (series, t) already stored replaces it. Returns the number of points written.
        """
        return await self.write_many([(name, key, t, v) for name, key, v in points])

    async def write_many(self, points: Sequence[tuple[str, str, int, float]]) -> int:
        """Store `(name, labels_key, t, value)` points in one transaction (also used by loaders)."""
        if not points:
            return 0
        new: dict[tuple[str, str], int] = {}
        rows: list[tuple[int, int, float]] = []
        async with self.store.transaction() as db:
            for name, key, t, v in points:
                sid = self._ids.get((name, key)) or new.get((name, key))
                if sid is None:
                    cur = await db.execute(
                        "INSERT INTO series (name, labels) VALUES (?, ?) "
                        "ON CONFLICT (name, labels) DO UPDATE SET name = excluded.name RETURNING id",
                        (name, key),
                    )
                    row = await cur.fetchone()
                    await cur.close()
                    assert row is not None
                    sid = new[(name, key)] = int(row[0])
                rows.append((sid, int(t), float(v)))
            await db.executemany("INSERT OR REPLACE INTO points_raw (series, t, v) VALUES (?, ?, ?)", rows)
        for (name, key), sid in new.items():  # only once committed
            self._remember(sid, name, key)
        return len(rows)

    async def write_buckets(self, res: Resolution, buckets: Sequence[Bucket]) -> None:
        """Store rollup buckets directly (the rollup job and data loaders)."""
        async with self.store.transaction() as db:
            await db.executemany(
                f"INSERT OR REPLACE INTO {res.table} (series, t, avg, min, max, last, n) VALUES (?, ?, ?, ?, ?, ?, ?)",
                buckets,
            )

    async def series_id(self, name: str, labels: Mapping[str, str]) -> int:
        """The id of a series, creating it if new (for loaders and tests)."""
        key = labels_key(labels)
        if (name, key) not in self._ids:
            async with self.store.transaction() as db:
                cur = await db.execute(
                    "INSERT INTO series (name, labels) VALUES (?, ?) "
                    "ON CONFLICT (name, labels) DO UPDATE SET name = excluded.name RETURNING id",
                    (name, key),
                )
                row = await cur.fetchone()
                await cur.close()
            assert row is not None
            self._remember(int(row[0]), name, key)
        return self._ids[(name, key)]

    # --- rollups and retention --------------------------------------------------------------------

    async def rollup(self, now: float) -> dict[str, int]:
        """Roll complete raw seconds into 5 s buckets and complete 5 s buckets into 1 min ones, one
        bounded span each per call. Returns the number of buckets written per resolution."""
        written = {}
        for target, source in ((FIVE_S, RAW), (ONE_M, FIVE_S)):
            written[target.name] = await self._rollup_one(target, source, now)
        return written

    async def _rollup_one(self, target: Resolution, source: Resolution, now: float) -> int:
        row = await self.store.fetchone("SELECT done_until FROM rollup_marks WHERE resolution = ?", (target.name,))
        done = int(row[0]) if row else None
        oldest = None
        if done is None:
            r = await self.store.fetchone(f"SELECT MIN(t) FROM {source.table}")
            oldest = int(r[0]) if r and r[0] is not None else None
        span = rollup_span(done, oldest, now, target.width_s, grace_s=GRACE_S, max_span_s=_MAX_SPAN_S[target.name])
        if span is None:
            return 0
        start, end = span
        if source is not RAW:
            # Never past what the source itself has rolled up, or a bucket would be made from part of it.
            ready = self._marks.get(source.name)
            if ready is None:
                return 0
            end = min(end, ready - ready % target.width_s)
            if end <= start:
                return 0
        if source is RAW:
            rows = await self.store.fetchall("SELECT series, t, v FROM points_raw WHERE t >= ? AND t < ?", (start, end))
            buckets = rollup_points(((r[0], r[1], r[2]) for r in rows), target.width_s)
        else:
            rows = await self.store.fetchall(
                f"SELECT series, t, avg, min, max, last, n FROM {source.table} WHERE t >= ? AND t < ?", (start, end)
            )
            buckets = merge_buckets((tuple(r) for r in rows), target.width_s)
        async with self.store.transaction() as db:
            await db.executemany(
                f"INSERT OR REPLACE INTO {target.table} (series, t, avg, min, max, last, n) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                buckets,
            )
            await db.execute(
                "INSERT INTO rollup_marks (resolution, done_until) VALUES (?, ?) "
                "ON CONFLICT (resolution) DO UPDATE SET done_until = excluded.done_until",
                (target.name, end),
            )
        self._marks[target.name] = end
        return len(buckets)

    async def apply_retention(self, now: float) -> dict[str, int]:
        """Delete what each resolution keeps no longer: raw points as one range, buckets per series (each
        delete an index seek)."""
        ids = [(sid,) for sid in self._ids.values()]
        deleted: dict[str, int] = {}
        for res in RESOLUTIONS:
            bound = retention_bound(now, self.keep_s[res.name], res.width_s)
            deleted[res.name] = 0
            if res is RAW:
                # Clustered by time: the oldest rows are one range at the front, deleted a bounded slice
                # per transaction so a large backlog (a shortened retention) never holds the writer long.
                row = await self.store.fetchone("SELECT MIN(t) FROM points_raw")
                cur = int(row[0]) if row and row[0] is not None else bound + 1
                while cur <= bound:
                    cur = min(bound, cur + _RETENTION_SLICE_S)
                    async with self.store.transaction() as db:
                        before = db.total_changes
                        await db.execute("DELETE FROM points_raw WHERE t <= ?", (cur,))
                        deleted[res.name] += db.total_changes - before
                    cur += 1
                continue
            async with self.store.transaction() as db:
                before = db.total_changes
                await db.executemany(
                    f"DELETE FROM {res.table} WHERE series = ? AND t <= ?", [(sid, bound) for (sid,) in ids]
                )
                deleted[res.name] = db.total_changes - before
        return deleted

    # --- queries --------------------------------------------------------------------------------

    def series(self, name: str, match: Mapping[str, str] | None = None) -> list[SeriesRef]:
        """Known series of `name` whose labels include all of `match`."""
        refs = self._by_name.get(name, [])
        if not match:
            return list(refs)
        return [r for r in refs if all(r.labels.get(k) == v for k, v in match.items())]

    def names(self) -> list[str]:
        return sorted(self._by_name)

    async def query(
        self,
        name: str,
        match: Mapping[str, str] | None,
        from_t: float,
        to_t: float,
        step_s: int,
        *,
        now: float | None = None,
    ) -> dict[str, Any]:
        """Points of every matching series in `[from_t, to_t)`, one per `step_s` bucket (aligned to
        multiples of `step_s`), from the coarsest resolution that serves that step: `[t, avg, min, max]`."""
        now = time.time() if now is None else now
        if step_s < 1:
            raise BadRequest(f"step {step_s} is below 1 second", hint="pass step=1 or more")
        if to_t <= from_t:
            raise BadRequest(f"'to' ({to_t:.0f}) must be after 'from' ({from_t:.0f})")
        res = choose_resolution(step_s, from_t, now, self.keep_s)
        if step_s % res.width_s:
            step_s = -(-step_s // res.width_s) * res.width_s
        start, end = align(from_t, step_s), int(to_t)
        if (end - start) / step_s > MAX_POINTS_PER_SERIES:
            raise BadRequest(
                f"{(end - start) // step_s} points per series asked for; at most {MAX_POINTS_PER_SERIES}",
                hint="use a larger step or a shorter range",
            )
        refs = self.series(name, match)
        out: dict[str, Any] = {
            "name": name,
            "resolution": res.name,
            "step": step_s,
            "from": start,
            "to": end,
            "series": [],
        }
        if not refs:
            return out
        by_id: dict[int, dict[str, Any]] = {r.id: {"labels": dict(r.labels), "points": []} for r in refs}
        acc = await self._aggregate(list(by_id), res, start, end, step_s, now)
        for (sid, b), (total, n, lo, hi) in sorted(acc.items()):
            by_id[sid]["points"].append([b, total / n, lo, hi])
        out["series"] = [s for s in by_id.values() if s["points"]]
        return out

    def _segments(self, res: Resolution, start: int, end: int, now: float) -> list[tuple[Resolution, int, int]]:
        """Which table serves which part of `[start, end)`: `res` for its whole buckets up to its rollup
        watermark; the finer tables for a ragged head or tail and for the newest seconds, not rolled up
        yet — unless the finer table no longer keeps that time, then the coarse bucket serves it whole."""
        if end <= start:
            return []
        if res is RAW:
            return [(RAW, start, end)]
        w = res.width_s
        finer = RESOLUTIONS[RESOLUTIONS.index(res) - 1]
        mark = self._marks.get(res.name)
        if mark is None:
            return self._segments(finer, start, end, now)
        finer_from = now - self.keep_s[finer.name]
        lo = start - start % w if start < finer_from else -(-start // w) * w
        hi = min(mark, end - end % w if end > finer_from else -(-end // w) * w)
        if hi <= lo:
            return self._segments(finer, start, end, now)
        return [*self._segments(finer, start, lo, now), (res, lo, hi), *self._segments(finer, hi, end, now)]

    async def _aggregate(
        self, ids: list[int], res: Resolution, start: int, end: int, step_s: int | None, now: float
    ) -> dict[tuple[int, int], list[float]]:
        """(series, bucket) → [sum, count, min, max] over `[start, end)`; one bucket per series when
        `step_s` is None. Buckets that straddle two tables are merged with counts as weights."""
        acc: dict[tuple[int, int], list[float]] = {}
        marks = ",".join("?" * len(ids))
        for r, s0, s1 in self._segments(res, start, end, now):
            if step_s == r.width_s:  # one row per bucket already: no grouping (and no temporary B-tree)
                cols = "t, v, 1, v, v" if r is RAW else "t, avg * n, n, min, max"
                sql = f"SELECT series, {cols} FROM {r.table} WHERE series IN ({marks}) AND t >= ? AND t < ?"
                rows = await self.store.fetchall(sql, (*ids, s0, s1))
            else:
                rows = await self._grouped(r, ids, marks, s0, s1, step_s)
            for sid, b, total, n, lo, hi in rows:
                cur = acc.get((sid, b))
                if cur is None:
                    acc[(sid, b)] = [total, n, lo, hi]
                else:
                    cur[0] += total
                    cur[1] += n
                    cur[2] = min(cur[2], lo)
                    cur[3] = max(cur[3], hi)
        return acc

    async def _grouped(
        self, r: Resolution, ids: list[int], marks: str, s0: int, s1: int, step_s: int | None
    ) -> list[Any]:
        """Rows (series, bucket, sum, count, min, max) of table `r` grouped into `step_s` buckets."""
        bucket = "t - t % ?" if step_s else "0"
        cols = "SUM(v), COUNT(*), MIN(v), MAX(v)" if r is RAW else "SUM(avg * n), SUM(n), MIN(min), MAX(max)"
        # Grouping by series alone follows the (series, t) key: no temporary B-tree for Top-N.
        group = "series, b" if step_s else "series"
        sql = (
            f"SELECT series, {bucket} AS b, {cols} FROM {r.table} "
            f"WHERE series IN ({marks}) AND t >= ? AND t < ? GROUP BY {group}"
        )
        params = ((step_s,) if step_s else ()) + (*ids, s0, s1)
        return await self.store.fetchall(sql, params)

    async def top(
        self, name: str, by: str, n: int, from_t: float, to_t: float, *, now: float | None = None
    ) -> list[dict[str, Any]]:
        """The `n` largest values of `name` averaged over `[from_t, to_t)`, summed per value of label `by`
        (e.g. the instances of one service); each `{by: value, "value": v, "series": count}`."""
        now = time.time() if now is None else now
        if to_t <= from_t:
            raise BadRequest(f"'to' ({to_t:.0f}) must be after 'from' ({from_t:.0f})")
        window = to_t - from_t
        # The coarsest table with a few buckets in the window; the finer ones fill its ragged edges and
        # the newest, not yet rolled up seconds (see `_segments`).
        res = choose_resolution(60 if window >= 600 else 5 if window >= 50 else 1, from_t, now, self.keep_s)
        refs = [r for r in self.series(name) if by in r.labels]
        if not refs:
            return []
        acc = await self._aggregate([r.id for r in refs], res, int(from_t), int(to_t), None, now)
        label_of = {r.id: r.labels[by] for r in refs}
        groups: dict[str, list[float]] = {}
        for (sid, _), (total, count, _lo, _hi) in acc.items():
            groups.setdefault(label_of[sid], []).append(total / count)
        ranked = sorted(((k, sum(vs), len(vs)) for k, vs in groups.items()), key=lambda g: (-g[1], g[0]))
        return [{by: k, "value": v, "series": c} for k, v, c in ranked[:n]]

    async def counts(self) -> dict[str, int]:
        """Rows per table (for status and tests)."""
        out = {"series": len(self._ids)}
        for res in RESOLUTIONS:
            row = await self.store.fetchone(f"SELECT COUNT(*) FROM {res.table}")
            out[res.name] = int(row[0]) if row else 0
        return out
