"""Supervision as pure functions: desired services + observed replica slots + `now` → actions.

Theory of operation. Each service has `replicas` slots (`hello#1`, `hello#2`, ...). A slot is a frozen
record of what is known about the instance in it: its phase (`absent → starting → running → stopping →
absent`), its health, and the restart bookkeeping (restarts, attempts since the last stable run, recent
failure times, current back-off, `state`). Everything that changes a slot lives here:

- `started` / `exited` / `health_checked` are the transitions the shell reports (a spawn succeeded, an
  instance ended, a probe answered);
- `plan` compares every service's desired state with its slots and returns the actions to take
  (`StartInstance`, `StopInstance`), the slots as they will be once those are under way, a status per
  service, and the next time something is due (`wake_at`), so the shell never polls.

Restart policies: `no` never restarts; `on-failure[:N]` restarts failed exits (non-zero, signal, failed
health) at most N times in a row; `always` restarts every exit. Back-off doubles from `initial_s` to
`max_s` and resets once an instance has run `stable_s`. `crashloop_failures` failed exits within
`crashloop_window_s` put the slot in `crashloop`: it keeps retrying, but only every `max_s`.
`depends_on`: a slot starts only when every dependency has a healthy instance; when services stop
together, dependents stop first.

While a deployment moves a service (`ServiceView.deploying`, see `orch.deployer`), the plan neither
restarts slots whose version differs nor starts slots it has never seen nor stops slots beyond the
replica count: the deployer puts new instances into slots itself, health-gated, and takes old ones out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from orch.spec import RestartPolicy

Phase = Literal["absent", "starting", "running", "stopping"]
SlotState = Literal["ok", "backoff", "crashloop", "failed", "exited"]
StopIntent = Literal["", "stop", "restart", "health"]
SlotKey = tuple[str, int]


@dataclass(frozen=True)
class BackoffPolicy:
    initial_s: float = 1.0
    max_s: float = 60.0
    factor: float = 2.0
    stable_s: float = 30.0
    crashloop_failures: int = 5
    crashloop_window_s: float = 120.0


@dataclass(frozen=True)
class ServiceView:
    """What the planner needs of a service's spec and desired state."""

    name: str
    version: int
    desired: Literal["running", "stopped"]
    replicas: int = 1
    restart: RestartPolicy = field(default_factory=lambda: RestartPolicy("on-failure"))
    depends_on: tuple[str, ...] = ()
    health_retries: int | None = None  # None: no health check, an instance is healthy while it runs
    start_period_s: float = 0.0
    # A deployment is moving this service's slots (orch.deployer): leave versions and missing slots alone.
    deploying: bool = False
    # A rollout failed part-way with auto_rollback off: the slots it switched run `version`, the rest keep
    # the release they run (no restart onto `version` without a health gate; one that exits starts again on
    # its own release) until the next deployment.
    hold_versions: bool = False


@dataclass(frozen=True)
class Slot:
    service: str
    index: int
    phase: Phase = "absent"
    version: int = 0
    healthy: bool = False
    health_failures: int = 0
    started_at: float | None = None
    restarts: int = 0
    attempts: int = 0
    failures: tuple[float, ...] = ()
    backoff_s: float = 0.0
    next_start_at: float = 0.0
    state: SlotState = "ok"
    reason: str = ""
    stop_intent: StopIntent = ""

    @property
    def key(self) -> SlotKey:
        return (self.service, self.index)

    @property
    def active(self) -> bool:
        return self.phase != "absent"


@dataclass(frozen=True)
class StartInstance:
    service: str
    index: int
    version: int


@dataclass(frozen=True)
class StopInstance:
    service: str
    index: int
    intent: StopIntent
    reason: str


Action = StartInstance | StopInstance


@dataclass(frozen=True)
class ServiceStatus:
    # stopped|stopping|waiting|starting|running|degraded|unhealthy|restarting|backoff|crashloop|failed|exited
    status: str
    reason: str = ""
    healthy: int = 0
    replicas: int = 0


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    slots: dict[SlotKey, Slot] = field(default_factory=dict)
    statuses: dict[str, ServiceStatus] = field(default_factory=dict)
    wake_at: float | None = None

    def _wake(self, t: float) -> None:
        self.wake_at = t if self.wake_at is None else min(self.wake_at, t)


# --- transitions the shell reports ---------------------------------------------------------------


def started(slot: Slot, version: int, now: float, *, has_healthcheck: bool) -> Slot:
    """The instance was spawned: it is running, healthy at once only when there is no health check."""
    return dataclasses.replace(
        slot,
        phase="running",
        version=version,
        started_at=now,
        healthy=not has_healthcheck,
        health_failures=0,
        stop_intent="",
        reason="" if slot.state == "ok" else slot.reason,
    )


def health_checked(slot: Slot, ok: bool, now: float, svc: ServiceView, detail: str = "") -> Slot:
    """One probe result. Failures inside the start period (before the first success) do not count."""
    if slot.phase != "running":
        return slot
    if ok:
        return dataclasses.replace(slot, healthy=True, health_failures=0)
    in_start_period = slot.started_at is not None and now - slot.started_at < svc.start_period_s
    if in_start_period and not slot.healthy and slot.health_failures == 0:
        return slot
    failures = slot.health_failures + 1
    retries = svc.health_retries or 1
    return dataclasses.replace(
        slot,
        health_failures=failures,
        healthy=slot.healthy and failures < retries,
        reason=f"health check failed {failures} time(s): {detail}" if detail else slot.reason,
    )


def exited(slot: Slot, svc: ServiceView | None, *, failed: bool, detail: str, now: float, bo: BackoffPolicy) -> Slot:
    """The instance ended (or could not be spawned). Decides whether and when it comes back."""
    base = dataclasses.replace(slot, phase="absent", healthy=False, health_failures=0, stop_intent="")
    if svc is None or slot.stop_intent == "stop":
        return dataclasses.replace(base, state="ok", reason=f"stopped ({detail})", next_start_at=now)
    if slot.stop_intent == "restart":
        return dataclasses.replace(
            base, state="ok", reason=f"restarted ({detail})", next_start_at=now, restarts=slot.restarts + 1
        )
    health = slot.stop_intent == "health"
    failed = failed or health
    why = slot.reason if health else detail
    if slot.started_at is not None and now - slot.started_at >= bo.stable_s:
        base = dataclasses.replace(base, attempts=0, failures=(), backoff_s=0.0)
    policy = svc.restart
    if policy.mode == "no" or (policy.mode == "on-failure" and not failed):
        return dataclasses.replace(base, state="exited", reason=why)
    if policy.mode == "on-failure" and policy.max_retries is not None and base.attempts >= policy.max_retries:
        return dataclasses.replace(
            base, state="failed", reason=f"gave up after {base.attempts} restart(s); last: {why}"
        )
    recent = (*(t for t in base.failures if now - t < bo.crashloop_window_s), now)
    if len(recent) >= bo.crashloop_failures:
        state: SlotState = "crashloop"
        delay = bo.max_s
        why = f"crash loop: {len(recent)} exits in {bo.crashloop_window_s:g}s; last: {why}"
    else:
        state = "backoff"
        delay = bo.initial_s if base.backoff_s <= 0 else min(base.backoff_s * bo.factor, bo.max_s)
    return dataclasses.replace(
        base,
        state=state,
        reason=why,
        failures=recent,
        backoff_s=delay,
        next_start_at=now + delay,
        attempts=base.attempts + 1,
        restarts=base.restarts + 1,
    )


def reset(slot: Slot, now: float) -> Slot:
    """A person asked to (re)start: forget back-off, give-up and crash-loop state."""
    return dataclasses.replace(slot, state="ok", reason="", attempts=0, failures=(), backoff_s=0.0, next_start_at=now)


# --- planning ----------------------------------------------------------------------------------


def _slots_of(slots: Mapping[SlotKey, Slot], name: str) -> list[Slot]:
    return sorted((s for s in slots.values() if s.service == name), key=lambda s: s.index)


def _ready(name: str, services: Mapping[str, ServiceView], slots: Mapping[SlotKey, Slot]) -> bool:
    svc = services.get(name)
    if svc is None or svc.desired != "running":
        return False
    return any(s.phase == "running" and s.healthy for s in _slots_of(slots, name))


def plan(services: Mapping[str, ServiceView], slots: Mapping[SlotKey, Slot], now: float, bo: BackoffPolicy) -> Plan:
    """Actions that move the observed slots toward the services' desired state."""
    out = Plan(slots=dict(slots))
    for name in sorted(services):
        svc = services[name]
        if svc.desired == "running":
            _plan_running(svc, services, out, now, bo)
        else:
            _plan_stopped(svc, services, out)
    # Slots of services that no longer exist: stop what runs, forget the rest.
    for key, slot in list(out.slots.items()):
        if key[0] in services:
            continue
        if slot.phase in ("running", "starting"):
            _stop(out, slot, "stop", "service removed")
        elif slot.phase == "absent":
            del out.slots[key]
    return out


def _stop(out: Plan, slot: Slot, intent: StopIntent, reason: str) -> None:
    out.actions.append(StopInstance(slot.service, slot.index, intent, reason))
    out.slots[slot.key] = dataclasses.replace(
        slot, phase="stopping", stop_intent=intent, reason=reason if intent != "health" else slot.reason
    )


def _plan_running(
    svc: ServiceView, services: Mapping[str, ServiceView], out: Plan, now: float, bo: BackoffPolicy
) -> None:
    missing = [d for d in svc.depends_on if d not in services]
    waiting_on = [d for d in svc.depends_on if not _ready(d, services, out.slots)]
    for index in range(1, svc.replicas + 1):
        slot = out.slots.get((svc.name, index)) or Slot(svc.name, index)
        if svc.deploying and slot.key not in out.slots:
            continue
        out.slots[slot.key] = slot
        if slot.phase == "absent":
            if slot.state in ("failed", "exited"):
                continue
            if now < slot.next_start_at:
                out._wake(slot.next_start_at)
                continue
            if waiting_on:
                continue
            # A held replica comes back on the release it ran (health-checked as a start always is), not
            # on the service's release without the deployment's health gate.
            held = svc.hold_versions and slot.version > 0
            out.actions.append(StartInstance(svc.name, index, slot.version if held else svc.version))
            out.slots[slot.key] = dataclasses.replace(slot, phase="starting")
        elif slot.phase == "running":
            if slot.version != svc.version and not svc.deploying and not svc.hold_versions:
                _stop(out, slot, "restart", f"spec version {svc.version} applied")
            elif (
                svc.health_retries is not None
                and slot.health_failures >= svc.health_retries
                and svc.restart.mode != "no"
            ):
                _stop(out, slot, "health", slot.reason)
            elif slot.state in ("backoff", "crashloop") and slot.started_at is not None:
                stable_at = slot.started_at + bo.stable_s
                if now >= stable_at:
                    out.slots[slot.key] = dataclasses.replace(
                        slot, state="ok", reason="", attempts=0, failures=(), backoff_s=0.0
                    )
                else:
                    out._wake(stable_at)
    for slot in _slots_of(out.slots, svc.name):
        if slot.index > svc.replicas and not (svc.deploying and slot.index <= 64):
            if slot.phase in ("running", "starting"):
                _stop(out, slot, "stop", f"scaled to {svc.replicas}")
            elif slot.phase == "absent":
                del out.slots[slot.key]
    out.statuses[svc.name] = _status(svc, _slots_of(out.slots, svc.name), missing, waiting_on)


def _plan_stopped(svc: ServiceView, services: Mapping[str, ServiceView], out: Plan) -> None:
    dependents = [
        o.name
        for o in services.values()
        if svc.name in o.depends_on and o.desired == "stopped" and any(s.active for s in _slots_of(out.slots, o.name))
    ]
    for slot in _slots_of(out.slots, svc.name):
        if slot.phase in ("running", "starting") and not dependents:
            _stop(out, slot, "stop", "stopped on request")
    active = [s for s in _slots_of(out.slots, svc.name) if s.active]
    if active:
        why = f"waiting for {', '.join(sorted(dependents))} to stop first" if dependents else "stopping"
        out.statuses[svc.name] = ServiceStatus("stopping", why, 0, svc.replicas)
    else:
        out.statuses[svc.name] = ServiceStatus("stopped", "", 0, svc.replicas)


def _status(svc: ServiceView, slots: Iterable[Slot], missing: list[str], waiting_on: list[str]) -> ServiceStatus:
    mine = [s for s in slots if s.index <= svc.replicas]
    healthy = sum(1 for s in mine if s.phase == "running" and s.healthy)

    def st(status: str, reason: str = "") -> ServiceStatus:
        return ServiceStatus(status, reason, healthy, svc.replicas)

    if svc.replicas == 0:
        return st("stopped", "scaled to 0 replicas")
    for state in ("failed", "crashloop"):
        hit = [s for s in mine if s.state == state and s.phase != "running"]
        if hit:
            return st(state, hit[0].reason)
    if healthy == svc.replicas:
        return st("running")
    if missing:
        return st("waiting", f"depends on {', '.join(missing)}, which is not defined")
    if waiting_on and not any(s.active for s in mine):
        return st("waiting", f"waiting for {', '.join(waiting_on)} to be healthy")
    if healthy:
        return st("degraded", f"{healthy} of {svc.replicas} instances healthy")
    unhealthy = [s for s in mine if s.phase == "running" and s.health_failures and not s.healthy]
    if unhealthy:
        return st("unhealthy", unhealthy[0].reason)
    restarting = [s for s in mine if s.phase == "stopping" and s.stop_intent in ("restart", "health")]
    if restarting:
        return st("restarting", restarting[0].reason)
    if any(s.phase in ("starting", "running") for s in mine):
        return st("starting")
    backing = [s for s in mine if s.state in ("backoff", "crashloop")]
    if backing:
        return st("backoff", backing[0].reason)
    exited_ = [s for s in mine if s.state == "exited"]
    if exited_:
        return st("exited", exited_[0].reason)
    return st("starting")


def start_order(services: Mapping[str, ServiceView]) -> list[str]:
    """Services in dependency order (dependencies first); a cycle is reported as ValueError."""
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(n: str, path: tuple[str, ...]) -> None:
        if state.get(n) == 2:
            return
        if state.get(n) == 1:
            raise ValueError(" -> ".join((*path, n)))
        state[n] = 1
        for d in services[n].depends_on if n in services else ():
            visit(d, (*path, n))
        state[n] = 2
        if n in services:
            order.append(n)

    for n in sorted(services):
        visit(n, ())
    return order
