"""Rates from counters: table cases and a property over wrapping 32-bit counters."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probe.rates import WRAP_32, WRAP_64, RateTracker, counter_delta, counter_rate, cpu_percent


@pytest.mark.parametrize(
    ("prev", "cur", "want"),
    [
        (100, 150, 50),  # plain growth
        (100, 100, 0),  # idle
        (WRAP_32 - 10, 5, 15),  # 32-bit wrap
        (WRAP_64 - 1, 4, 5),  # 64-bit wrap
        (1000, 10, 10),  # reset: counted again from zero
        (WRAP_32 + 500, 20, 20),  # in a 64-bit counter's low half: a reset, not a wrap
        (WRAP_32 / 4, 3, 3),  # low in a 32-bit range: reset
    ],
)
def test_counter_delta(prev: float, cur: float, want: float) -> None:
    assert counter_delta(prev, cur) == want


def test_counter_rate_needs_a_previous_reading_and_time_passing() -> None:
    assert counter_rate(None, (10.0, 5.0)) is None
    assert counter_rate((10.0, 5.0), (10.0, 9.0)) is None
    assert counter_rate((10.0, 0.0), (12.0, 100.0)) == 50.0
    assert counter_rate((10.0, WRAP_32 - 100.0), (11.0, 100.0)) == 200.0


@given(st.integers(0, WRAP_32 - 1), st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=50))
def test_a_wrapping_32_bit_counter_gives_the_true_increments(start: int, increments: list[int]) -> None:
    true = start
    prev = start % WRAP_32
    for inc in increments:
        true += inc
        cur = true % WRAP_32
        # increments below 2**31 can only wrap from the top half, so every delta is exact
        assert counter_delta(prev, cur) == inc
        prev = cur


@given(st.floats(0, 1e6), st.floats(0, 1e6), st.floats(0.01, 100))
def test_cpu_percent_is_never_negative(a: float, b: float, dt: float) -> None:
    pct = cpu_percent(a, b, dt)
    assert pct is not None and pct >= 0


def test_cpu_percent_table() -> None:
    assert cpu_percent(1.0, 1.5, 1.0) == 50.0
    assert cpu_percent(1.0, 3.0, 1.0, cores=2) == 100.0
    assert cpu_percent(10.0, 0.2, 1.0) == pytest.approx(20.0)  # restarted process
    assert cpu_percent(1.0, 2.0, 0.0) is None


def test_rate_tracker_forgets_keys_not_seen() -> None:
    tr = RateTracker()
    assert tr.rate("eth0", 0.0, 0.0) is None
    tr.sweep()
    assert tr.rate("eth0", 1.0, 1000.0) == 1000.0
    tr.sweep()
    tr.sweep()  # a tick without eth0
    assert len(tr) == 0
    assert tr.rate("eth0", 5.0, 9000.0) is None  # no rate across the gap


def test_a_kept_key_survives_the_sweep_and_rates_across_the_gap() -> None:
    t = RateTracker()
    t.rate("a", 0.0, 100.0)
    t.rate("b", 0.0, 100.0)
    t.sweep()
    t.keep("a")  # skipped this tick, still there
    t.keep("never")  # nothing to keep: not added
    t.sweep()
    assert len(t) == 1
    assert t.rate("a", 2.0, 300.0) == 100.0  # over both ticks
    assert t.rate("b", 2.0, 300.0) is None  # forgotten: a first sample again
