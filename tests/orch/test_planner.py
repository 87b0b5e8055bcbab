"""The pure planner: restart policies, back-off, crash loops, health restarts, depends_on — as tables."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orch.planner import (
    BackoffPolicy,
    ServiceView,
    Slot,
    StartInstance,
    StopInstance,
    exited,
    health_checked,
    plan,
    reset,
    start_order,
    started,
)
from orch.spec import RestartPolicy

BO = BackoffPolicy(initial_s=1, max_s=16, factor=2, stable_s=30, crashloop_failures=5, crashloop_window_s=60)


def svc(
    name: str = "web",
    *,
    policy: str = "always",
    deps: tuple[str, ...] = (),
    replicas: int = 1,
    desired: str = "running",
    health: int | None = None,
    version: int = 1,
    start_period: float = 0,
) -> ServiceView:
    return ServiceView(
        name,
        version,
        desired,
        replicas,
        RestartPolicy.parse(policy),
        deps,
        health,  # type: ignore[arg-type]
        start_period,
    )


def running(name: str = "web", index: int = 1, at: float = 0.0, *, healthy: bool = True, version: int = 1) -> Slot:
    return dataclasses.replace(started(Slot(name, index), version, at, has_healthcheck=not healthy), healthy=healthy)


def crash(slot: Slot, s: ServiceView, now: float, *, failed: bool = True) -> Slot:
    return exited(slot, s, failed=failed, detail="exit code 1" if failed else "exit code 0", now=now, bo=BO)


def test_fresh_service_starts_each_replica() -> None:
    p = plan({"web": svc(replicas=2)}, {}, 0, BO)
    assert p.actions == [StartInstance("web", 1, 1), StartInstance("web", 2, 1)]
    assert all(s.phase == "starting" for s in p.slots.values())
    assert p.statuses["web"].status == "starting"
    # Planning again with the slots as returned does not start them twice.
    assert plan({"web": svc(replicas=2)}, p.slots, 0, BO).actions == []


@pytest.mark.parametrize(
    ("policy", "failed", "expect_state", "restarts"),
    [
        ("no", True, "exited", False),
        ("no", False, "exited", False),
        ("on-failure", False, "exited", False),
        ("on-failure", True, "backoff", True),
        ("on-failure:3", True, "backoff", True),
        ("always", False, "backoff", True),
        ("always", True, "backoff", True),
    ],
)
def test_restart_policy_table(policy: str, failed: bool, expect_state: str, restarts: bool) -> None:
    s = svc(policy=policy)
    slot = crash(running(at=0), s, 5, failed=failed)
    assert slot.phase == "absent" and slot.state == expect_state
    later = plan({"web": s}, {slot.key: slot}, 5 + BO.initial_s, BO)
    assert (later.actions == [StartInstance("web", 1, 1)]) is restarts


def test_backoff_doubles_up_to_the_cap_and_waits_without_spinning() -> None:
    s = svc(policy="always")
    bo = dataclasses.replace(BO, crashloop_failures=100)
    slot, now, delays = running(at=0), 0.0, []
    for _ in range(7):
        now += 0.5
        slot = exited(slot, s, failed=True, detail="exit 1", now=now, bo=bo)
        delays.append(slot.backoff_s)
        early = plan({"web": s}, {slot.key: slot}, now + slot.backoff_s - 0.01, bo)
        assert early.actions == [] and early.wake_at == pytest.approx(now + slot.backoff_s)
        now += slot.backoff_s
        p = plan({"web": s}, {slot.key: slot}, now, bo)
        assert p.actions == [StartInstance("web", 1, 1)]
        slot = started(p.slots[slot.key], 1, now, has_healthcheck=False)
    assert delays == [1, 2, 4, 8, 16, 16, 16]
    assert slot.restarts == 7


def test_backoff_resets_after_a_stable_run() -> None:
    s = svc(policy="always")
    slot = dataclasses.replace(running(at=100), backoff_s=16, attempts=4, failures=(90, 95), state="backoff")
    slot = crash(slot, s, 100 + BO.stable_s + 1)
    assert slot.backoff_s == BO.initial_s and slot.attempts == 1 and len(slot.failures) == 1


def test_stable_run_clears_backoff_state_while_running() -> None:
    s = svc(policy="always")
    slot = dataclasses.replace(running(at=100), backoff_s=8, attempts=3, state="backoff", reason="exit 1")
    early = plan({"web": s}, {slot.key: slot}, 110, BO)
    assert early.slots[slot.key].state == "backoff" and early.wake_at == 100 + BO.stable_s
    later = plan({"web": s}, {slot.key: slot}, 100 + BO.stable_s, BO)
    assert later.slots[slot.key].state == "ok" and later.slots[slot.key].backoff_s == 0
    assert later.statuses["web"].status == "running"


def test_on_failure_n_gives_up_after_n_restarts() -> None:
    s = svc(policy="on-failure:2")
    slot, now = running(at=0), 0.0
    for _ in range(2):
        now += 1
        slot = crash(slot, s, now)
        assert slot.state == "backoff"
        now += slot.backoff_s
        slot = started(slot, 1, now, has_healthcheck=False)
    slot = crash(slot, s, now + 1)
    assert slot.state == "failed" and "gave up after 2 restart(s)" in slot.reason
    p = plan({"web": s}, {slot.key: slot}, now + 1000, BO)
    assert p.actions == [] and p.statuses["web"].status == "failed"
    # A person restarting it clears the give-up.
    again = plan({"web": s}, {slot.key: reset(slot, now + 1000)}, now + 1000, BO)
    assert again.actions == [StartInstance("web", 1, 1)]


def test_crash_loop_detected_and_retried_only_at_the_cap() -> None:
    s = svc(policy="always")
    slot, now = running(at=0), 0.0
    for i in range(BO.crashloop_failures):
        now += 1
        slot = crash(slot, s, now)
        if i < BO.crashloop_failures - 1:
            assert slot.state == "backoff"
            now += slot.backoff_s
            slot = started(slot, 1, now, has_healthcheck=False)
    assert slot.state == "crashloop" and slot.backoff_s == BO.max_s and "crash loop" in slot.reason
    p = plan({"web": s}, {slot.key: slot}, now + 1, BO)
    assert p.actions == [] and p.statuses["web"].status == "crashloop" and p.wake_at == now + BO.max_s


def test_failures_outside_the_window_do_not_make_a_crash_loop() -> None:
    s = svc(policy="always")
    slot = dataclasses.replace(running(at=1000), failures=(0, 1, 2, 3))
    assert crash(slot, s, 1001).state == "backoff"


@pytest.mark.parametrize(
    ("results", "start_period", "expect_failures", "expect_healthy"),
    [
        ([True], 0, 0, True),
        ([False], 0, 1, False),
        ([False], 10, 0, False),  # inside the start period, before any success: ignored
        ([True, False], 10, 1, True),  # after a success, failures count even in the start period
        ([True, False, False], 0, 2, True),  # still healthy until `retries` failures in a row
        ([True, False, False, False], 0, 3, False),
        ([False, False, True], 0, 0, True),
    ],
)
def test_health_results(results: list[bool], start_period: float, expect_failures: int, expect_healthy: bool) -> None:
    s = svc(health=3, start_period=start_period)
    slot = running(at=0, healthy=False)
    for i, ok in enumerate(results):
        slot = health_checked(slot, ok, 1 + i, s, "connection refused")
    assert (slot.health_failures, slot.healthy) == (expect_failures, expect_healthy)


def test_failing_health_checks_restart_the_instance_with_the_reason() -> None:
    s = svc(health=2, policy="on-failure")
    slot = running(at=0, healthy=False)
    for t in (1, 2):
        slot = health_checked(slot, False, t, s, "HTTP 500")
    p = plan({"web": s}, {slot.key: slot}, 3, BO)
    assert p.actions == [StopInstance("web", 1, "health", "health check failed 2 time(s): HTTP 500")]
    assert p.statuses["web"].status == "restarting"
    stopped = exited(p.slots[slot.key], s, failed=False, detail="signal SIGTERM", now=4, bo=BO)
    assert stopped.state == "backoff" and stopped.restarts == 1 and "HTTP 500" in stopped.reason


def test_restart_policy_no_keeps_an_unhealthy_instance() -> None:
    s = svc(health=1, policy="no")
    slot = health_checked(running(at=0, healthy=False), False, 1, s, "refused")
    p = plan({"web": s}, {slot.key: slot}, 2, BO)
    assert p.actions == [] and p.statuses["web"].status == "unhealthy"


def test_new_spec_version_restarts_running_instances() -> None:
    slot = running(version=1)
    p = plan({"web": svc(version=2)}, {slot.key: slot}, 10, BO)
    assert p.actions == [StopInstance("web", 1, "restart", "spec version 2 applied")]
    after = exited(p.slots[slot.key], svc(version=2), failed=False, detail="signal SIGTERM", now=11, bo=BO)
    assert after.state == "ok" and after.restarts == 1
    assert plan({"web": svc(version=2)}, {after.key: after}, 11, BO).actions == [StartInstance("web", 1, 2)]


def test_scaling_down_stops_the_extra_slots() -> None:
    slots = {(k := running(index=i)).key: k for i in (1, 2, 3)}
    p = plan({"web": svc(replicas=1)}, slots, 0, BO)
    assert p.actions == [StopInstance("web", 2, "stop", "scaled to 1"), StopInstance("web", 3, "stop", "scaled to 1")]


def test_depends_on_waits_for_a_healthy_dependency() -> None:
    services = {"db": svc("db", health=3), "api": svc("api", deps=("db",))}
    p = plan(services, {}, 0, BO)
    assert p.actions == [StartInstance("db", 1, 1)]
    assert p.statuses["api"] == dataclasses.replace(p.statuses["api"], status="waiting")
    assert "waiting for db to be healthy" in p.statuses["api"].reason
    db = started(p.slots[("db", 1)], 1, 1, has_healthcheck=True)
    assert plan(services, {db.key: db}, 1, BO).actions == []  # running but not yet healthy
    db = health_checked(db, True, 2, services["db"])
    assert plan(services, {db.key: db}, 2, BO).actions == [StartInstance("api", 1, 1)]


def test_missing_dependency_is_reported() -> None:
    p = plan({"api": svc("api", deps=("db",))}, {}, 0, BO)
    assert p.actions == [] and p.statuses["api"].reason == "depends on db, which is not defined"


def test_stopping_together_stops_dependents_first() -> None:
    services = {"db": svc("db", desired="stopped"), "api": svc("api", deps=("db",), desired="stopped")}
    slots = {s.key: s for s in (running("db"), running("api"))}
    p = plan(services, slots, 0, BO)
    assert p.actions == [StopInstance("api", 1, "stop", "stopped on request")]
    assert "waiting for api to stop first" in p.statuses["db"].reason
    api = exited(p.slots[("api", 1)], services["api"], failed=False, detail="signal SIGTERM", now=1, bo=BO)
    p2 = plan(services, {**p.slots, api.key: api}, 1, BO)
    assert p2.actions == [StopInstance("db", 1, "stop", "stopped on request")]


def test_removed_service_is_stopped_then_forgotten() -> None:
    slot = running("old")
    p = plan({}, {slot.key: slot}, 0, BO)
    assert p.actions == [StopInstance("old", 1, "stop", "service removed")]
    gone = exited(p.slots[slot.key], None, failed=False, detail="signal SIGTERM", now=1, bo=BO)
    assert plan({}, {gone.key: gone}, 1, BO).slots == {}


def test_start_order_and_cycles() -> None:
    services = {"c": svc("c", deps=("b",)), "b": svc("b", deps=("a",)), "a": svc("a")}
    assert start_order(services) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="a -> b -> a"):
        start_order({"a": svc("a", deps=("b",)), "b": svc("b", deps=("a",))})


@given(st.lists(st.tuples(st.booleans(), st.floats(min_value=0, max_value=100)), min_size=1, max_size=40))
def test_property_backoff_never_exceeds_cap_and_start_never_before_due(events: list[tuple[bool, float]]) -> None:
    s = svc(policy="always")
    slot, now = running(at=0), 0.0
    for failed, gap in events:
        now += gap
        slot = exited(slot, s, failed=failed, detail="x", now=now, bo=BO)
        assert 0 < slot.backoff_s <= BO.max_s
        assert slot.next_start_at >= now
        assert plan({"web": s}, {slot.key: slot}, slot.next_start_at - 1e-6, BO).actions == []
        p = plan({"web": s}, {slot.key: slot}, slot.next_start_at, BO)
        assert p.actions == [StartInstance("web", 1, 1)]
        slot = started(p.slots[slot.key], 1, slot.next_start_at, has_healthcheck=False)
        now = slot.next_start_at


@pytest.mark.parametrize(
    ("hold", "slot_version", "starts_on"),
    [
        (True, 1, 1),  # a held replica that exited comes back on the release it ran
        (True, 0, 2),  # a slot that never ran starts on the service's release
        (True, 2, 2),
        (False, 1, 2),  # not held: the service's release
    ],
)
def test_a_held_replica_restarts_on_its_own_release(hold: bool, slot_version: int, starts_on: int) -> None:
    s = dataclasses.replace(svc(version=2, replicas=2), hold_versions=hold)
    down = crash(running(index=1, version=slot_version or 1), s, now=0.0)
    down = dataclasses.replace(down, version=slot_version, next_start_at=0.0)
    p = plan({"web": s}, {("web", 1): down, ("web", 2): running(index=2, version=2)}, now=5.0, bo=BO)
    assert [a for a in p.actions if isinstance(a, StartInstance)] == [StartInstance("web", 1, starts_on)]
