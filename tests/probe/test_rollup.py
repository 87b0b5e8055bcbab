"""Rollup, retention and resolution arithmetic: tables and properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probe.rollup import (
    FIVE_S,
    ONE_M,
    RAW,
    align,
    choose_resolution,
    default_step,
    merge_buckets,
    retention_bound,
    rollup_points,
    rollup_span,
)

KEEP = {"raw": 86400.0, "5s": 7 * 86400.0, "1m": 30 * 86400.0}


def test_rollup_across_bucket_edges() -> None:
    # series 1: t=3,4 in [0,5); t=5,9 in [5,10); series 2: one point at t=10
    pts = [(1, 5, 10.0), (1, 3, 1.0), (1, 4, 3.0), (1, 9, 20.0), (2, 10, 7.0)]
    assert rollup_points(pts, 5) == [
        (1, 0, 2.0, 1.0, 3.0, 3.0, 2),
        (1, 5, 15.0, 10.0, 20.0, 20.0, 2),
        (2, 10, 7.0, 7.0, 7.0, 7.0, 1),
    ]


def test_merge_weights_averages_by_count() -> None:
    b5 = [(1, 55, 10.0, 10.0, 10.0, 10.0, 1), (1, 0, 1.0, 0.0, 2.0, 2.0, 5), (1, 60, 4.0, 4.0, 4.0, 4.0, 5)]
    assert merge_buckets(b5, 60) == [
        (1, 0, (1.0 * 5 + 10.0) / 6, 0.0, 10.0, 10.0, 6),
        (1, 60, 4.0, 4.0, 4.0, 4.0, 5),
    ]


@given(st.lists(st.tuples(st.integers(1, 3), st.integers(0, 600), st.floats(-1e6, 1e6)), min_size=1, max_size=200))
def test_two_stage_rollup_equals_direct_rollup(points: list[tuple[int, int, float]]) -> None:
    # One point per (series, t), as the store keys them.
    pts = list({(s, t): (s, t, v) for s, t, v in points}.values())
    via_5s = merge_buckets(rollup_points(pts, 5), 60)
    direct = rollup_points(pts, 60)
    assert len(via_5s) == len(direct)
    for a, b in zip(via_5s, direct, strict=True):
        assert a[:2] == b[:2] and a[3:] == b[3:]
        assert a[2] == pytest.approx(b[2], rel=1e-9, abs=1e-6)


def test_rollup_span() -> None:
    # nothing yet
    assert rollup_span(None, None, 1000.0, 5, grace_s=2, max_span_s=3600) is None
    # first pass starts at the oldest point's bucket; ends at the last complete bucket before now-grace
    assert rollup_span(None, 903, 1000.0, 5, grace_s=2, max_span_s=3600) == (900, 995)
    # watermark; bounded span
    assert rollup_span(100, 100, 100000.0, 60, grace_s=2, max_span_s=600) == (100, 700)
    # the current bucket is not complete yet
    assert rollup_span(995, 0, 1001.0, 5, grace_s=2, max_span_s=3600) is None
    assert rollup_span(995, 0, 1002.0, 5, grace_s=2, max_span_s=3600) == (995, 1000)


@given(st.floats(1e6, 2e9), st.integers(1, 10**6), st.sampled_from([1, 5, 60]), st.integers(0, 2 * 10**6))
def test_retention_removes_exactly_what_is_older_than_the_window(now: float, keep: int, width: int, age: int) -> None:
    t = align(now - age, width)
    bound = retention_bound(now, keep, width)
    outside = t < now - keep if width == 1 else t + width <= now - keep
    assert (t <= bound) is outside


@pytest.mark.parametrize(
    ("step", "age", "want"),
    [
        (1, 60, RAW),
        (3, 60, RAW),  # 5 does not divide 3
        (5, 60, FIVE_S),
        (10, 3600, FIVE_S),
        (30, 3600, FIVE_S),
        (60, 3600, ONE_M),
        (300, 3600, ONE_M),
        (1, 2 * 86400, FIVE_S),  # raw has aged out: coarser
        (5, 8 * 86400, ONE_M),
        (60, 40 * 86400, ONE_M),  # nothing coarser exists
    ],
)
def test_choose_resolution(step: int, age: float, want: object) -> None:
    now = 1_700_000_000.0
    assert choose_resolution(step, now - age, now, KEEP) == want


def test_default_step_and_align() -> None:
    assert default_step(0, 300) == 1
    assert default_step(0, 3600) == 15
    assert default_step(0, 86400) == 300
    assert default_step(0, 10**9) == 86400
    assert align(119.9, 60) == 60
    assert align(-1, 60) == -60
    assert math.isclose(align(1_700_000_007, 5), 1_700_000_005)
