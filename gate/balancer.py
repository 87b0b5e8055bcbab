"""Load balancing and passive health, pure: which target gets the next request, `now` passed in.

Theory of operation: each upstream address has one `TargetHealth` shared by every route that uses it
(so a route change keeps what was learnt). A failure to connect, or a reset before any response byte,
counts against the target; `eject_after` consecutive failures eject it until `now + backoff`, the
back-off doubling on each ejection in a row up to `max_backoff_s`; one success resets it. A target
whose ejection has expired is tried again (half-open). Picking skips ejected targets and those
already tried by this request; round-robin keeps a cursor per route, least-connections compares the
live request counts the proxy keeps on each `TargetHealth`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(slots=True)
class TargetHealth:
    """What the gate knows about one upstream address. Mutated only on the loop."""

    host: str
    port: int
    active: int = 0  # requests in flight to it now
    failures: int = 0  # consecutive
    ejections: int = 0  # consecutive ejections (for the back-off)
    ejected_until: float = 0.0
    total_failures: int = 0
    key: str = field(init=False)

    def __post_init__(self) -> None:
        self.key = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def available(self, now: float) -> bool:
        return self.ejected_until <= now


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    eject_after: int = 3
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0


def record_failure(t: TargetHealth, now: float, policy: HealthPolicy) -> bool:
    """Count a failure; returns True when it ejected the target."""
    t.failures += 1
    t.total_failures += 1
    if t.failures >= policy.eject_after:
        t.ejected_until = now + min(policy.max_backoff_s, policy.backoff_s * (2**t.ejections))
        t.ejections += 1
        t.failures = 0
        return True
    return False


def begin_request(t: TargetHealth) -> None:
    """A request to `t` is in flight (least-connections reads `active`)."""
    t.active += 1


def end_request(t: TargetHealth, success: bool) -> None:
    """The request to `t` is over; `success`: it got a whole response (resets the failure count)."""
    t.active -= 1
    if success:
        record_success(t)


def record_success(t: TargetHealth) -> None:
    if not (t.failures or t.ejections or t.ejected_until):
        return
    t.failures = 0
    t.ejections = 0
    t.ejected_until = 0.0


class Cursor:
    """A round-robin position (one per route)."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


def pick(
    targets: Sequence[TargetHealth],
    now: float,
    balance: str = "round_robin",
    cursor: Cursor | None = None,
    exclude: Sequence[TargetHealth] = (),
) -> TargetHealth | None:
    """The target for the next attempt, or None when every target is ejected or excluded."""
    n = len(targets)
    if n == 0:
        return None
    if balance == "least_conn":
        best: TargetHealth | None = None
        start = cursor.n % n if cursor else 0
        for i in range(n):
            t = targets[(start + i) % n]
            if t.ejected_until > now or t in exclude:
                continue
            if best is None or t.active < best.active:
                best = t
        if cursor is not None:
            cursor.n += 1
        return best
    start = cursor.n if cursor else 0
    for i in range(n):
        t = targets[(start + i) % n]
        if t.ejected_until <= now and t not in exclude:
            if cursor is not None:
                cursor.n = start + i + 1
            return t
    return None


def retry_after_s(targets: Sequence[TargetHealth], now: float) -> int:
    """Seconds until the first ejected target is tried again (for 503 Retry-After), at least 1."""
    waits = [t.ejected_until - now for t in targets if t.ejected_until > now]
    return max(1, int(min(waits) + 0.999)) if waits else 1
