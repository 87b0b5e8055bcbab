"""Retention arithmetic: tables, and the same timestamps run through restic's own `forget` when installed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snap.retention import RetentionPolicy, apply_policy


def _t(s: str) -> float:
    return datetime.fromisoformat(s).replace(tzinfo=UTC).timestamp()


def _kept(snaps: list[tuple[str, float]], policy: RetentionPolicy, *, keep_oldest: bool = True) -> list[str]:
    return [d.id for d in apply_policy(snaps, policy, keep_oldest=keep_oldest) if d.keep]


DAILY_TWICE = [(f"s{i:02d}", _t("2026-11-01T06:00:00") + i * 12 * 3600) for i in range(40)]  # 20 days, 2/day


def test_empty_policy_keeps_everything() -> None:
    assert len(_kept(DAILY_TWICE, RetentionPolicy())) == 40


def test_keep_last() -> None:
    assert _kept(DAILY_TWICE, RetentionPolicy(last=3)) == ["s39", "s38", "s37"]


def test_keep_daily_keeps_the_newest_of_each_day() -> None:
    # s39 is day 20's evening snapshot; one per day going back
    assert _kept(DAILY_TWICE, RetentionPolicy(daily=3), keep_oldest=False) == ["s39", "s37", "s35"]


def test_keep_oldest_when_counts_are_left() -> None:
    snaps = DAILY_TWICE[:4]  # two days
    assert _kept(snaps, RetentionPolicy(daily=7), keep_oldest=False) == ["s03", "s01"]
    assert _kept(snaps, RetentionPolicy(daily=7), keep_oldest=True) == ["s03", "s01", "s00"]


def test_weekly_uses_iso_weeks() -> None:
    # 2026-12-27 is a Sunday (ISO week 52), 2026-12-28 a Monday (week 53 of 2026)
    snaps = [("sun", _t("2026-12-27T10:00:00")), ("mon", _t("2026-12-28T10:00:00")), ("tue", _t("2026-12-29T10:00:00"))]
    assert _kept(snaps, RetentionPolicy(weekly=2), keep_oldest=False) == ["tue", "sun"]


def test_seed_defaults_daily_weekly_monthly() -> None:
    # a year of daily snapshots at 03:00 with the seed's 7 / 4 / 3
    start = datetime(2026, 1, 1, 3, tzinfo=UTC)
    snaps = [(f"d{i:03d}", (start + timedelta(days=i)).timestamp()) for i in range(365)]
    kept = _kept(snaps, RetentionPolicy(daily=7, weekly=4, monthly=3), keep_oldest=False)
    days = sorted(datetime.fromtimestamp(dict(snaps)[k], UTC).date().isoformat() for k in kept)
    # monthly: Dec 31, Nov 30, Oct 31; weekly (ISO): Dec 31 (week 53), 27, 20, 13; daily: Dec 25..31
    assert days == [
        "2026-10-31",
        "2026-11-30",
        "2026-12-13",
        "2026-12-20",
        "2026-12-25",
        "2026-12-26",
        "2026-12-27",
        "2026-12-28",
        "2026-12-29",
        "2026-12-30",
        "2026-12-31",
    ]


def test_unlimited() -> None:
    assert len(_kept(DAILY_TWICE, RetentionPolicy(daily=-1), keep_oldest=False)) == 20


def test_reasons() -> None:
    d = apply_policy(DAILY_TWICE, RetentionPolicy(last=1, daily=1))[0]
    assert d.reasons == ("last", "daily")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 400 * 86400), min_size=0, max_size=40, unique=True),
    st.integers(0, 5),
    st.integers(0, 5),
    st.integers(0, 4),
    st.integers(0, 3),
)
def test_properties(offsets: list[int], last: int, daily: int, weekly: int, monthly: int) -> None:
    snaps = [(f"x{o}", 1_700_000_000.0 + o) for o in offsets]
    policy = RetentionPolicy(last=last, daily=daily, weekly=weekly, monthly=monthly)
    decisions = apply_policy(snaps, policy, keep_oldest=False)
    kept = [d for d in decisions if d.keep]
    if policy.empty():
        assert len(kept) == len(snaps)
        return
    assert len(kept) <= last + daily + weekly + monthly
    if snaps:
        assert decisions[0].keep  # the newest is always kept by a non-empty policy
    assert [d.id for d in decisions[:last]] == [d.id for d in kept if "last" in d.reasons]


# --- the same timestamps through restic -------------------------------------------------------------


def _restic_version() -> tuple[int, int] | None:
    exe = shutil.which("restic")
    if not exe:
        return None
    out = subprocess.run([exe, "version"], capture_output=True, text=True, check=True).stdout
    m = re.search(r"restic (\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else None


@pytest.mark.skipif(_restic_version() is None, reason="restic is not installed (apt-get install restic)")
def test_same_as_restic(tmp_path: Path) -> None:
    version = _restic_version()
    assert version is not None
    env = {
        **os.environ,
        "RESTIC_REPOSITORY": str(tmp_path / "repo"),
        "RESTIC_PASSWORD": "test",
        "TZ": "UTC",
        "RESTIC_CACHE_DIR": str(tmp_path / "cache"),
    }
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    subprocess.run(["restic", "init"], env=env, check=True, capture_output=True)
    # irregular times over ~10 weeks: gaps, several per day, a month and ISO-week boundary
    start = datetime(2026, 10, 20, 1, 30, tzinfo=UTC)
    hours = [0, 5, 23, 26, 49, 50, 100, 170, 171, 300, 301, 500, 720, 721, 900, 1000, 1100, 1200, 1500, 1680]
    times = [start + timedelta(hours=h, minutes=h % 7) for h in hours]
    ids: dict[str, float] = {}
    for t in times:
        out = subprocess.run(
            ["restic", "backup", "--json", "--host", "h", "--time", t.strftime("%Y-%m-%d %H:%M:%S"), str(src)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        summary = [json.loads(line) for line in out.splitlines() if '"summary"' in line][-1]
        ids[summary["snapshot_id"][:8]] = t.timestamp()
    snaps = list(ids.items())
    policies = [
        RetentionPolicy(last=3),
        RetentionPolicy(daily=7, weekly=4, monthly=3),
        RetentionPolicy(last=2, daily=3, weekly=2),
        RetentionPolicy(weekly=3),
        RetentionPolicy(monthly=5),
        RetentionPolicy(daily=30),
    ]
    for p in policies:
        args = [
            f"--keep-{k}={v}"
            for k, v in (("last", p.last), ("daily", p.daily), ("weekly", p.weekly), ("monthly", p.monthly))
            if v
        ]
        out = subprocess.run(
            ["restic", "forget", "--dry-run", "--json", *args], env=env, check=True, capture_output=True, text=True
        ).stdout
        groups = json.loads(out)
        restic_kept = {s["id"][:8] for g in groups for s in (g.get("keep") or [])}
        ours = set(_kept(snaps, p, keep_oldest=version >= (0, 16)))
        assert ours == restic_kept, (p, sorted(ours ^ restic_kept))
