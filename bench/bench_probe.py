"""Probe benchmarks: collector CPU cost with 20 running services, ingest points/s next to a bare
`executemany` into the same schema, and query latency with 7 days of data loaded.

Run: `make bench-probe` (or `.venv/bin/python bench/bench_probe.py [--quick]`). Everything is local: real
child processes, real SQLite files in a temporary directory that is removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import structlog

from core.bus import EventBus
from core.ports import InstanceInfo, ServiceState
from core.schema import CORE_MIGRATIONS
from core.store import Store
from probe.config import ProbeConfig
from probe.rollup import FIVE_S, ONE_M
from probe.service import ProbeService
from probe.tsdb import METRICS_MIGRATIONS, MetricsStore, labels_key


def wchar() -> int:
    """Bytes this process has passed to write(2) so far (the WAL and database writes here)."""
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("wchar:")).split()[1])


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Inventory:
    def __init__(self, items: list[InstanceInfo]) -> None:
        self.items = items

    def instances(self) -> list[InstanceInfo]:
        return self.items

    def service_states(self) -> list[ServiceState]:
        return []


def spawn_sleepers(n: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"]) for _ in range(n)]


async def bench_collector(tmp: Path, seconds: float) -> None:
    children = spawn_sleepers(20)
    try:
        inv = Inventory(
            [
                InstanceInfo(f"svc{i:02d}", f"svc{i:02d}-1", "process", "running", pid=p.pid)
                for i, p in enumerate(children)
            ]
        )
        # Reference: the same loop doing nothing for the same time.
        c0, w0 = cpu_s(), time.monotonic()
        await asyncio.sleep(seconds / 2)
        idle_pct = 100 * (cpu_s() - c0) / (time.monotonic() - w0)

        store = Store(tmp / "state.db")
        await store.open()
        await store.migrate("core", CORE_MIGRATIONS)
        bus = EventBus(store)
        await bus.start()
        svc = ProbeService(ProbeConfig(interval_s=1.0), tmp, store, bus, inventory=lambda: inv)
        await svc.start()
        await svc.wait_ticks(2, 10)  # warm up: first readings have no rates yet
        ticks0, c0, w0, b0 = svc.stats.ticks, cpu_s(), time.monotonic(), wchar()
        coll0, loop0 = svc.stats.collect_cpu_s, svc.stats.loop_cpu_s
        await asyncio.sleep(seconds)
        wall = time.monotonic() - w0
        used = cpu_s() - c0
        written = wchar() - b0
        ticks = svc.stats.ticks - ticks0
        series = len(svc.latest)
        coll = svc.stats.collect_cpu_s - coll0
        loopc = svc.stats.loop_cpu_s - loop0
        await svc.stop(5)
        bus.close()
        await store.close()
        pct = 100 * used / wall
        print(f"collector, 20 services, 1 s interval, {ticks} ticks over {wall:.1f} s, {series} series per tick:")
        print(
            f"  whole process CPU   {pct:6.2f} % of one core   (idle loop reference {idle_pct:.2f} %;"
            f" probe's share {pct - idle_pct:.2f} %)"
        )
        print(
            f"  collector thread    {1000 * coll / max(1, ticks):6.2f} ms CPU per tick;"
            f" loop side {1000 * loopc / max(1, ticks):.2f} ms per tick"
        )
        print(f"  bytes written       {written / max(1, ticks) / 1024:6.1f} KiB per tick (WAL + checkpoints)")
    finally:
        for p in children:
            p.kill()
            p.wait()


async def bench_ingest(tmp: Path, n_series: int, n_ticks: int) -> None:
    db = MetricsStore(tmp / "ingest.db")
    await db.open()
    keys = [("bench_metric", labels_key({"service": f"s{i}"})) for i in range(n_series)]
    t0 = 1_700_000_000
    await db.write(t0 - 1, [(n, k, 0.0) for n, k in keys])  # create the series first
    start = time.perf_counter()
    for tick in range(n_ticks):
        await db.write(t0 + tick, [(n, k, float(i)) for i, (n, k) in enumerate(keys)])
    ours = n_series * n_ticks / (time.perf_counter() - start)
    await db.close()

    path = tmp / "bare.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    for m in METRICS_MIGRATIONS:
        conn.executescript(m.sql)
    start = time.perf_counter()
    for tick in range(n_ticks):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT OR REPLACE INTO points_raw (series, t, v) VALUES (?, ?, ?)",
            [(i + 1, t0 + tick, float(i)) for i in range(n_series)],
        )
        conn.execute("COMMIT")
    bare = n_series * n_ticks / (time.perf_counter() - start)
    conn.close()
    print(f"ingest, {n_ticks} ticks of {n_series} points, one transaction per tick:")
    print(f"  MetricsStore.write  {ours:10,.0f} points/s")
    print(f"  bare executemany    {bare:10,.0f} points/s   (sqlite3, same schema and pragmas)")


async def load_week(db: MetricsStore, now: int, services: int) -> None:
    """7 days of 1 min and 5 s buckets and 24 h of raw points for one host series and `services` services."""
    ids = [await db.series_id("host_cpu_percent", {"cpu": "total"})]
    ids += [
        await db.series_id("service_cpu_percent", {"service": f"svc{i:02d}", "instance": f"svc{i:02d}-1"})
        for i in range(services)
    ]
    week = 7 * 86400
    for n, sid in enumerate(ids):
        base = float(n % 17)
        await db.write_buckets(
            ONE_M, [(sid, t, base + t % 7, base, base + 7, base + 1, 60) for t in range(now - week, now - 60, 60)]
        )
        await db.write_buckets(
            FIVE_S, [(sid, t, base + t % 7, base, base + 7, base + 1, 5) for t in range(now - week, now - 5, 5)]
        )
        async with db.store.transaction() as conn:
            await conn.executemany(
                "INSERT INTO points_raw (series, t, v) VALUES (?, ?, ?)",
                [(sid, t, base + t % 7) for t in range(now - 86400, now)],
            )
    async with db.store.transaction() as conn:
        await conn.executemany(
            "INSERT OR REPLACE INTO rollup_marks (resolution, done_until) VALUES (?, ?)",
            [("5s", now - 5), ("1m", now - 60)],
        )
    await db.close()
    await db.open()


async def bench_query(tmp: Path, services: int, repeat: int) -> None:
    now = (int(time.time()) // 60) * 60
    db = MetricsStore(tmp / "week.db")
    await db.open()
    t = time.perf_counter()
    await load_week(db, now, services)
    counts = await db.counts()
    print(
        f"query, 7 days loaded ({counts['1m']:,} 1 min + {counts['5s']:,} 5 s buckets, {counts['raw']:,} raw points,"
        f" {counts['series']} series; loaded in {time.perf_counter() - t:.0f} s):"
    )

    async def timed(fn) -> list[float]:
        out = []
        for _ in range(repeat):
            s = time.perf_counter()
            await fn()
            out.append(1000 * (time.perf_counter() - s))
        return out

    day = await timed(lambda: db.query("host_cpu_percent", {"cpu": "total"}, now - 86400, now, 60, now=now))
    top = await timed(lambda: db.top("service_cpu_percent", "service", 5, now - 3600, now, now=now))
    q = await db.query("host_cpu_percent", {"cpu": "total"}, now - 86400, now, 60, now=now)
    assert len(q["series"][0]["points"]) == 1440, len(q["series"][0]["points"])
    assert len(await db.top("service_cpu_percent", "service", 5, now - 3600, now, now=now)) == 5
    await db.close()

    # Reference: the same SQL on a plain sqlite3 connection (no asyncio, no thread hop).
    conn = sqlite3.connect(tmp / "week.db")
    sid = conn.execute("SELECT id FROM series WHERE name='host_cpu_percent'").fetchone()[0]
    ids = [r[0] for r in conn.execute("SELECT id FROM series WHERE name='service_cpu_percent'")]
    marks = ",".join("?" * len(ids))

    def bare_day() -> None:  # the statements MetricsStore issues, without asyncio and aiosqlite's thread hop
        conn.execute(
            "SELECT series, t, avg * n, n, min, max FROM points_1m WHERE series IN (?) AND t >= ? AND t < ?",
            (sid, now - 86400, now - 60),
        ).fetchall()
        conn.execute(
            "SELECT series, t, v, 1, v, v FROM points_raw WHERE series IN (?) AND t >= ? AND t < ?",
            (sid, now - 60, now),
        ).fetchall()

    def bare_top() -> None:  # 1 min buckets up to their watermark, then 5 s ones, then the newest raw seconds
        for table, cols, lo, hi in (
            ("points_1m", "SUM(avg * n), SUM(n), MIN(min), MAX(max)", now - 3600, now - 60),
            ("points_5s", "SUM(avg * n), SUM(n), MIN(min), MAX(max)", now - 60, now - 5),
            ("points_raw", "SUM(v), COUNT(*), MIN(v), MAX(v)", now - 5, now),
        ):
            conn.execute(
                f"SELECT series, 0 AS b, {cols} FROM {table} WHERE series IN ({marks}) AND t >= ? AND t < ? "
                "GROUP BY series",
                (*ids, lo, hi),
            ).fetchall()

    def timed_sync(fn) -> list[float]:
        out = []
        for _ in range(repeat):
            s = time.perf_counter()
            fn()
            out.append(1000 * (time.perf_counter() - s))
        return out

    bday, btop = timed_sync(bare_day), timed_sync(bare_top)
    conn.close()

    def fmt(xs: list[float]) -> str:
        return f"median {statistics.median(xs):6.2f} ms, p95 {sorted(xs)[int(0.95 * (len(xs) - 1))]:6.2f} ms"

    print(f"  24 h at 1 min step (1440 points)     {fmt(day)}   (bare SQL {fmt(bday)})")
    print(f"  Top-5 of {services} services, last hour     {fmt(top)}   (bare SQL {fmt(btop)})")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="shorter runs (smoke test of the benchmark)")
    args = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    print(f"host: {os.cpu_count()} cores, python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}")
    with tempfile.TemporaryDirectory(prefix="bench-probe-") as d:
        tmp = Path(d)
        await bench_collector(tmp, 5 if args.quick else 30)
        await bench_ingest(tmp, 1000, 20 if args.quick else 200)
        await bench_query(tmp, 50, 10 if args.quick else 50)


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
