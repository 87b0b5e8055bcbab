"""The renewal schedule, back-off and Retry-After arithmetic, as tables with `now` passed in."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certd.schedule import (
    CertState,
    Policy,
    backoff_delay,
    decide,
    jitter_fraction,
    may_reorder,
    next_wakeup,
    renewal_time,
    should_warn_expiring,
)

DAY = 86400.0
NOW = 1_800_000_000.0
P = Policy()  # defaults: renew 30 d before, 2 d jitter, back-off 60 s doubling to 6 h, warn under 14 d


@pytest.mark.parametrize(("u", "left_at_renewal_days"), [(0.0, 30.0), (0.5, 29.0), (0.999999, 28.0)])
def test_renewal_time_is_within_the_jitter_window(u: float, left_at_renewal_days: float) -> None:
    not_after = NOW + 90 * DAY
    at = renewal_time(not_after, P, u)
    assert (not_after - at) / DAY == pytest.approx(left_at_renewal_days, abs=1e-4)


@given(name=st.text(min_size=1, max_size=40), serial=st.text(max_size=20))
def test_jitter_fraction_is_in_range_and_stable(name: str, serial: str) -> None:
    u = jitter_fraction(name, serial)
    assert 0.0 <= u < 1.0
    assert jitter_fraction(name, serial) == u


def test_jitter_spreads_many_certificates() -> None:
    fractions = [jitter_fraction(f"host{i}.example.com", "01") for i in range(1000)]
    # Ten equal buckets each get a fair share: renewals do not bunch together.
    buckets = [sum(1 for f in fractions if k / 10 <= f < (k + 1) / 10) for k in range(10)]
    assert min(buckets) > 60 and max(buckets) < 140, buckets


@given(left_days=st.floats(min_value=-10, max_value=400), name=st.sampled_from(["a.test", "b.example.com"]))
def test_never_reorders_a_valid_cert_with_more_than_renew_before_left(left_days: float, name: str) -> None:
    state = CertState(source="acme", not_after=NOW + left_days * DAY, serial="abc")
    d = decide(name, state, NOW, P)
    if left_days > 30:
        assert d.action == "wait" and d.at is not None and d.at > NOW
        assert may_reorder(state.not_after, NOW, P) is False
    if d.action == "order":
        assert left_days <= 30


@pytest.mark.parametrize(
    ("state", "action", "at", "reason"),
    [
        # nothing yet, or only the fallback: order at once
        (CertState(source=None), "order", NOW, "no valid certificate"),
        (CertState(source="self-signed", not_after=NOW + 80 * DAY), "order", NOW, "no valid certificate"),
        # expired ACME cert: order at once
        (CertState(source="acme", not_after=NOW - 1), "order", NOW, "no valid certificate"),
        # after failures: wait for the back-off
        (CertState(source=None, failures=2, next_attempt_at=NOW + 120), "wait", NOW + 120, "retrying after 2"),
        (CertState(source=None, failures=2, next_attempt_at=NOW - 1), "order", NOW, "no valid certificate"),
        # valid, due: 30 d (u≈0.79 → ~28.4 d left at renewal) — 20 d left is past due
        (CertState(source="acme", not_after=NOW + 20 * DAY, serial="s"), "order", NOW, "renewal due"),
        # valid, due, but failing: the back-off wins
        (CertState(source="acme", not_after=NOW + 20 * DAY, serial="s", failures=1, next_attempt_at=NOW + 60),
         "wait", NOW + 60, "retrying after 1"),
        # valid, due, but issued moments ago: min_order_interval (1 h) guards against duplicates
        (CertState(source="acme", not_after=NOW + 20 * DAY, serial="s", last_issued_at=NOW - 60),
         "wait", NOW - 60 + 3600, "renewal due"),
        # imported: never ordered
        (CertState(source="imported", not_after=NOW + 1 * DAY), "wait", None, "imported"),
        # no longer wanted: not renewed
        (CertState(source="acme", not_after=NOW + 1 * DAY, auto=False), "wait", None, "no longer wanted"),
        (CertState(source=None, auto=False), "wait", None, "no longer wanted"),
    ],
)
def test_decide(state: CertState, action: str, at: float | None, reason: str) -> None:
    d = decide("x.test", state, NOW, P)
    assert (d.action, d.at) == (action, at) and d.reason.startswith(reason), d


def test_decide_waits_until_the_renewal_time() -> None:
    state = CertState(source="acme", not_after=NOW + 60 * DAY, serial="s1")
    d = decide("x.test", state, NOW, P)
    assert d.action == "wait"
    assert d.at == pytest.approx(renewal_time(state.not_after, P, jitter_fraction("x.test", "s1")))
    assert NOW + 30 * DAY <= d.at <= NOW + 32 * DAY
    # ... and orders once that time has come.
    assert decide("x.test", state, d.at, P).action == "order"


@pytest.mark.parametrize(
    ("failures", "retry_after", "delay"),
    [
        (1, None, 60), (2, None, 120), (3, None, 240), (8, None, 60 * 128), (9, None, 60 * 256), (10, None, 6 * 3600),
        (50, None, 6 * 3600), (10_000, None, 6 * 3600), (0, None, 60),
        # 429 with Retry-After: the server's word when it is later than our back-off...
        (1, 3600, 3600), (9, 12 * 3600, 12 * 3600),
        # ... ours when it is later than the server's ...
        (5, 30, 960),
        # ... and an absurd one is clamped to max_retry_after (7 d).
        (1, 365 * DAY, 7 * DAY),
        (1, 0, 60),
    ],
)
def test_backoff_delay(failures: int, retry_after: float | None, delay: float) -> None:
    assert backoff_delay(failures, P, retry_after) == delay


@given(st.integers(min_value=1, max_value=200))
def test_backoff_grows_and_is_capped(n: int) -> None:
    assert backoff_delay(n, P) <= P.backoff_cap_s
    assert backoff_delay(n + 1, P) >= backoff_delay(n, P)


@pytest.mark.parametrize(
    ("state", "warn"),
    [
        (CertState(source="acme", not_after=NOW + 13 * DAY), True),
        (CertState(source="acme", not_after=NOW + 15 * DAY), False),
        (CertState(source="imported", not_after=NOW + 2 * DAY), True),
        (CertState(source="self-signed", not_after=NOW + 2 * DAY), False),
        (CertState(source="acme", not_after=NOW + 13 * DAY, last_warned_at=NOW - 3600), False),
        (CertState(source="acme", not_after=NOW + 13 * DAY, last_warned_at=NOW - DAY), True),
        (CertState(source="acme", not_after=NOW - DAY), True),  # expired and still served: say so
        (CertState(source=None), False),
    ],
)
def test_should_warn_expiring(state: CertState, warn: bool) -> None:
    assert should_warn_expiring(state, NOW, P) is warn


@pytest.mark.parametrize(
    ("ats", "expected"),
    [([], 3600), ([NOW + 10], 10), ([NOW + 10, NOW + 5, None], 5), ([NOW - 3], 0), ([NOW + 90 * DAY], 3600)],
)
def test_next_wakeup(ats: list[float | None], expected: float) -> None:
    from certd.schedule import Decision

    decisions = [Decision("wait", at, "") for at in ats]
    assert next_wakeup(decisions, NOW) == expected
