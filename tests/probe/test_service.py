"""The probe service end to end in-process: real collection ticks into a real metrics.db, a burning
child in its service's CPU series, alerts with for-duration through the bus and a webhook delivered
(after retries) to a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from core.bus import EventBus
from core.clock import ManualClock
from core.ports import InstanceInfo, Sample, ServiceState
from core.schema import CORE_MIGRATIONS
from core.store import Store
from probe.config import AlertRuleBody, ProbeConfig, load_probe_config
from probe.service import ProbeService

BURN = "import time\nend = time.time() + 60\nwhile time.time() < end: pass\n"


class Inventory:
    """A ServiceInventory over child processes this test started (orch is another component)."""

    def __init__(self) -> None:
        self.items: list[InstanceInfo] = []

    def instances(self) -> list[InstanceInfo]:
        return list(self.items)

    def service_states(self) -> list[ServiceState]:
        return []


class Gauge:
    """A MetricsSource whose one gauge the test sets (stands in for the gate's counters)."""

    def __init__(self) -> None:
        self.value = 0.0
        self.requests = 0
        self.present = True  # False: the route is gone, and its series with it

    def samples(self) -> list[Sample]:
        self.requests += 10
        if not self.present:
            return []
        return [
            Sample("gate_upstream_latency_p99_ms", self.value, {"route": "r1"}),
            Sample("gate_requests_total", self.requests, {"route": "r1", "class": "2xx"}, kind="counter"),
        ]


@pytest.fixture
def burner() -> Iterator[subprocess.Popen[bytes]]:
    p = subprocess.Popen([sys.executable, "-c", BURN])
    yield p
    p.kill()
    p.wait()


@pytest.fixture
async def kernel(tmp_path: Path) -> AsyncIterator[tuple[Store, EventBus]]:
    store = Store(tmp_path / "state.db")
    await store.open()
    await store.migrate("core", CORE_MIGRATIONS)
    bus = EventBus(store)
    await bus.start()
    yield store, bus
    bus.close()
    await store.close()


async def poll(fn: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.1)


async def test_ticks_store_host_and_service_metrics(tmp_path: Path, kernel: Any, burner: Any) -> None:
    store, bus = kernel
    inv = Inventory()
    inv.items = [InstanceInfo("burn", "burn-1", "process", "running", pid=burner.pid)]
    gauge = Gauge()
    svc = ProbeService(
        ProbeConfig(interval_s=0.25), tmp_path, store, bus, inventory=lambda: inv, gate_source=lambda: gauge
    )
    await svc.start()
    try:
        assert (tmp_path / "metrics.db").exists()
        t0 = time.time()

        async def burning() -> bool:
            q = await svc.query("cpu", {"service": "burn"}, t0 - 5, time.time() + 1, 1)
            pts = q["series"][0]["points"] if q["series"] else []
            return bool(pts) and pts[-1][1] > 5

        await poll(burning, 3.0, "the burning child in service_cpu_percent{service=burn}")
        q = await svc.query("host_cpu_percent", {"cpu": "total"}, t0 - 5, time.time() + 1, 1)
        assert q["resolution"] == "raw" and q["series"][0]["points"]
        gate = await svc.query("gate_requests_per_second", {}, t0 - 5, time.time() + 1, 1)
        assert gate["series"] and gate["series"][0]["points"][-1][1] > 0
        text = svc.exposition()
        assert 'service_cpu_percent{instance="burn-1",service="burn"}' in text
        assert "# TYPE gate_requests_total counter" in text
        top = await svc.top("cpu", "service", 5, time.time() - 60, time.time() + 1)
        assert top and top[0]["service"] == "burn"
        st = svc.status()
        assert st["ticks"] >= 2 and st["errors"] == 0
        sm = await svc.service_metrics("burn", t0 - 5, time.time() + 1, None)
        assert "service_cpu_percent" in sm["metrics"] and "service_rss_bytes" in sm["metrics"]
    finally:
        await svc.stop(5.0)


async def test_alert_fires_after_for_duration_resolves_and_webhook_is_retried(tmp_path: Path, kernel: Any) -> None:
    store, bus = kernel
    received: list[dict[str, Any]] = []
    calls = {"n": 0}

    async def hook(request: web.Request) -> web.Response:
        calls["n"] += 1
        if calls["n"] <= 2:
            return web.Response(status=503)  # the first two attempts fail: the sender must retry
        received.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]

    gauge = Gauge()
    cfg = load_probe_config({"interval_s": "250ms", "webhook_backoff_s": 0.1})
    svc = ProbeService(cfg, tmp_path, store, bus, gate_source=lambda: gauge)
    await svc.start()
    sub = bus.subscribe(types=["alert.triggered", "alert.resolved"])
    try:
        rule = await svc.add_rule(
            AlertRuleBody.model_validate(
                {
                    "name": "slow upstream",
                    "metric": "gate_upstream_latency_p99_ms",
                    "labels": {"route": "r1"},
                    "op": ">",
                    "threshold": 500,
                    "for": "1s",
                    "hysteresis": 100,
                    "webhook": f"http://127.0.0.1:{port}/hook",
                }
            )
        )
        gauge.value = 900.0
        started = time.monotonic()
        ev = await asyncio.wait_for(sub.__anext__(), 10)
        assert ev.type == "alert.triggered"
        assert time.monotonic() - started >= 1.0  # not before its for-duration
        assert ev.data["rule_id"] == rule["id"] and ev.data["labels"] == {"route": "r1"} and ev.data["value"] == 900
        assert svc.alerts()["active"][0]["status"] == "firing"
        gauge.value = 450.0  # under the threshold but inside the hysteresis band: still firing
        await svc.wait_ticks(3, 5)
        assert svc.alerts()["active"][0]["status"] == "firing"
        gauge.value = 100.0
        ev = await asyncio.wait_for(sub.__anext__(), 10)
        assert ev.type == "alert.resolved" and ev.data["value"] == 100
        assert svc.alerts()["active"] == []

        async def both_delivered() -> bool:
            return len(received) == 2

        await poll(both_delivered, 10, "both webhook deliveries")
        assert [r["event"] for r in sorted(received, key=lambda r: r["at"])] == ["alert.triggered", "alert.resolved"]
        assert calls["n"] == 4 and svc.webhooks.delivered == 2
        # rule CRUD: a duplicate name is a conflict; removal stops evaluation
        with pytest.raises(Exception, match="exists already"):
            await svc.add_rule(AlertRuleBody(name="slow upstream", metric="x", op=">", threshold=1))
        await svc.remove_rule(str(rule["id"]))
        assert await svc.rules.list() == []
    finally:
        sub.close()
        await svc.stop(5.0)
        await runner.cleanup()


async def test_webhook_gives_up_after_its_attempts(tmp_path: Path) -> None:
    from probe.webhook import WebhookSender

    async def always_500(request: web.Request) -> web.Response:
        return web.Response(status=500)

    async def refuses(request: web.Request) -> web.Response:
        return web.Response(status=400)

    app = web.Application()
    app.router.add_post("/500", always_500)
    app.router.add_post("/400", refuses)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    sender = WebhookSender(attempts=3, backoff_s=0.05, timeout_s=2)
    try:
        assert await sender._deliver(f"http://127.0.0.1:{port}/500", {"x": 1}) is False
        assert await sender._deliver(f"http://127.0.0.1:{port}/400", {"x": 1}) is False
        # nothing listens on a freshly closed port: connection refused, retried, then given up
        assert await sender._deliver("http://127.0.0.1:9/none", {"x": 1}) is False
        assert sender.failed == 3 and sender.delivered == 0
    finally:
        await sender.close(1)
        await runner.cleanup()


def test_config_errors_name_the_setting() -> None:
    from core.errors import StartupError

    with pytest.raises(StartupError, match=r"probe.interval_s: Input should be less than or equal to 5"):
        load_probe_config({"interval_s": 10})
    with pytest.raises(StartupError, match=r"probe.retention.raw"):
        load_probe_config({"retention": {"raw": "soon"}})
    with pytest.raises(StartupError, match=r"probe.retnetion: Extra inputs"):
        load_probe_config({"retnetion": {}})
    with pytest.raises(StartupError, match=r"coarser resolution"):
        load_probe_config({"retention": {"raw": "10d"}})
    cfg = load_probe_config({"interval_s": "2s", "retention": {"raw": "12h", "5s": "3d", "1m": "90d"}})
    assert cfg.interval_s == 2 and cfg.retention.as_map() == {"raw": 43200, "5s": 259200, "1m": 7776000}
    with pytest.raises(ValueError, match="not a metric name"):
        AlertRuleBody(name="a", metric="bad name", op=">", threshold=1)
    with pytest.raises(ValueError, match="not an http"):
        AlertRuleBody(name="a", metric="m", op=">", threshold=1, webhook="ftp://x")


async def test_a_firing_alert_whose_series_vanishes_resolves_with_reason_no_data(tmp_path: Path, kernel: Any) -> None:
    """The series stops (its route is removed): the alert resolves once the rule's evaluation has found no
    sample for max(2 intervals, for_s) — not before, not never — and the webhook is told why. A rule
    changed or removed while firing resolves its alerts too."""
    store, bus = kernel
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    gauge = Gauge()
    clock = ManualClock()
    svc = ProbeService(
        ProbeConfig(enabled=False, interval_s=0.25, webhook_url=url),
        tmp_path,
        store,
        bus,
        gate_source=lambda: gauge,
        clock=clock,
    )
    await svc.start()

    async def tick() -> None:
        clock.advance(0.25)
        await svc.tick()

    try:
        await svc.add_rule(
            AlertRuleBody.model_validate(
                {"name": "slow", "metric": "gate_upstream_latency_p99_ms", "op": ">", "threshold": 500, "for": "1s"}
            )
        )
        gauge.value = 900.0
        for _ in range(5):  # pending for 1 s, then firing
            await tick()
        assert [a["status"] for a in svc.alerts()["active"]] == ["firing"]
        gauge.present = False
        for _ in range(3):  # 0.75 s without data: under for_s (1 s, more than 2 intervals): still firing
            await tick()
            assert [a["status"] for a in svc.alerts()["active"]] == ["firing"]
        await tick()
        assert svc.alerts()["active"] == []
        last = svc.alerts()["recent"][-1]
        assert (last["event"], last["reason"], last["value"]) == ("alert.resolved", "no data", None)
        for _ in range(8):  # resolved once, not again
            await tick()
        assert [r["event"] for r in svc.alerts()["recent"]] == ["alert.triggered", "alert.resolved"]

        gauge.present = True
        for _ in range(5):
            await tick()
        assert [a["status"] for a in svc.alerts()["active"]] == ["firing"]
        await svc.replace_rule(
            "slow",
            AlertRuleBody.model_validate(
                {"name": "slow", "metric": "gate_upstream_latency_p99_ms", "op": ">", "threshold": 600}
            ),
        )
        assert svc.alerts()["active"] == [] and svc.alerts()["recent"][-1]["reason"] == "rule changed"
        await tick()  # the new rule, from a new state: no for-duration, fires at once
        assert [a["status"] for a in svc.alerts()["active"]] == ["firing"]
        await svc.remove_rule("slow")
        assert svc.alerts()["active"] == []
        assert svc.alerts()["recent"][-1]["reason"] == "rule removed"

        async def delivered() -> bool:
            return len(received) == 6

        await poll(delivered, 10, "six webhook deliveries")
        got = sorted(received, key=lambda r: (r["at"], r["event"] == "alert.resolved"))
        assert [(r["event"], r["reason"]) for r in got] == [
            ("alert.triggered", "threshold"),
            ("alert.resolved", "no data"),
            ("alert.triggered", "threshold"),
            ("alert.resolved", "rule changed"),
            ("alert.triggered", "threshold"),
            ("alert.resolved", "rule removed"),
        ]
    finally:
        await svc.stop(5.0)
        await runner.cleanup()


class Sporadic:
    """A MetricsSource whose one series reports only every `every`-th tick (as connection counts do)."""

    def __init__(self, every: int) -> None:
        self.every, self.n, self.value = every, 0, 900.0

    def samples(self) -> list[Sample]:
        self.n += 1
        return [Sample("gate_upstream_latency_p99_ms", self.value, {"route": "r1"})] if self.n % self.every == 1 else []


async def test_a_sporadic_series_does_not_flap_but_still_resolves_when_gone(tmp_path: Path, kernel: Any) -> None:
    store, bus = kernel
    source = Sporadic(every=6)  # a report every 1.5 s at 0.25 s ticks: "no data" for 2 intervals is normal
    clock = ManualClock()
    svc = ProbeService(
        ProbeConfig(enabled=False, interval_s=0.25), tmp_path, store, bus, gate_source=lambda: source, clock=clock
    )
    await svc.start()
    try:
        await svc.add_rule(
            AlertRuleBody.model_validate(
                {"name": "slow", "metric": "gate_upstream_latency_p99_ms", "op": ">", "threshold": 500}
            )
        )
        for _ in range(61):  # 15 s of sporadic reports, all breaching, the last one in the last tick
            clock.advance(0.25)
            await svc.tick()
        assert [r["event"] for r in svc.alerts()["recent"]] == ["alert.triggered"], svc.alerts()["recent"]
        source.every = 10**9  # the series is gone: resolved after twice its gap (3 s), not never
        source.n = 1
        for _ in range(11):
            clock.advance(0.25)
            await svc.tick()
        assert [a["status"] for a in svc.alerts()["active"]] == ["firing"]
        for _ in range(1):
            clock.advance(0.25)
            await svc.tick()
        assert [(r["event"], r["reason"]) for r in svc.alerts()["recent"]] == [
            ("alert.triggered", "threshold"),
            ("alert.resolved", "no data"),
        ]
    finally:
        await svc.stop(5.0)


async def test_a_rule_removed_during_a_tick_is_resolved_after_it_triggered(tmp_path: Path, kernel: Any) -> None:
    """The tick's "triggered" waits for the metrics write; a rule removed meanwhile must not be told
    "resolved" first. The write is the real one; the test only holds it until the rule is removed."""
    store, bus = kernel
    gauge = Gauge()
    gauge.value = 900.0
    clock = ManualClock()
    svc = ProbeService(
        ProbeConfig(enabled=False, interval_s=0.25), tmp_path, store, bus, gate_source=lambda: gauge, clock=clock
    )
    await svc.start()
    real_write = svc.metrics.write
    writing, proceed = asyncio.Event(), asyncio.Event()

    async def held_write(*args: Any) -> int:
        writing.set()
        await proceed.wait()
        return await real_write(*args)

    try:
        await svc.add_rule(
            AlertRuleBody.model_validate(
                {"name": "slow", "metric": "gate_upstream_latency_p99_ms", "op": ">", "threshold": 500}
            )
        )
        svc.metrics.write = held_write  # type: ignore[method-assign, assignment]
        clock.advance(0.25)
        tick = asyncio.create_task(svc.tick())
        await asyncio.wait_for(writing.wait(), 10)
        removal = asyncio.create_task(svc.remove_rule("slow"))
        await asyncio.sleep(0.2)  # the removal has run as far as it can
        proceed.set()
        await asyncio.wait_for(asyncio.gather(tick, removal), 10)
        events = [(r["event"], r["reason"]) for r in svc.alerts()["recent"]]
        assert events == [("alert.triggered", "threshold"), ("alert.resolved", "rule removed")], events
        published = [e.type for e in await bus.read_after(0, 100) if e.type.startswith("alert.")]
        assert published == ["alert.triggered", "alert.resolved"]
    finally:
        await svc.stop(5.0)


async def test_a_firing_alert_survives_a_restart_without_a_second_triggered(tmp_path: Path, kernel: Any) -> None:
    """The firing state is in state.db: after a restart the alert is firing at once, the next ticks
    (still breaching) send no second "triggered", and clearing sends the "resolved" the first run owed."""
    store, bus = kernel
    gauge = Gauge()
    gauge.value = 900.0
    clock = ManualClock()
    rule = {"name": "slow", "metric": "gate_upstream_latency_p99_ms", "op": ">", "threshold": 500}

    def make() -> ProbeService:
        return ProbeService(
            ProbeConfig(enabled=False, interval_s=0.25), tmp_path, store, bus, gate_source=lambda: gauge, clock=clock
        )

    first = make()
    await first.start()
    try:
        await first.add_rule(AlertRuleBody.model_validate(rule))
        clock.advance(0.25)
        await first.tick()
        assert [a["status"] for a in first.alerts()["active"]] == ["firing"]
    finally:
        await first.stop(5.0)

    second = make()
    await second.start()
    try:
        assert [(a["rule"], a["status"]) for a in second.alerts()["active"]] == [("slow", "firing")]
        for _ in range(4):
            clock.advance(0.25)
            await second.tick()
        gauge.value = 100.0
        clock.advance(0.25)
        await second.tick()
        assert second.alerts()["active"] == []
    finally:
        await second.stop(5.0)
    published = [(e.type, e.data["reason"]) for e in await bus.read_after(0, 100) if e.type.startswith("alert.")]
    assert published == [("alert.triggered", "threshold"), ("alert.resolved", "cleared")], published

    third = make()  # nothing firing any more: nothing restored
    await third.start()
    try:
        assert third.alerts()["active"] == []
    finally:
        await third.stop(5.0)


async def test_a_restored_alert_is_not_resolved_for_no_data_on_the_first_ticks_after_a_restart(
    tmp_path: Path, kernel: Any
) -> None:
    """Firing for far longer than its "no data" wait, then a restart whose first tick lacks the series
    (normal for rates, CPU %, connection counts): no "resolved", no second "triggered"; the series gone
    for good still resolves, counted from the start."""
    store, bus = kernel
    gauge = Gauge()
    gauge.value = 900.0
    clock = ManualClock()
    rule = {"name": "slow", "metric": "gate_upstream_latency_p99_ms", "op": ">", "threshold": 500}

    def make() -> ProbeService:
        return ProbeService(
            ProbeConfig(enabled=False, interval_s=1), tmp_path, store, bus, gate_source=lambda: gauge, clock=clock
        )

    first = make()
    await first.start()
    try:
        await first.add_rule(AlertRuleBody.model_validate(rule))
        for _ in range(30):  # firing for 30 s; "no data" waits 2 s for this every-tick series
            clock.advance(1)
            await first.tick()
        assert [a["status"] for a in first.alerts()["active"]] == ["firing"]
    finally:
        await first.stop(5.0)

    second = make()
    await second.start()
    try:
        gauge.present = False
        clock.advance(1)
        await second.tick()
        gauge.present = True
        for _ in range(3):
            clock.advance(1)
            await second.tick()
        assert [r["event"] for r in second.alerts()["recent"]] == []
        assert [a["status"] for a in second.alerts()["active"]] == ["firing"]
        gauge.present = False
        for _ in range(40):
            clock.advance(1)
            await second.tick()
        assert [(r["event"], r["reason"]) for r in second.alerts()["recent"]] == [("alert.resolved", "no data")]
    finally:
        await second.stop(5.0)
    published = [e.type for e in await bus.read_after(0, 100) if e.type.startswith("alert.")]
    assert published == ["alert.triggered", "alert.resolved"]


def _hold_after_saving_a_firing_state(svc: ProbeService) -> asyncio.Event:
    """The first save that stores a firing state really commits, then never returns: the tick is stopped
    (or the process dies) between saving a transition and announcing it."""
    real_save, saved = svc.firing.save, asyncio.Event()

    async def save(alerts: Any, *rest: Any) -> None:
        await real_save(alerts, *rest)
        if not saved.is_set() and any(st.status == "firing" for st, _ in alerts.values()):
            saved.set()
            await asyncio.sleep(3600)

    svc.firing.save = save  # type: ignore[method-assign, assignment]
    return saved


async def test_stop_right_after_a_transition_still_announces_it(tmp_path: Path, kernel: Any) -> None:
    store, bus = kernel
    gauge = Gauge()
    gauge.value = 900.0
    svc = ProbeService(ProbeConfig(interval_s=0.25), tmp_path, store, bus, gate_source=lambda: gauge)
    saved = _hold_after_saving_a_firing_state(svc)
    await svc.start()
    try:
        await svc.add_rule(
            AlertRuleBody.model_validate(
                {"name": "slow", "metric": "gate_upstream_latency_p99_ms", "op": ">", "threshold": 500}
            )
        )
        await asyncio.wait_for(saved.wait(), 20)
    finally:
        await svc.stop(5.0)  # cancels the held tick
    published = [e.type for e in await bus.read_after(0, 100) if e.type.startswith("alert.")]
    assert published == ["alert.triggered"]
    assert await store.fetchall("SELECT * FROM probe_alert_outbox") == []


async def test_a_transition_saved_but_not_announced_before_a_crash_is_announced_at_the_next_start(
    tmp_path: Path, kernel: Any
) -> None:
    store, bus = kernel
    gauge = Gauge()
    gauge.value = 900.0
    clock = ManualClock()

    def make() -> ProbeService:
        return ProbeService(
            ProbeConfig(enabled=False, interval_s=0.25), tmp_path, store, bus, gate_source=lambda: gauge, clock=clock
        )

    first = make()
    saved = _hold_after_saving_a_firing_state(first)
    await first.start()
    await first.add_rule(
        AlertRuleBody.model_validate(
            {"name": "slow", "metric": "gate_upstream_latency_p99_ms", "op": ">", "threshold": 500}
        )
    )
    clock.advance(0.25)
    tick = asyncio.create_task(first.tick())
    await asyncio.wait_for(saved.wait(), 10)
    tick.cancel()  # the process dies here: no stop(), nothing more of this run happens
    with pytest.raises(asyncio.CancelledError):
        await tick
    assert first._executor is not None
    first._executor.shutdown(wait=True)
    await first.metrics.close()
    assert [e.type for e in await bus.read_after(0, 100) if e.type.startswith("alert.")] == []

    second = make()
    await second.start()
    try:
        for _ in range(3):  # still breaching: restored firing, no second "triggered"
            clock.advance(0.25)
            await second.tick()
        assert [(r["event"], r["reason"]) for r in second.alerts()["recent"]] == [("alert.triggered", "threshold")]
    finally:
        await second.stop(5.0)
    published = [e.type for e in await bus.read_after(0, 100) if e.type.startswith("alert.")]
    assert published == ["alert.triggered"]
    assert await store.fetchall("SELECT * FROM probe_alert_outbox") == []


async def test_no_data_after_an_outage_is_held_by_the_series_usual_gap(tmp_path: Path, kernel: Any) -> None:
    """A series down for many ticks, then reporting every tick again: when it stops once more its alert
    resolves for "no data" within a few ticks, not after a wait the size of the outage."""
    store, bus = kernel
    gauge = Gauge()
    gauge.value = 900.0
    clock = ManualClock()
    svc = ProbeService(
        ProbeConfig(enabled=False, interval_s=0.25), tmp_path, store, bus, gate_source=lambda: gauge, clock=clock
    )
    await svc.start()

    async def ticks(n: int) -> None:
        for _ in range(n):
            clock.advance(0.25)
            await svc.tick()

    try:
        await ticks(10)
        gauge.present = False
        await ticks(120)  # a 30 s outage (no rule yet: nothing fires meanwhile)
        gauge.present = True
        await ticks(4)
        await svc.add_rule(
            AlertRuleBody.model_validate(
                {"name": "slow", "metric": "gate_upstream_latency_p99_ms", "op": ">", "threshold": 500}
            )
        )
        await ticks(1)
        assert [a["status"] for a in svc.alerts()["active"]] == ["firing"]
        gauge.present = False
        await ticks(4)  # "no data" after 2 intervals of an every-tick series (0.5 s), not 2 outages
        assert [(r["event"], r["reason"]) for r in svc.alerts()["recent"]] == [
            ("alert.triggered", "threshold"),
            ("alert.resolved", "no data"),
        ]
    finally:
        await svc.stop(5.0)


@pytest.mark.parametrize(
    ("gaps", "usual"),
    [
        ((1.0,), 1.0),
        ((6.0, 6.0, 6.0), 6.0),
        ((3.0, 8.0, 5.0, 6.0), 8.0),  # jitter: held by the longest
        ((1.0, 1.0, 1.0, 120.0), 1.0),
        ((120.0, 1.0, 1.0), 1.0),  # an outage among ordinary gaps is ignored
        ((120.0,), 120.0),
        ((120.0, 1.0), 120.0),  # too few to tell: the cautious answer
    ],
)
def test_the_usual_gap_of_a_series(gaps: tuple[float, ...], usual: float) -> None:
    from probe.service import _usual_gap

    assert _usual_gap(gaps) == usual
