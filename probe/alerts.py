"""Alert rule evaluation with a for-duration and hysteresis. Pure: `now` and the value are passed in.

Theory of operation — one state machine per (rule, matching series):

    ok ──breach──► pending ──breach held for `for_s`──► firing ──clear──► ok
     ▲               │ no breach                          │ no data for `stale_s`
     └───────────────┘                                    └──► ok (resolved, reason "no data")

"Breach" compares the value with the threshold (`>`, `>=`, `<`, `<=`). "Clear" is stricter by
`hysteresis`: a rule `> 90` with hysteresis 5 resolves only under 85, so a value hovering at the
threshold does not flap. With `for_s == 0` a breach fires at once. A missing value (the series did
not report this evaluation) resets `pending` but leaves `firing` alone until the series has been
silent for `stale_s` — `no_data_after`: two evaluation intervals, the rule's `for_s`, or twice the
series' own reporting gap (a series sampled every 10 s is not "gone" after 2 s), whichever is largest
— then resolves it, as Prometheus resolves an alert whose series is gone (a stopped service's
CPU series, a removed route's latency): a firing alert never outlives its data. Every transition
into `firing` is `triggered`, every one out of it `resolved`.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

Op = Literal[">", ">=", "<", "<="]
Status = Literal["ok", "pending", "firing"]
Transition = Literal["triggered", "resolved"]

_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


@dataclass(frozen=True)
class AlertRule:
    id: int
    name: str
    metric: str
    op: Op
    threshold: float
    labels: Mapping[str, str] = field(default_factory=dict)  # a series matches when it has all of these
    for_s: float = 0.0
    hysteresis: float = 0.0
    webhook: str | None = None

    def matches(self, name: str, labels: Mapping[str, str]) -> bool:
        return name == self.metric and all(labels.get(k) == v for k, v in self.labels.items())


@dataclass(frozen=True)
class AlertState:
    status: Status
    since: float  # when it entered `status`
    value: float | None
    last_seen: float  # when the series last reported a value


def breaches(op: Op, value: float, threshold: float) -> bool:
    return _OPS[op](value, threshold)


def clears(op: Op, value: float, threshold: float, hysteresis: float) -> bool:
    """True when `value` is back on the safe side of the threshold by at least `hysteresis`."""
    if op in (">", ">="):
        edge = threshold - hysteresis
        return value < edge if op == ">=" or hysteresis > 0 else value <= edge
    edge = threshold + hysteresis
    return value > edge if op == "<=" or hysteresis > 0 else value >= edge


def no_data_after(rule: AlertRule, interval_s: float, floor_s: float = 0.0, cadence_s: float = 0.0) -> float:
    """How long a firing alert's series may send nothing before it resolves with reason "no data":
    two evaluation intervals (one missed tick is not an outage of the data), or the rule's own
    for-duration when longer (data that must breach for `for_s` to fire may pause as long), or twice
    `cadence_s` — the gap the series itself leaves between reports (connection counts come every
    10 s) — so a sporadic series does not flap, or the configured `floor_s` when longer still."""
    return max(2.0 * interval_s, rule.for_s, floor_s, 2.0 * cadence_s)


def evaluate(
    rule: AlertRule, state: AlertState | None, value: float | None, now: float, *, stale_s: float = 60.0
) -> tuple[AlertState, Transition | None]:
    """The next state of one (rule, series) pair and the transition it made, if any."""
    if state is None:
        state = AlertState("ok", now, None, now)
    if value is None:
        if state.status == "pending":
            return AlertState("ok", now, None, state.last_seen), None
        if state.status == "firing" and now - state.last_seen >= stale_s:
            return AlertState("ok", now, None, state.last_seen), "resolved"
        return state, None
    seen = replace(state, value=value, last_seen=now)
    if state.status == "firing":
        if clears(rule.op, value, rule.threshold, rule.hysteresis):
            return AlertState("ok", now, value, now), "resolved"
        return seen, None
    if not breaches(rule.op, value, rule.threshold):
        return (AlertState("ok", now, value, now) if state.status != "ok" else seen), None
    if state.status == "ok":
        if rule.for_s <= 0:
            return AlertState("firing", now, value, now), "triggered"
        return AlertState("pending", now, value, now), None
    # pending and still breaching
    if now - state.since >= rule.for_s:
        return AlertState("firing", now, value, now), "triggered"
    return seen, None
