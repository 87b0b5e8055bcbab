"""The metrics store on real SQLite files: writes, rollups across bucket edges, retention, queries, Top-N."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.errors import BadRequest
from probe.rollup import BY_NAME
from probe.tsdb import MetricsStore, labels_key

T0 = 1_699_999_980  # a multiple of 60 (and of 5)
assert T0 % 60 == 0


@pytest.fixture
async def tsdb(tmp_path: Path) -> AsyncIterator[MetricsStore]:
    db = MetricsStore(tmp_path / "metrics.db")
    await db.open()
    yield db
    await db.close()


async def test_schema_is_in_its_own_wal_file_and_series_survive_reopen(tmp_path: Path) -> None:
    db = MetricsStore(tmp_path / "metrics.db")
    await db.open()
    await db.write(T0, [("host_load1", labels_key({}), 0.5), ("cpu", labels_key({"service": "a"}), 3.0)])
    mode = await db.store.fetchone("PRAGMA journal_mode")
    assert mode is not None and mode[0] == "wal"
    await db.close()
    db2 = MetricsStore(tmp_path / "metrics.db")
    await db2.open()
    assert db2.names() == ["cpu", "host_load1"]
    assert [r.labels for r in db2.series("cpu")] == [{"service": "a"}]
    assert (await db2.counts())["raw"] == 2
    await db2.close()


async def test_rollup_avg_min_max_last_across_bucket_edges(tsdb: MetricsStore) -> None:
    key = labels_key({"k": "v"})
    # Seconds 0..129 with value = second; two 1-minute buckets complete ([0,60), [60,120)), one partial.
    for s in range(130):
        await tsdb.write(T0 + s, [("m", key, float(s))])
    # Not complete yet at T0 + 61 (grace): only the first minute rolls into 1m.
    await tsdb.rollup(T0 + 61)
    await tsdb.rollup(T0 + 64)  # the 1m pass runs after the 5s pass that completes [0, 60)
    rows = await tsdb.store.fetchall("SELECT t, avg, min, max, last, n FROM points_1m ORDER BY t")
    assert [tuple(r) for r in rows] == [(T0, 29.5, 0.0, 59.0, 59.0, 60)]
    for _ in range(3):
        await tsdb.rollup(T0 + 200)
    rows5 = await tsdb.store.fetchall("SELECT t, avg, min, max, last, n FROM points_5s ORDER BY t")
    assert len(rows5) == 26  # [0,130) in 5 s buckets
    assert tuple(rows5[1]) == (T0 + 5, 7.0, 5.0, 9.0, 9.0, 5)
    assert tuple(rows5[-1]) == (T0 + 125, 127.0, 125.0, 129.0, 129.0, 5)
    rows = await tsdb.store.fetchall("SELECT t, avg, min, max, last, n FROM points_1m ORDER BY t")
    # At T0+200 the minute [120, 180) is complete too; its 10 points are all there is of it.
    assert [tuple(r) for r in rows] == [
        (T0, 29.5, 0.0, 59.0, 59.0, 60),
        (T0 + 60, 89.5, 60.0, 119.0, 119.0, 60),
        (T0 + 120, 124.5, 120.0, 129.0, 129.0, 10),
    ]


async def test_retention_removes_exactly_what_is_older_than_each_window(tmp_path: Path) -> None:
    db = MetricsStore(tmp_path / "metrics.db", keep_s={"raw": 100, "5s": 1000, "1m": 6000})
    await db.open()
    key = labels_key({})
    await db.write_many([("m", key, T0 + s, 1.0) for s in range(0, 200)])
    sid = await db.series_id("m", {})
    await db.write_buckets(BY_NAME["5s"], [(sid, T0 + s, 1, 1, 1, 1, 5) for s in range(0, 2000, 5)])
    await db.write_buckets(BY_NAME["1m"], [(sid, T0 + s, 1, 1, 1, 1, 60) for s in range(0, 12000, 60)])
    now = T0 + 150.5
    deleted = await db.apply_retention(now)
    raw = [r[0] for r in await db.store.fetchall("SELECT t FROM points_raw ORDER BY t")]
    assert raw[0] == T0 + 51 and raw[0] - 1 < now - 100 <= raw[0]  # 50 < 50.5 went; 51 stays
    assert deleted["raw"] == 51
    # 5s buckets: [t, t+5) goes when t + 5 <= now - 1000 (< T0): none went
    assert deleted["5s"] == 0
    now2 = T0 + 1500.0
    await db.apply_retention(now2)
    first5 = (await db.store.fetchone("SELECT MIN(t) FROM points_5s"))[0]  # type: ignore[index]
    assert first5 == T0 + 500 - 5 + 5  # T0+495 ends at T0+500 == now2 - 1000: gone; T0+500 stays
    await db.apply_retention(T0 + 6000 + 120)
    first1m = (await db.store.fetchone("SELECT MIN(t) FROM points_1m"))[0]  # type: ignore[index]
    assert first1m == T0 + 120
    await db.close()


async def test_query_picks_resolution_by_step_and_aligns(tsdb: MetricsStore) -> None:
    for s in range(0, 600):
        await tsdb.write_many(
            [
                ("cpu", labels_key({"service": "a"}), T0 + s, float(s % 10)),
                ("cpu", labels_key({"service": "b"}), T0 + s, 50.0),
            ]
        )
    for _ in range(20):
        await tsdb.rollup(T0 + 700)
    now = T0 + 700
    q = await tsdb.query("cpu", {"service": "a"}, T0, T0 + 20, 1, now=now)
    assert q["resolution"] == "raw" and q["step"] == 1
    assert q["series"][0]["points"][:3] == [[T0, 0.0, 0.0, 0.0], [T0 + 1, 1.0, 1.0, 1.0], [T0 + 2, 2.0, 2.0, 2.0]]
    q = await tsdb.query("cpu", {"service": "a"}, T0 + 3, T0 + 20, 10, now=now)
    assert q["resolution"] == "5s" and q["from"] == T0
    assert q["series"][0]["points"] == [[T0, 4.5, 0.0, 9.0], [T0 + 10, 4.5, 0.0, 9.0]]
    q = await tsdb.query("cpu", None, T0, T0 + 600, 60, now=now)
    assert q["resolution"] == "1m"
    assert sorted(s["labels"]["service"] for s in q["series"]) == ["a", "b"]
    a = next(s for s in q["series"] if s["labels"]["service"] == "a")
    assert a["points"][0] == [T0, 4.5, 0.0, 9.0] and len(a["points"]) == 10
    # step 1 over data older than raw retention falls back to 5 s buckets and says so
    old = await tsdb.query("cpu", {"service": "a"}, T0, T0 + 20, 1, now=T0 + 2 * 86400)
    assert old["resolution"] == "5s" and old["step"] == 5
    assert (await tsdb.query("nope", None, T0, T0 + 5, 1, now=now))["series"] == []
    with pytest.raises(BadRequest, match="must be after"):
        await tsdb.query("cpu", None, T0 + 5, T0, 1, now=now)
    with pytest.raises(BadRequest, match="points per series"):
        await tsdb.query("cpu", None, T0 - 2 * 10**6, T0, 1, now=T0)


async def test_top_sums_instances_per_service(tsdb: MetricsStore) -> None:
    pts = []
    for s in range(0, 60):
        pts += [
            ("service_cpu_percent", labels_key({"service": "a", "instance": "a1"}), T0 + s, 10.0),
            ("service_cpu_percent", labels_key({"service": "a", "instance": "a2"}), T0 + s, 15.0),
            ("service_cpu_percent", labels_key({"service": "b", "instance": "b1"}), T0 + s, 20.0),
            ("service_cpu_percent", labels_key({"service": "c", "instance": "c1"}), T0 + s, 1.0),
        ]
    await tsdb.write_many(pts)
    top = await tsdb.top("service_cpu_percent", "service", 2, T0, T0 + 60, now=T0 + 61)
    assert top == [{"service": "a", "value": 25.0, "series": 2}, {"service": "b", "value": 20.0, "series": 1}]
    assert await tsdb.top("service_cpu_percent", "nolabel", 2, T0, T0 + 60, now=T0 + 61) == []


async def test_query_fills_the_not_yet_rolled_up_tail_from_finer_tables(tsdb: MetricsStore) -> None:
    key = labels_key({})
    await tsdb.write_many([("m", key, T0 + s, float(s)) for s in range(0, 200)])
    for _ in range(5):
        await tsdb.rollup(T0 + 97)  # 5 s buckets exist up to T0+90; 1 min ones up to T0+60
    assert tsdb._marks == {"5s": T0 + 90, "1m": T0 + 60}
    q = await tsdb.query("m", None, T0, T0 + 200, 60, now=T0 + 200)
    assert q["resolution"] == "1m"
    # [0,60) from 1m; [60,90) from 5s and [90,120) from raw merge into one bucket; the rest raw
    assert q["series"][0]["points"] == [
        [T0, 29.5, 0.0, 59.0],
        [T0 + 60, 89.5, 60.0, 119.0],
        [T0 + 120, 149.5, 120.0, 179.0],
        [T0 + 180, 189.5, 180.0, 199.0],
    ]
    top = await tsdb.top("m", "nolabel", 1, T0, T0 + 200, now=T0 + 200)
    assert top == []


async def test_a_version_1_database_is_migrated_with_its_points(tmp_path: Path) -> None:
    from core.store import Store
    from probe.tsdb import COMPONENT, METRICS_MIGRATIONS

    old = Store(tmp_path / "metrics.db")
    await old.open()
    await old.migrate(COMPONENT, METRICS_MIGRATIONS[:1])
    await old.execute("INSERT INTO series (id, name, labels) VALUES (1, 'm', '{}')")
    await old.execute("INSERT INTO points_raw (series, t, v) VALUES (1, ?, 4.5)", (T0,))
    await old.close()
    db = MetricsStore(tmp_path / "metrics.db")
    await db.open()
    q = await db.query("m", None, T0, T0 + 1, 1, now=T0 + 1)
    assert q["series"][0]["points"] == [[T0, 4.5, 4.5, 4.5]]
    plan = await db.store.fetchall("EXPLAIN QUERY PLAN SELECT v FROM points_raw WHERE t >= 0 AND t < 10")
    assert "PRIMARY KEY (t>? AND t<?)" in " ".join(r[3] for r in plan)
    await db.close()


async def test_raw_retention_of_a_large_backlog_goes_in_slices_and_exactly(tmp_path: Path) -> None:
    db = MetricsStore(tmp_path / "metrics.db", keep_s={"raw": 100, "5s": 1000, "1m": 6000})
    await db.open()
    await db.write_many([("m", labels_key({"i": str(i)}), T0 + s, 1.0) for s in range(0, 3000, 3) for i in range(2)])
    deleted = await db.apply_retention(T0 + 3000)
    left = [r[0] for r in await db.store.fetchall("SELECT DISTINCT t FROM points_raw ORDER BY t")]
    assert left[0] == T0 + 2901 and all(t >= T0 + 2900 for t in left)  # 2898 < 2900 went, 2901 stayed
    assert deleted["raw"] == 2 * len(range(0, 2900, 3))
    await db.close()


async def test_top_and_query_over_mixed_tables_equal_the_raw_arithmetic(tsdb: MetricsStore) -> None:
    import random

    rng = random.Random(7)
    values = {s: rng.uniform(0, 100) for s in range(0, 1500)}
    await tsdb.write_many([("m", labels_key({"service": "a"}), T0 + s, v) for s, v in values.items()])
    for _ in range(10):
        await tsdb.rollup(T0 + 1337)  # 1 min buckets up to T0+1320, 5 s ones up to T0+1330, raw after
    now = T0 + 1500
    for from_s, to_s in [(0, 1500), (30, 1500), (7, 1333), (61, 1259), (600, 1499), (1321, 1400), (45, 700)]:
        top = await tsdb.top("m", "service", 1, T0 + from_s, T0 + to_s, now=now)
        want = sum(values[s] for s in range(from_s, to_s)) / (to_s - from_s)
        assert top[0]["value"] == pytest.approx(want, rel=1e-9), (from_s, to_s)
    q = await tsdb.query("m", None, T0, T0 + 1500, 60, now=now)
    assert q["resolution"] == "1m"
    for b, avg, lo, hi in q["series"][0]["points"]:
        window = [values[s] for s in range(b - T0, min(b - T0 + 60, 1500))]
        assert avg == pytest.approx(sum(window) / len(window), rel=1e-9)
        assert (lo, hi) == (min(window), max(window))
