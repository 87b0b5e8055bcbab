"""When to order, renew, retry and warn: pure arithmetic with `now` passed in.

Theory of operation. Each certificate record is in one of three situations:

- no usable ACME certificate (none yet, only the self-signed fallback, or an expired one): order at
  once, unless a previous failure set `next_attempt_at` (back-off or the server's Retry-After);
- a valid ACME certificate: renew at `renewal_time` — when `renew_share` of its lifetime is left
  (one third, as Let's Encrypt recommends: 30 days of a 90-day cert, 2 of a 6-day one; at most
  `renew_before` when that is set), moved later by up to `renew_jitter` (at most a tenth of that
  window) at a point fixed per certificate by `jitter_fraction` so a restart does not reshuffle it —
  and never sooner than `min_order_interval` after the last issuance nor before `next_attempt_at`.
  When the CA offers ACME Renewal Information (RFC 9773), the time it suggests (`ari_renew_at`, picked
  by the shell at random inside the suggested window) replaces `renewal_time` — except that a window
  ending at or after the certificate's expiry renews no later than `renewal_time`. Without ARI an
  automatic order never happens while the cert has more than its renewal window left: the rate-limit
  rule;
- an imported certificate: never ordered automatically (its owner renews it), only warned about.

Failures never touch the served certificate; they only move `next_attempt_at` by `backoff_delay`:
`backoff_base * 2^(failures-1)` capped at `backoff_cap`, or the server's Retry-After when that is
later (clamped to `max_retry_after`). `cert.expiring` fires when a certificate has less than
`expiring_warn` left, then again at most every `expiring_repeat`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

Source = Literal["acme", "imported", "self-signed"]


@dataclass(frozen=True)
class Policy:
    renew_share: float = 1 / 3  # renew when this share of the lifetime is left
    renew_before_s: float | None = None  # ... but never more than this before expiry (None: no cap)
    renew_jitter_s: float = 2 * 86400
    backoff_base_s: float = 60.0
    backoff_cap_s: float = 6 * 3600
    expiring_warn_s: float = 14 * 86400
    expiring_repeat_s: float = 86400
    min_order_interval_s: float = 3600
    max_retry_after_s: float = 7 * 86400
    # ARI: how often to ask for a certificate's renewal information (RFC 9773 §4.3: the server's
    # Retry-After, clamped to [ari_min_check, ari_max_check]; ari_default_check when it gives none).
    ari_min_check_s: float = 60
    ari_max_check_s: float = 86400
    ari_default_check_s: float = 6 * 3600


# The lifetime assumed for a certificate whose start is unknown (rows written before not_before was kept).
_ASSUMED_LIFETIME_S = 90 * 86400


@dataclass(frozen=True)
class CertState:
    """What the scheduler needs to know about one record."""

    source: Source | None  # None: no certificate at all yet
    not_after: float | None = None
    not_before: float | None = None
    serial: str = ""
    failures: int = 0
    next_attempt_at: float | None = None  # set by a failure (back-off / Retry-After)
    last_issued_at: float | None = None  # when the current ACME certificate was obtained
    last_warned_at: float | None = None
    auto: bool = True  # False: nobody wants it renewed automatically any more
    ari_renew_at: float | None = None  # the renewal time picked inside the CA's ARI window, if it gave one
    ari_window_end: float | None = None  # the end of that window


@dataclass(frozen=True)
class Decision:
    """`order` now, or `wait` until `at` (None: nothing to do until something changes)."""

    action: Literal["order", "wait"]
    at: float | None
    reason: str


def jitter_fraction(name: str, serial: str) -> float:
    """A number in [0, 1) fixed for one certificate (name + serial), different across certificates."""
    digest = hashlib.sha256(f"{name}\0{serial}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def renewal_window(not_before: float | None, not_after: float, policy: Policy) -> float:
    """How long before `not_after` a certificate becomes due: `renew_share` of its lifetime, capped
    at `renew_before` when that is set."""
    lifetime = not_after - not_before if not_before is not None and not_after > not_before else _ASSUMED_LIFETIME_S
    window = policy.renew_share * lifetime
    if policy.renew_before_s is not None:
        window = min(window, policy.renew_before_s)
    return window


def renewal_time(not_before: float | None, not_after: float, policy: Policy, u: float) -> float:
    """When a certificate valid from `not_before` to `not_after` is due: `renewal_window` before
    expiry, moved later by `u` (in [0, 1)) times the jitter (`renew_jitter`, at most a tenth of the
    window), so it always has at most its renewal window left when renewed."""
    window = renewal_window(not_before, not_after, policy)
    return not_after - window + u * min(policy.renew_jitter_s, window / 10)


def backoff_delay(failures: int, policy: Policy, retry_after_s: float | None = None) -> float:
    """Seconds to wait after the `failures`-th consecutive failure (1 = the first)."""
    n = max(1, failures)
    delay = min(policy.backoff_cap_s, policy.backoff_base_s * 2.0 ** min(n - 1, 62))
    if retry_after_s is not None and retry_after_s > 0:
        delay = max(delay, min(retry_after_s, policy.max_retry_after_s))
    return delay


def may_reorder(not_before: float | None, not_after: float | None, now: float, policy: Policy) -> bool:
    """The rate-limit rule: an automatic order for a name whose valid cert has more than its renewal
    window left is never placed (unless the CA's ARI says otherwise)."""
    return not_after is None or not_after - now <= renewal_window(not_before, not_after, policy)


def decide(name: str, state: CertState, now: float, policy: Policy) -> Decision:
    """What to do about one record at `now`."""
    if state.source == "imported":
        return Decision("wait", None, "imported certificates are renewed by their owner")
    valid_acme = state.source == "acme" and state.not_after is not None and state.not_after > now
    if valid_acme:
        if not state.auto:
            return Decision("wait", None, "no longer wanted: not renewed automatically")
        assert state.not_after is not None
        if state.ari_renew_at is not None:
            at, reason = state.ari_renew_at, "renewal due (the CA's ARI window)"
            end = state.ari_window_end if state.ari_window_end is not None else state.ari_renew_at
            if end >= state.not_after:  # a window reaching past expiry could let the cert lapse: no later
                # than our own schedule (a third of the lifetime left), whatever was picked inside it
                own = renewal_time(state.not_before, state.not_after, policy, jitter_fraction(name, state.serial))
                if own < at:
                    at, reason = own, "renewal due (the CA's ARI window ends after expiry: our own schedule)"
        else:
            at = renewal_time(state.not_before, state.not_after, policy, jitter_fraction(name, state.serial))
            reason = "renewal due"
        if state.last_issued_at is not None:
            at = max(at, state.last_issued_at + policy.min_order_interval_s)
    else:
        if not state.auto:
            return Decision("wait", None, "no longer wanted and no valid certificate")
        at, reason = now, "no valid certificate"
    if state.next_attempt_at is not None and state.next_attempt_at > at:
        at, reason = state.next_attempt_at, f"retrying after {state.failures} failure(s)"
    if at <= now:
        return Decision("order", now, reason)
    return Decision("wait", at, reason)


def should_warn_expiring(state: CertState, now: float, policy: Policy) -> bool:
    """`cert.expiring`: a real (non-fallback) cert with less than `expiring_warn` left, not warned
    about within `expiring_repeat`."""
    if state.source not in ("acme", "imported") or state.not_after is None:
        return False
    if state.not_after - now >= policy.expiring_warn_s:
        return False
    return state.last_warned_at is None or now - state.last_warned_at >= policy.expiring_repeat_s


def ari_check_delay(retry_after_s: float | None, policy: Policy) -> float:
    """Seconds until a certificate's renewal information is fetched again: the server's Retry-After
    clamped to [ari_min_check, ari_max_check] (RFC 9773 §4.3), else ari_default_check."""
    if retry_after_s is None:
        return policy.ari_default_check_s
    return min(max(retry_after_s, policy.ari_min_check_s), policy.ari_max_check_s)


def ari_due(state: CertState, ari_id: str, next_check_at: float | None, now: float) -> bool:
    """Fetch the renewal information of this certificate now? Only for a valid ACME certificate
    with an ARI id that is still wanted (RFC 9773 §4.3: never after it expired), when its check is due."""
    if state.source != "acme" or not ari_id or not state.auto or state.not_after is None or state.not_after <= now:
        return False
    return next_check_at is None or next_check_at <= now


def ari_pick(
    window: tuple[float, float], previous_window: tuple[float, float] | None, previous_at: float | None, u: float
) -> float:
    """The renewal time inside the suggested `window` (start, end): the one picked before while the
    window is unchanged (so repeated checks do not re-roll it towards the start), else `start + u *
    (end - start)`, u uniform in [0, 1)."""
    if previous_at is not None and previous_window == window:
        return previous_at
    start, end = window
    return start + u * (end - start)


def next_wakeup(decisions: list[Decision], now: float, idle_s: float = 3600, also: list[float] | None = None) -> float:
    """Seconds until the loop should look again: the earliest `wait` or time in `also` (bounded by
    `idle_s`, so clock jumps and expiring warnings are noticed), or 0 when something is due now."""
    times = [d.at for d in decisions if d.at is not None] + list(also or [])
    if not times:
        return idle_s
    return max(0.0, min(min(times) - now, idle_s))
