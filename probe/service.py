"""The probe as a component: every tick it collects host, instance and gate readings, writes them to
`metrics.db` in one transaction, keeps the latest values for `/metrics`, and evaluates alert rules.

Theory of operation: one task ticks on wall-clock multiples of `interval_s`. The host and instance
collectors read /proc in a one-thread executor (the loop never waits on file reads); the gate's
samples are read on the loop, as its port requires. A second task rolls up and applies retention in
short transactions. A tick that overruns its interval makes the next tick skip, never pile up.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import structlog

from core.bus import EventBus
from core.clock import Clock, SystemClock
from core.errors import BadRequest
from core.memo import BoundedMemo
from core.ports import InstanceInfo, MetricsSource, ServiceInventory
from core.store import Store
from core.tasks import TaskSet
from probe.alerts import AlertRule, AlertState, evaluate, no_data_after
from probe.collect import GateAdapter, HostCollector, Point, ServiceCollector, service_state_points
from probe.config import AlertRuleBody, ProbeConfig
from probe.events import AlertTransition
from probe.exposition import Reading, render
from probe.firing import FiringStore, Pending
from probe.rollup import default_step
from probe.rules import RuleRepo, to_rule
from probe.tsdb import MetricsStore, labels_key
from probe.webhook import WebhookSender

log = structlog.get_logger("probe")

# Short names the console and CLI may use for per-service metrics.
ALIASES = {
    "cpu": "service_cpu_percent",
    "rss": "service_rss_bytes",
    "memory": "service_rss_bytes",
    "connections": "service_connections",
    "restarts": "service_restarts",
    "up": "service_up",
}
SERVICE_METRICS = (
    "service_up",
    "service_healthy_instances",
    "service_cpu_percent",
    "service_rss_bytes",
    "service_memory_bytes",
    "service_connections",
    "service_restarts",
    "service_io_read_bytes_per_second",
    "service_io_write_bytes_per_second",
    "service_net_rx_bytes_per_second",
    "service_net_tx_bytes_per_second",
)
_HISTORY = 200
_CADENCE_CAP_TICKS = 300.0  # a series' reporting gap counts for "no data" up to this (an outage is not a cadence)
_CADENCE_FORGET_TICKS = 900  # a series silent this many ticks is forgotten by the gap tracking
_CADENCE_GAPS = 4  # a series' reporting gaps remembered
_CADENCE_OUTLIER = 3.0  # a gap this many times the median of the remembered ones is an outage, not a cadence


def _usual_gap(gaps: tuple[float, ...]) -> float:
    """The largest of `gaps` within `_CADENCE_OUTLIER` times their median (a jittery series is held by its
    longest ordinary gap; one outage among ordinary gaps is ignored)."""
    ordered = sorted(gaps)
    n = len(ordered)
    median = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
    return max(g for g in ordered if g <= _CADENCE_OUTLIER * median)


@dataclass
class TickStats:
    ticks: int = 0
    skipped: int = 0
    errors: int = 0
    points: int = 0
    collect_cpu_s: float = 0.0  # CPU time of the collector thread, all ticks
    loop_cpu_s: float = 0.0  # CPU time spent on the loop by ticks (gate samples, alerts, bookkeeping)
    last_tick_ms: float = 0.0


class ProbeService:
    """Metrics collection, storage, queries, exposition and alerts. Started after orch (its inventory)."""

    name = "probe"

    def __init__(
        self,
        config: ProbeConfig,
        data_dir: Path,
        state: Store,
        bus: EventBus,
        *,
        inventory: Callable[[], ServiceInventory | None] = lambda: None,
        gate_source: Callable[[], MetricsSource | None] = lambda: None,
        sources: Callable[[], list[MetricsSource]] = lambda: [],
        clock: Clock | None = None,
        host_collector: HostCollector | None = None,
    ) -> None:
        self.config = config
        self.metrics = MetricsStore(data_dir / "metrics.db", keep_s=config.retention.as_map())
        self.rules = RuleRepo(state)
        self.firing = FiringStore(state)  # the firing alerts, across restarts
        self.bus = bus
        self._inventory = inventory
        self._gate_source = gate_source
        self._sources = sources
        self.clock = clock or SystemClock()
        self.host = host_collector or HostCollector()
        self.services = ServiceCollector(connections_every_s=config.connections_every_s)
        self.gate = GateAdapter()
        self.webhooks = WebhookSender(
            timeout_s=config.webhook_timeout_s, attempts=config.webhook_attempts, backoff_s=config.webhook_backoff_s
        )
        self.stats = TickStats()
        self.latest: dict[tuple[str, str], tuple[Mapping[str, str], float]] = {}
        self._gate_counters: list[Reading] = []
        self._rules: list[AlertRule] = []
        self._alerts: dict[tuple[int, str], tuple[AlertState, Mapping[str, str]]] = {}
        self.history: list[dict[str, Any]] = []
        # (name, key) → (the tick it last reported in, its last few gaps in ticks, its usual gap): a sporadic
        # series' "no data" waits longer
        self._cadence: dict[tuple[str, str], tuple[int, tuple[float, ...], float]] = {}
        self._tick_no = 0
        # Transitions in the order their states changed, saved to state.db with those states (so a crash
        # or stop before they are told re-sends them at the next start: at least once, never lost);
        # `_flush` announces them one at a time, so a rule removed while a tick's "triggered" waits is
        # "resolved" after it.
        self._outbox: list[Pending] = []
        self._announcing = asyncio.Lock()
        self._tasks = TaskSet("probe")
        self._executor: ThreadPoolExecutor | None = None
        self._tick_done = asyncio.Condition()
        # `labels_key` per label set, remembered (the same sets come back every tick); bounded, so vanished
        # instances' label sets do not pile up.
        self._keys: BoundedMemo[tuple[tuple[str, str], ...], str] = BoundedMemo(
            lambda items: labels_key(dict(items)), 50_000
        )

    # --- component ------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.rules.migrate()
        self._outbox[:0] = await self.firing.load_outbox()  # told before anything new
        await self.reload_rules()
        await self._restore_firing()
        await self._flush()
        await self.metrics.open()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="probe-collect")
        if self.config.enabled:
            self._tasks.spawn("tick", self._tick_loop())
            self._tasks.spawn("maintain", self._maintain_loop())
        log.info("probe started", interval_s=self.config.interval_s, db=str(self.metrics.path), rules=len(self._rules))

    async def stop(self, drain_timeout_s: float) -> None:
        await self._tasks.close(drain_timeout_s)
        try:  # a tick stopped between a transition and its announcement: told now (and saved, if not yet)
            async with asyncio.timeout(min(drain_timeout_s, 5.0)):
                await self.firing.save(self._alerts, self._outbox)
                await self._flush()
        except Exception as e:  # (incl. the timeout) what is left is in the outbox table, sent at the next start
            log.warning("alert announcements left for the next start", pending=len(self._outbox), error=repr(e))
        await self.webhooks.close(min(drain_timeout_s, 5.0))
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        await self.metrics.close()

    # --- ticking --------------------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        interval = self.config.interval_s
        while True:
            now = self.clock.now()
            await asyncio.sleep(math.floor(now / interval) * interval + interval - now)
            started = time.monotonic()
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.stats.errors += 1
                log.error("probe tick failed", error=repr(e), exc_info=e)
            elapsed = time.monotonic() - started
            self.stats.last_tick_ms = elapsed * 1000
            if elapsed > interval:
                self.stats.skipped += int(elapsed // interval)
                log.warning("probe tick overran its interval", elapsed_s=round(elapsed, 3), interval_s=interval)

    def _collect(self, mono: float, instances: list[InstanceInfo]) -> tuple[list[Point], float]:
        t0 = time.thread_time()
        points = self.host.collect(mono) + self.services.collect(instances, mono)
        return points, time.thread_time() - t0

    async def tick(self) -> int:
        """One collection: read, store, remember, evaluate. Returns the number of points stored."""
        loop_t0 = time.thread_time()
        mono, now = self.clock.monotonic(), self.clock.now()
        inventory = self._inventory()
        instances = list(inventory.instances()) if inventory is not None else []
        service_points = service_state_points(inventory.service_states()) if inventory is not None else []
        gate_points: list[Point] = []
        source = self._gate_source()
        samples = list(source.samples()) if source is not None else []
        for extra in self._sources():  # other components' readings (certd's certificate expiry)
            samples += extra.samples()
        if samples:
            gate_points = self.gate.convert(samples, mono)
            self._gate_counters = [
                Reading(s.name, dict(s.labels), s.value, "counter") for s in samples if s.kind == "counter"
            ]
        loop_cpu = time.thread_time() - loop_t0
        assert self._executor is not None
        points, collect_cpu = await asyncio.get_running_loop().run_in_executor(
            self._executor, self._collect, mono, instances
        )
        loop_t0 = time.thread_time()
        points += service_points + gate_points
        keyed = [(name, self._key(labels), labels, value) for name, labels, value in points]
        self.latest = {(name, key): (labels, value) for name, key, labels, value in keyed}
        self._tick_no += 1
        self._note_cadence()
        self._outbox += [Pending(t) for t in self._evaluate(now)]
        loop_cpu += time.thread_time() - loop_t0
        # The states and their announcements in one transaction, then told before the (longer) metrics
        # write: a crash after the save re-sends them at the next start, one after it may send twice.
        await self.firing.save(self._alerts, self._outbox)
        await self._flush()
        written = await self.metrics.write(round(now), [(n, k, v) for n, k, _, v in keyed])
        self.stats.ticks += 1
        self.stats.points += written
        self.stats.collect_cpu_s += collect_cpu
        self.stats.loop_cpu_s += loop_cpu
        async with self._tick_done:
            self._tick_done.notify_all()
        return written

    def _key(self, labels: Mapping[str, str]) -> str:
        """`labels_key`, memoised: the same label sets come back every tick."""
        return self._keys(tuple(labels.items()))

    async def wait_ticks(self, n: int, timeout_s: float) -> None:
        """Wait until `n` more ticks have completed (for tests and benchmarks)."""
        target = self.stats.ticks + n
        async with self._tick_done:
            await asyncio.wait_for(self._tick_done.wait_for(lambda: self.stats.ticks >= target), timeout_s)

    async def _maintain_loop(self) -> None:
        last_retention = -1e18
        while True:
            await asyncio.sleep(5.0)
            try:
                now = self.clock.now()
                for _ in range(20):  # catch up after downtime a bounded span at a time
                    done = await self.metrics.rollup(now)
                    if not any(done.values()):
                        break
                    await asyncio.sleep(0)
                if time.monotonic() - last_retention >= 60.0:
                    deleted = await self.metrics.apply_retention(now)
                    last_retention = time.monotonic()
                    if any(deleted.values()):
                        log.info("applied metrics retention", **{f"deleted_{k}": v for k, v in deleted.items()})
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.error("metrics maintenance failed", error=repr(e), exc_info=e)

    # --- alerts ---------------------------------------------------------------------------------

    async def reload_rules(self, changed: int | None = None) -> None:
        """Read the enabled rules again. The states of a rule that is gone (removed, disabled) or
        `changed` are forgotten — a firing one resolved first, so a receiver told "triggered" is always
        told "resolved" too. The swap and the forgetting happen with no await between them: a tick never
        evaluates a new rule against an old rule's states."""
        rows = await self.rules.list()
        old = {r.id: r for r in self._rules}
        self._rules = [to_rule(r) for r in rows if r["enabled"]]
        ids = {r.id for r in self._rules}
        now = self.clock.now()
        resolved = []
        for (rid, key), (state, labels) in list(self._alerts.items()):
            if rid in ids and rid != changed:
                continue
            del self._alerts[(rid, key)]
            if state.status == "firing" and rid in old:
                resolved.append(
                    self._transition(
                        old[rid], "resolved", labels, None, now, "rule changed" if rid == changed else "rule removed"
                    )
                )
        self._outbox += [Pending(t) for t in resolved]
        await self.firing.save(self._alerts, self._outbox)
        await self._flush()

    async def _restore_firing(self) -> None:
        """The alerts that were firing when the probe stopped fire on (no second "triggered"; their
        "resolved" comes when their data clears or goes away); those of rules gone meanwhile are dropped."""
        ids = {r.id for r in self._rules}
        restored = await self.firing.load()
        now = self.clock.now()
        for key, (state, labels) in restored.items():
            if key[0] in ids:
                # Seen "now": the stored last_seen is when it started firing (not kept current), and a
                # series missing from the first ticks after a start (rates, CPU %, connection counts need
                # two readings) is not gone — "no data" counts from the start, over the series' own gap.
                self._alerts[key] = (replace(state, last_seen=max(state.last_seen, now)), labels)
        await self.firing.save(self._alerts)
        if restored:
            log.info(
                "restored firing alerts",
                firing=sum(1 for k in restored if k[0] in ids),
                dropped=sum(1 for k in restored if k[0] not in ids),
            )

    async def _flush(self) -> None:
        """Announce the queued transitions in order (one flusher at a time: a later caller finds them
        sent, or waits and sends what was queued after), each only once saved (one queued but not saved
        yet waits for the save in progress, which flushes after it) and deleted from the outbox table
        once published."""
        async with self._announcing:
            while self._outbox and self._outbox[0].row is not None:
                head = self._outbox[0]
                await self._announce(dict(head.payload))
                self._outbox.pop(0)
                await self.firing.sent(head)

    def _note_cadence(self) -> None:
        """Remember how often each series reports, in ticks (so a late or hand-driven tick is not
        mistaken for a sporadic series): the largest of its last few gaps that is not an outlier (more
        than `_CADENCE_OUTLIER` times their median), so a series that reports every tick again after an
        outage is held for "no data" by its usual gap, not the outage's."""
        cadence, tick = self._cadence, self._tick_no
        for series in self.latest:
            prev = cadence.get(series)
            if prev is None:
                cadence[series] = (tick, (), 0.0)
                continue
            gaps = (*prev[1], float(min(tick - prev[0], _CADENCE_CAP_TICKS)))[-_CADENCE_GAPS:]
            cadence[series] = (tick, gaps, _usual_gap(gaps))
        if len(cadence) > 2 * len(self.latest) + 1000:  # bounded: series gone for long are dropped
            self._cadence = {k: v for k, v in cadence.items() if tick - v[0] < _CADENCE_FORGET_TICKS}

    def _evaluate(self, now: float) -> list[dict[str, Any]]:
        transitions: list[dict[str, Any]] = []
        interval, floor = self.config.interval_s, self.config.alert_stale_s or 0.0
        for rule in self._rules:
            seen: set[str] = set()
            for (name, key), (labels, value) in self.latest.items():
                if not rule.matches(name, labels):
                    continue
                seen.add(key)
                prev = self._alerts.get((rule.id, key))
                state, tr = evaluate(rule, prev[0] if prev else None, value, now)
                self._alerts[(rule.id, key)] = (state, labels)
                if tr:
                    transitions.append(
                        self._transition(rule, tr, labels, value, now, "threshold" if tr == "triggered" else "cleared")
                    )
            for (rid, key), (prev_state, labels) in list(self._alerts.items()):
                if rid != rule.id or key in seen:
                    continue
                # The series sent nothing this evaluation (its service stopped, its route went away, or
                # it reports less often than the probe ticks): "no data" waits for twice its own gap too.
                # A series seen once has no known gap yet: the probe's own slowest cadence stands in.
                gap_ticks = self._cadence.get((rule.metric, key), (0, (), 0.0))[2]
                gap = gap_ticks * interval if gap_ticks else self.config.connections_every_s
                state, tr = evaluate(rule, prev_state, None, now, stale_s=no_data_after(rule, interval, floor, gap))
                if state.status == "ok":
                    del self._alerts[(rid, key)]
                else:
                    self._alerts[(rid, key)] = (state, labels)
                if tr:
                    transitions.append(self._transition(rule, tr, labels, None, now, "no data"))
        return transitions

    def _transition(
        self, rule: AlertRule, tr: str, labels: Mapping[str, str], value: float | None, now: float, reason: str
    ) -> dict[str, Any]:
        return {
            "event": f"alert.{tr}",
            "rule_id": rule.id,
            "rule": rule.name,
            "metric": rule.metric,
            "labels": dict(labels),
            "op": rule.op,
            "threshold": rule.threshold,
            "for_s": rule.for_s,
            "value": value,
            "at": now,
            "reason": reason,
            "webhook": rule.webhook or self.config.webhook_url,
        }

    async def _announce(self, payload: dict[str, Any]) -> None:
        url = payload.pop("webhook")
        etype = payload["event"]
        self.history.append(payload)
        del self.history[:-_HISTORY]
        log.info(
            "alert " + etype.split(".")[1],
            rule=payload["rule"],
            labels=payload["labels"],
            value=payload["value"],
            reason=payload["reason"],
        )
        await self.bus.publish(AlertTransition.of(etype, {k: v for k, v in payload.items() if k != "event"}))
        if url:
            self.webhooks.send(url, payload)

    def alerts(self) -> dict[str, Any]:
        """Pending and firing alerts now, and the recent transitions (newest last)."""
        names = {r.id: r for r in self._rules}
        active = [
            {
                "rule_id": rid,
                "rule": names[rid].name if rid in names else None,
                "metric": names[rid].metric if rid in names else None,
                "labels": dict(labels),
                "status": st.status,
                "since": st.since,
                "value": st.value,
            }
            for (rid, _), (st, labels) in sorted(self._alerts.items(), key=lambda kv: (kv[0][0], kv[0][1]))
            if st.status != "ok"
        ]
        return {"active": active, "recent": list(self.history)}

    async def add_rule(self, body: AlertRuleBody) -> dict[str, Any]:
        rule = await self.rules.add(body)
        await self.reload_rules()
        return rule

    async def replace_rule(self, ref: str, body: AlertRuleBody) -> tuple[dict[str, Any], dict[str, Any]]:
        before, after = await self.rules.replace(ref, body)
        await self.reload_rules(changed=before["id"])  # a new rule starts from new states
        return before, after

    async def remove_rule(self, ref: str) -> dict[str, Any]:
        before = await self.rules.remove(ref)
        await self.reload_rules()
        return before

    # --- queries --------------------------------------------------------------------------------

    @staticmethod
    def resolve_name(name: str) -> str:
        return ALIASES.get(name, name)

    async def query(
        self, name: str, labels: Mapping[str, str], from_t: float, to_t: float, step: int | None
    ) -> dict[str, Any]:
        if not name:
            raise BadRequest("name is required", hint=f"one of: {', '.join(self.metrics.names()[:20])} ...")
        return await self.metrics.query(
            self.resolve_name(name), labels, from_t, to_t, step or default_step(from_t, to_t), now=self.clock.now()
        )

    async def top(self, name: str, by: str, n: int, from_t: float, to_t: float) -> list[dict[str, Any]]:
        return await self.metrics.top(self.resolve_name(name), by, n, from_t, to_t, now=self.clock.now())

    async def service_metrics(self, service: str, from_t: float, to_t: float, step: int | None) -> dict[str, Any]:
        """Every per-service metric of one service's instances over the range (the seed's shape)."""
        step = step or default_step(from_t, to_t)
        out: dict[str, Any] = {"service": service, "from": None, "to": None, "step": step, "metrics": {}}
        for name in SERVICE_METRICS:
            q = await self.metrics.query(name, {"service": service}, from_t, to_t, step, now=self.clock.now())
            out.update({"from": q["from"], "to": q["to"], "step": q["step"], "resolution": q["resolution"]})
            if q["series"]:
                out["metrics"][name] = q["series"]
        return out

    def readings(self) -> list[Reading]:
        """The latest tick's values and the gate's counters, plus the probe's own figures."""
        out = [Reading(name, labels, value) for (name, _), (labels, value) in self.latest.items()]
        out += self._gate_counters
        s = self.stats
        out += [
            Reading("probe_ticks_total", {}, s.ticks, "counter", "collection ticks completed"),
            Reading("probe_points_total", {}, s.points, "counter", "points written to metrics.db"),
            Reading(
                "probe_collect_cpu_seconds_total",
                {},
                s.collect_cpu_s + s.loop_cpu_s,
                "counter",
                "CPU time spent collecting",
            ),
            Reading("probe_tick_duration_seconds", {}, s.last_tick_ms / 1000, "gauge", "last tick's wall time"),
        ]
        return out

    def exposition(self) -> str:
        return render(self.readings())

    def status(self) -> dict[str, Any]:
        s = self.stats
        return {
            "interval_s": self.config.interval_s,
            "ticks": s.ticks,
            "skipped": s.skipped,
            "errors": s.errors,
            "points": s.points,
            "series": len(self.latest),
            "last_tick_ms": round(s.last_tick_ms, 2),
            "collect_cpu_s": round(s.collect_cpu_s, 4),
            "loop_cpu_s": round(s.loop_cpu_s, 4),
            "io_skipped": self.services.io_skipped,
            "rules": len(self._rules),
            "webhooks": {
                "delivered": self.webhooks.delivered,
                "failed": self.webhooks.failed,
                "pending": self.webhooks.pending,
            },
        }
