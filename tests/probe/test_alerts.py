"""Alert state machine: tables over every state and input, and hysteresis properties."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probe.alerts import AlertRule, AlertState, breaches, clears, evaluate, no_data_after

RULE = AlertRule(1, "cpu high", "host_cpu_percent", ">", 90.0, {"cpu": "total"}, for_s=10.0, hysteresis=5.0)


def run(rule: AlertRule, values: Sequence[tuple[float, float | None]]) -> list[tuple[str, str | None]]:
    state = None
    out: list[tuple[str, str | None]] = []
    for now, v in values:
        state, tr = evaluate(rule, state, v, now, stale_s=30.0)
        out.append((state.status, tr))
    return out


def test_fires_after_the_for_duration_and_resolves_under_the_hysteresis_band() -> None:
    seq = [(0, 50), (1, 95), (5, 96), (10, 97), (11, 97), (12, 88), (13, 86), (14, 84), (15, 84)]
    assert run(RULE, seq) == [
        ("ok", None),
        ("pending", None),
        ("pending", None),
        ("pending", None),
        ("firing", "triggered"),
        ("firing", None),
        ("firing", None),
        ("ok", "resolved"),
        ("ok", None),
    ]


def test_a_dip_during_pending_restarts_the_wait() -> None:
    seq = [(0, 95), (9, 80), (10, 95), (19, 95), (20, 95)]
    assert [s for s, _ in run(RULE, seq)] == ["pending", "ok", "pending", "pending", "firing"]


def test_zero_for_duration_fires_at_once() -> None:
    rule = AlertRule(2, "r", "m", "<", 10.0)
    assert run(rule, [(0, 5), (1, 15)]) == [("firing", "triggered"), ("ok", "resolved")]


def test_missing_data_resets_pending_and_resolves_firing_only_when_stale() -> None:
    seq = [(0, 95), (1, None), (2, 95), (12, 95), (13, None), (30, None), (42, None), (43, None)]
    assert run(RULE, seq) == [
        ("pending", None),
        ("ok", None),
        ("pending", None),
        ("firing", "triggered"),
        ("firing", None),
        ("firing", None),
        ("ok", "resolved"),
        ("ok", None),
    ]


@pytest.mark.parametrize(
    ("interval_s", "for_s", "floor_s", "want"),
    [
        (1.0, 0.0, 0.0, 2.0),
        (1.0, 10.0, 0.0, 10.0),
        (5.0, 3.0, 0.0, 10.0),
        (1.0, 10.0, 60.0, 60.0),
        (0.25, 0.0, 0.0, 0.5),
    ],
)
def test_no_data_resolves_after_two_intervals_or_the_for_duration(
    interval_s: float, for_s: float, floor_s: float, want: float
) -> None:
    rule = AlertRule(3, "r", "m", ">", 1.0, for_s=for_s)
    assert no_data_after(rule, interval_s, floor_s) == want
    stale = no_data_after(rule, interval_s, floor_s)
    state, _ = evaluate(rule, None, 5.0, 0.0, stale_s=stale)
    state, _ = evaluate(rule, state, 5.0, for_s, stale_s=stale)
    assert state.status == "firing"
    _, tr = evaluate(rule, state, None, for_s + want - 0.01, stale_s=stale)
    assert tr is None  # not yet
    state, tr = evaluate(rule, state, None, for_s + want, stale_s=stale)
    assert (state.status, tr) == ("ok", "resolved")


def test_label_matching_is_a_subset_match() -> None:
    assert RULE.matches("host_cpu_percent", {"cpu": "total", "host": "x"})
    assert not RULE.matches("host_cpu_percent", {"cpu": "0"})
    assert not RULE.matches("host_load1", {"cpu": "total"})


@pytest.mark.parametrize(
    ("op", "value", "breach", "clear"),
    [
        (">", 90, False, True),
        (">", 91, True, False),
        (">=", 90, True, False),
        (">=", 89, False, True),
        ("<", 10, False, True),
        ("<", 9, True, False),
        ("<=", 10, True, False),
        ("<=", 11, False, True),
    ],
)
def test_without_hysteresis_clear_is_exactly_not_breach(op: str, value: float, breach: bool, clear: bool) -> None:
    threshold = 90 if op.startswith(">") else 10
    assert breaches(op, value, threshold) is breach  # type: ignore[arg-type]
    assert clears(op, value, threshold, 0.0) is clear  # type: ignore[arg-type]


@given(st.sampled_from([">", ">=", "<", "<="]), st.floats(-1e6, 1e6), st.floats(-1e6, 1e6), st.floats(0, 1e3))
def test_a_value_never_both_breaches_and_clears(op: str, value: float, threshold: float, hyst: float) -> None:
    assert not (breaches(op, value, threshold) and clears(op, value, threshold, hyst))  # type: ignore[arg-type]


@given(st.lists(st.one_of(st.none(), st.floats(0, 200)), max_size=60))
def test_transitions_alternate_triggered_then_resolved(values: list[float | None]) -> None:
    state: AlertState | None = None
    last = "resolved"
    for i, v in enumerate(values):
        state, tr = evaluate(RULE, state, v, float(i), stale_s=5.0)
        if tr is not None:
            assert tr != last
            last = tr
        assert (state.status == "firing") == (last == "triggered")
