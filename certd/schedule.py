"""When to order, renew, retry and warn: pure arithmetic with `now` passed in.

Theory of operation. Each certificate record is in one of three situations:

- no usable ACME certificate (none yet, only the self-signed fallback, or an expired one): order at
  once, unless a previous failure set `next_attempt_at` (back-off or the server's Retry-After);
- a valid ACME certificate: renew at `renewal_time` — between `renew_before` and
  `renew_before - renew_jitter` before expiry, at a point fixed per certificate by `jitter_fraction`
  so a restart does not reshuffle it — and never sooner than `min_order_interval` after the last issuance
  nor before `next_attempt_at`. So an automatic order never happens while the cert has more than
  `renew_before` (30 days by default) left: the rate-limit rule;
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
    renew_before_s: float = 30 * 86400
    renew_jitter_s: float = 2 * 86400
    backoff_base_s: float = 60.0
    backoff_cap_s: float = 6 * 3600
    expiring_warn_s: float = 14 * 86400
    expiring_repeat_s: float = 86400
    min_order_interval_s: float = 3600
    max_retry_after_s: float = 7 * 86400


@dataclass(frozen=True)
class CertState:
    """What the scheduler needs to know about one record."""

    source: Source | None  # None: no certificate at all yet
    not_after: float | None = None
    serial: str = ""
    failures: int = 0
    next_attempt_at: float | None = None  # set by a failure (back-off / Retry-After)
    last_issued_at: float | None = None  # when the current ACME certificate was obtained
    last_warned_at: float | None = None
    auto: bool = True  # False: nobody wants it renewed automatically any more


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


def renewal_time(not_after: float, policy: Policy, u: float) -> float:
    """When a certificate expiring at `not_after` is due: `renew_before` before expiry, moved later by
    `u * renew_jitter` (u in [0, 1)), so it always has at most `renew_before` left when renewed."""
    return not_after - policy.renew_before_s + u * policy.renew_jitter_s


def backoff_delay(failures: int, policy: Policy, retry_after_s: float | None = None) -> float:
    """Seconds to wait after the `failures`-th consecutive failure (1 = the first)."""
    n = max(1, failures)
    delay = min(policy.backoff_cap_s, policy.backoff_base_s * 2.0 ** min(n - 1, 62))
    if retry_after_s is not None and retry_after_s > 0:
        delay = max(delay, min(retry_after_s, policy.max_retry_after_s))
    return delay


def may_reorder(not_after: float | None, now: float, policy: Policy) -> bool:
    """The rate-limit rule: an automatic order for a name whose valid cert has more than
    `renew_before` left is never placed."""
    return not_after is None or not_after - now <= policy.renew_before_s


def decide(name: str, state: CertState, now: float, policy: Policy) -> Decision:
    """What to do about one record at `now`."""
    if state.source == "imported":
        return Decision("wait", None, "imported certificates are renewed by their owner")
    valid_acme = state.source == "acme" and state.not_after is not None and state.not_after > now
    if valid_acme:
        if not state.auto:
            return Decision("wait", None, "no longer wanted: not renewed automatically")
        assert state.not_after is not None
        at = renewal_time(state.not_after, policy, jitter_fraction(name, state.serial))
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


def next_wakeup(decisions: list[Decision], now: float, idle_s: float = 3600) -> float:
    """Seconds until the loop should look again: the earliest `wait` (bounded by `idle_s`, so clock
    jumps and expiring warnings are noticed), or 0 when something must be ordered now."""
    times = [d.at for d in decisions if d.at is not None]
    if not times:
        return idle_s
    return max(0.0, min(min(times) - now, idle_s))
