"""The renewal schedule, back-off and Retry-After arithmetic, as tables with `now` passed in."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certd.schedule import (
    CertState,
    Policy,
    ari_check_delay,
    ari_due,
    ari_pick,
    backoff_delay,
    decide,
    jitter_fraction,
    may_reorder,
    next_wakeup,
    renewal_time,
    renewal_window,
    should_warn_expiring,
)

DAY = 86400.0
NOW = 1_800_000_000.0
P = Policy()  # defaults: renew with 1/3 of the lifetime left, 2 d jitter, back-off 60 s doubling to 6 h, warn < 14 d
MIN = 60.0
HOUR = 3600.0


@pytest.mark.parametrize(("u", "left_at_renewal_days"), [(0.0, 30.0), (0.5, 29.0), (0.999999, 28.0)])
def test_renewal_time_is_within_the_jitter_window(u: float, left_at_renewal_days: float) -> None:
    not_after = NOW + 90 * DAY
    at = renewal_time(NOW, not_after, P, u)
    assert (not_after - at) / DAY == pytest.approx(left_at_renewal_days, abs=1e-4)


@pytest.mark.parametrize(
    ("lifetime", "policy", "window"),
    [
        (90 * DAY, P, 30 * DAY),  # Let's Encrypt's 90-day certificates: 30 days, as before
        (6 * DAY, P, 2 * DAY),  # its 6-day short-lived ones: 2 days, not 30 (which is more than they live)
        (45 * DAY, P, 15 * DAY),
        (60.0, P, 20.0),  # a test CA's one-minute certificates
        (5 * 365 * DAY, P, 5 * 365 * DAY / 3),  # Pebble's default five years
        (90 * DAY, Policy(renew_share=0.5), 45 * DAY),
        (90 * DAY, Policy(renew_share=1.0), 90 * DAY),  # due as soon as issued
        (90 * DAY, Policy(renew_before_s=10 * DAY), 10 * DAY),  # the optional cap...
        (6 * DAY, Policy(renew_before_s=10 * DAY), 2 * DAY),  # ... never makes a short cert due sooner
    ],
)
def test_renewal_window_is_a_share_of_the_lifetime(lifetime: float, policy: Policy, window: float) -> None:
    assert renewal_window(NOW, NOW + lifetime, policy) == pytest.approx(window)


def test_renewal_window_without_a_start_assumes_ninety_days() -> None:
    assert renewal_window(None, NOW + 10 * DAY, P) == pytest.approx(30 * DAY)


@given(
    lifetime=st.floats(min_value=1, max_value=10 * 365 * DAY),
    u=st.floats(min_value=0, max_value=0.999999),
    share=st.floats(min_value=0.01, max_value=1.0),
)
def test_renewal_time_stays_inside_the_lifetime(lifetime: float, u: float, share: float) -> None:
    policy = Policy(renew_share=share)
    at = renewal_time(NOW, NOW + lifetime, policy, u)
    window = renewal_window(NOW, NOW + lifetime, policy)
    # Renewed with at most its window left, and at least nine tenths of it: the jitter never eats it.
    assert NOW + lifetime - window - 1e-6 <= at <= NOW + lifetime - 0.9 * window + 1e-6


@pytest.mark.parametrize("lifetime", [60.0, 3600.0, 6 * DAY, 10 * DAY])
def test_short_certificate_is_not_reordered_at_every_min_order_interval(lifetime: float) -> None:
    """The defect: with a fixed 30-day window, a certificate living less than that was due as soon as
    it was issued, so it was ordered again at every `min_order_interval`."""
    policy = Policy(min_order_interval_s=1.0)
    state = CertState(source="acme", not_before=NOW, not_after=NOW + lifetime, serial="s", last_issued_at=NOW)
    d = decide("short.test", state, NOW + 2.0, policy)
    assert d.action == "wait"
    assert d.at is not None and NOW + lifetime * 2 / 3 <= d.at <= NOW + lifetime * 2 / 3 + lifetime / 30 + 1e-6
    assert decide("short.test", state, d.at, policy).action == "order"


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
def test_never_reorders_a_valid_cert_with_more_than_its_window_left(left_days: float, name: str) -> None:
    # A 90-day certificate: its window is 30 days.
    state = CertState(
        source="acme", not_after=NOW + left_days * DAY, not_before=NOW + (left_days - 90) * DAY, serial="abc"
    )
    d = decide(name, state, NOW, P)
    if left_days > 30:
        assert d.action == "wait" and d.at is not None and d.at > NOW
        assert may_reorder(state.not_before, state.not_after, NOW, P) is False
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
        (
            CertState(source="acme", not_after=NOW + 20 * DAY, serial="s", failures=1, next_attempt_at=NOW + 60),
            "wait",
            NOW + 60,
            "retrying after 1",
        ),
        # valid, due, but issued moments ago: min_order_interval (1 h) guards against duplicates
        (
            CertState(source="acme", not_after=NOW + 20 * DAY, serial="s", last_issued_at=NOW - 60),
            "wait",
            NOW - 60 + 3600,
            "renewal due",
        ),
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
    state = CertState(source="acme", not_after=NOW + 60 * DAY, not_before=NOW - 30 * DAY, serial="s1")
    d = decide("x.test", state, NOW, P)
    assert d.action == "wait" and d.at is not None and state.not_before is not None and state.not_after is not None
    assert d.at == pytest.approx(renewal_time(state.not_before, state.not_after, P, jitter_fraction("x.test", "s1")))
    assert NOW + 30 * DAY <= d.at <= NOW + 32 * DAY
    # ... and orders once that time has come.
    assert decide("x.test", state, d.at, P).action == "order"


@pytest.mark.parametrize(
    ("failures", "retry_after", "delay"),
    [
        (1, None, 60),
        (2, None, 120),
        (3, None, 240),
        (8, None, 60 * 128),
        (9, None, 60 * 256),
        (10, None, 6 * 3600),
        (50, None, 6 * 3600),
        (10_000, None, 6 * 3600),
        (0, None, 60),
        # 429 with Retry-After: the server's word when it is later than our back-off...
        (1, 3600, 3600),
        (9, 12 * 3600, 12 * 3600),
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


OWN_89 = renewal_time(NOW - DAY, NOW + 89 * DAY, P, jitter_fraction("x.test", ""))


@pytest.mark.parametrize(
    ("state", "action", "at", "reason"),
    [
        # the CA's window says "later than our third": follow it
        (
            CertState(source="acme", not_before=NOW - DAY, not_after=NOW + 89 * DAY, ari_renew_at=NOW + 70 * DAY),
            "wait",
            NOW + 70 * DAY,
            "renewal due (the CA's ARI window)",
        ),
        # ... "now" (a window in the past: e.g. the CA will revoke it): renew at once, though 89 days are left
        (
            CertState(source="acme", not_before=NOW - DAY, not_after=NOW + 89 * DAY, ari_renew_at=NOW - HOUR),
            "order",
            NOW,
            "renewal due (the CA's ARI window)",
        ),
        # ... but never sooner than min_order_interval after the last issuance
        (
            CertState(
                source="acme",
                not_before=NOW - MIN,
                not_after=NOW + 89 * DAY,
                ari_renew_at=NOW - HOUR,
                last_issued_at=NOW - MIN,
            ),
            "wait",
            NOW - MIN + HOUR,
            "renewal due (the CA's ARI window)",
        ),
        # ... nor before a failure's back-off
        (
            CertState(
                source="acme",
                not_before=NOW - DAY,
                not_after=NOW + 89 * DAY,
                ari_renew_at=NOW - HOUR,
                failures=1,
                next_attempt_at=NOW + 60,
            ),
            "wait",
            NOW + 60,
            "retrying after 1",
        ),
        # a window reaching past the expiry renews no later than our own schedule (a third left: 30 of
        # 90 days; this cert's jitter is below a tenth of 2 days) — not at the expiry itself
        (
            CertState(source="acme", not_before=NOW - 85 * DAY, not_after=NOW + 5 * DAY, ari_renew_at=NOW + 9 * DAY),
            "order",
            NOW,
            "renewal due (the CA's ARI window ends after expiry",
        ),
        (
            CertState(
                source="acme",
                not_before=NOW - DAY,
                not_after=NOW + 89 * DAY,
                ari_renew_at=NOW + 88 * DAY,
                ari_window_end=NOW + 95 * DAY,
            ),
            "wait",
            OWN_89,
            "renewal due (the CA's ARI window ends after",
        ),
        # ... while a pick inside such a window that is sooner than our schedule stands
        (
            CertState(
                source="acme",
                not_before=NOW - DAY,
                not_after=NOW + 89 * DAY,
                ari_renew_at=NOW + 20 * DAY,
                ari_window_end=NOW + 95 * DAY,
            ),
            "wait",
            NOW + 20 * DAY,
            "renewal due (the CA's ARI window)",
        ),
        # imported and unwanted certificates ignore it
        (CertState(source="imported", not_after=NOW + 5 * DAY, ari_renew_at=NOW - HOUR), "wait", None, "imported"),
        (
            CertState(source="acme", not_after=NOW + 5 * DAY, ari_renew_at=NOW - HOUR, auto=False),
            "wait",
            None,
            "no longer wanted",
        ),
    ],
)
def test_decide_with_ari(state: CertState, action: str, at: float | None, reason: str) -> None:
    d = decide("x.test", state, NOW, P)
    assert (d.action, d.at) == (action, at) and d.reason.startswith(reason), d


@pytest.mark.parametrize(
    ("retry_after", "delay"),
    [(None, 6 * HOUR), (3600, 3600), (0, MIN), (5, MIN), (59.9, MIN), (86400, DAY), (7 * DAY, DAY), (120.5, 120.5)],
)
def test_ari_check_delay_clamps_retry_after(retry_after: float | None, delay: float) -> None:
    assert ari_check_delay(retry_after, P) == delay


@pytest.mark.parametrize(
    ("state", "ari_id", "next_check_at", "due"),
    [
        (CertState(source="acme", not_after=NOW + DAY), "a.b", None, True),  # never asked
        (CertState(source="acme", not_after=NOW + DAY), "a.b", NOW - 1, True),
        (CertState(source="acme", not_after=NOW + DAY), "a.b", NOW + 1, False),  # Retry-After not over yet
        (CertState(source="acme", not_after=NOW + DAY), "", None, False),  # no AKI: no ARI id
        (CertState(source="acme", not_after=NOW - 1), "a.b", None, False),  # expired: never asked (§4.3)
        (CertState(source="acme", not_after=NOW + DAY, auto=False), "a.b", None, False),
        (CertState(source="imported", not_after=NOW + DAY), "a.b", None, False),
        (CertState(source="self-signed", not_after=NOW + DAY), "a.b", None, False),
        (CertState(source=None), "a.b", None, False),
    ],
)
def test_ari_due(state: CertState, ari_id: str, next_check_at: float | None, due: bool) -> None:
    assert ari_due(state, ari_id, next_check_at, NOW) is due


@pytest.mark.parametrize(
    ("window", "previous", "previous_at", "u", "at"),
    [
        ((NOW, NOW + 100), None, None, 0.0, NOW),
        ((NOW, NOW + 100), None, None, 0.25, NOW + 25),
        ((NOW, NOW + 100), (NOW, NOW + 100), NOW + 80, 0.1, NOW + 80),  # same window: keep the pick
        ((NOW, NOW + 100), (NOW, NOW + 200), NOW + 180, 0.5, NOW + 50),  # a new window: pick again
    ],
)
def test_ari_pick(window, previous, previous_at, u: float, at: float) -> None:
    assert ari_pick(window, previous, previous_at, u) == pytest.approx(at)


@given(
    start=st.floats(min_value=0, max_value=4e9),
    length=st.floats(min_value=1e-3, max_value=1e8),
    u=st.floats(min_value=0, max_value=0.999999),
)
def test_ari_pick_is_inside_the_window(start: float, length: float, u: float) -> None:
    at = ari_pick((start, start + length), None, None, u)
    assert start <= at <= start + length


@pytest.mark.parametrize(
    ("ats", "expected"),
    [([], 3600), ([NOW + 10], 10), ([NOW + 10, NOW + 5, None], 5), ([NOW - 3], 0), ([NOW + 90 * DAY], 3600)],
)
def test_next_wakeup(ats: list[float | None], expected: float) -> None:
    from certd.schedule import Decision

    decisions = [Decision("wait", at, "") for at in ats]
    assert next_wakeup(decisions, NOW) == expected


def test_next_wakeup_includes_renewal_info_checks() -> None:
    from certd.schedule import Decision

    assert next_wakeup([Decision("wait", NOW + 100, "")], NOW, also=[NOW + 30]) == 30
