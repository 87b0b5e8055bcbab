"""`OrchService`: the asyncio shell around the planner — it owns the instances, runs the health probes,
executes the planner's actions through a `Runtime`, persists specs and pidfiles, publishes endpoints and
`service.*` events, and is the public object the console API and the wiring use. Changes to a running
service run as deployments (`orch.deployer`: releases, rolling switch, rollback). The instance side
(executing actions, exits, health probes, adoption at start) is `orch.supervise`, mixed in, as is what it
shows of services and instances (`orch.inventory`).

Concurrency: everything runs on one loop. `self.slots` is only ever replaced slot by slot with the result
of a pure transition, with no `await` between reading a slot and writing it back; the reconcile task is
woken (`_wake`) after every transition and is the only caller of `planner.plan`.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import json
import signal
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import structlog

from core.audit import AuditEntry, AuditLog
from core.bus import DomainEvent, EventBus
from core.clock import Clock, SystemClock
from core.errors import Conflict, NotFound
from core.ports import EndpointBoard, LogSink
from core.store import Store
from core.tasks import TaskSet
from core.workers import WorkerPool
from orch import history, planner
from orch.admission import admit
from orch.cgroups import CgroupDriver, detect
from orch.config import OrchSettings
from orch.deployer import Deployer
from orch.docker import DockerRuntime
from orch.endpoints import EndpointPublisher, endpoint_sets
from orch.events import (
    ServiceApplied,
    ServiceRemoved,
    ServiceRestartRequested,
    ServiceStatusChanged,
)
from orch.instances import PortAllocator
from orch.inventory import Inventory
from orch.live import Live
from orch.logfiles import FileLogSink
from orch.pidfiles import PidFiles
from orch.planner import ServiceView, Slot, SlotKey, StartInstance, StopInstance
from orch.repo import OrchRepo, ServiceRow
from orch.runtime import Runtime
from orch.runtimes import RuntimeSet, make_runtimes
from orch.spec import ServiceSpec, SpecError, SpecProblem, lines_of, parse_spec, validate_mapping
from orch.supervise import Supervision

T = TypeVar("T")

log = structlog.get_logger("orch")


class OrchService(Supervision, Inventory):
    """Services from specs, supervised. Implements `core.ports.ServiceInventory`."""

    name = "orch"

    def __init__(
        self,
        settings: OrchSettings,
        *,
        data_dir: Path,
        store: Store,
        bus: EventBus,
        endpoints: EndpointBoard,
        log_sink: LogSink | None = None,
        runtime: Runtime | None = None,
        cgroups: CgroupDriver | None = None,
        clock: Clock | None = None,
        parse_pool: WorkerPool | None = None,
    ) -> None:
        self.settings = settings
        # Where specs are parsed and validated (YAML and pydantic are CPU work: never on the loop). The
        # composition root passes its process pool; without one (tests, tools) parsing runs inline.
        self.parse_pool = parse_pool
        self.data_dir = data_dir
        self.run_dir = data_dir / "run" / "orch"
        self.repo = OrchRepo(store)
        self.bus = bus
        self.endpoints = endpoints
        self._own_sink = log_sink is None
        self.log_sink: LogSink = log_sink or FileLogSink(data_dir / "logs")
        self.cgroups = cgroups
        self._process_runtime = runtime
        self.runtime: RuntimeSet | None = None
        self.clock = clock or SystemClock()
        self.bo = settings.backoff()
        self.services: dict[str, ServiceRow] = {}
        self.slots: dict[SlotKey, Slot] = {}
        self.live: dict[SlotKey, Live] = {}
        self.statuses: dict[str, planner.ServiceStatus] = {}
        self.ports = PortAllocator()
        self._endpoints = EndpointPublisher(endpoints)
        self.pidfiles = PidFiles(self.run_dir)
        self._deleting: set[str] = set()
        self._retired: set[int] = set()  # ids of old instances a deployment took out of their slots
        self.deployer = Deployer(self, settings.environment)
        # The artifact store, wired by fsctl: `.install(artifact_id, service, version) -> Path` (${installPath}).
        self.artifacts: Any = None
        self._shutting_down = False
        self._wake = asyncio.Event()
        self._changed = asyncio.Condition()
        self._events: asyncio.Queue[DomainEvent | None] = asyncio.Queue()
        self._tasks = TaskSet("orch")
        self._loop_task: asyncio.Task[Any] | None = None
        self._publisher: asyncio.Task[Any] | None = None

    # --- component lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        await self.repo.migrate()
        self.services = {r.name: r for r in await self.repo.load()}
        if self.cgroups is None:
            self.cgroups = detect(self.settings.cgroups, self.settings.cgroup_group)
        if self.cgroups.warning:
            log.warning("resource limits are limited", cgroups=self.cgroups.kind, warning=self.cgroups.warning)
        else:
            log.info("resource limits by cgroups", cgroups=self.cgroups.kind)
        self.runtime = make_runtimes(
            self.settings,
            self.log_sink,
            self.cgroups,
            data_dir=self.data_dir,
            run_dir=self.run_dir,
            on_event=self._emit,
            process=self._process_runtime,
        )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._publisher = self._tasks.spawn("events", self._publish_events())
        await self.deployer.load()
        await self._adopt()
        await self.deployer.recover()
        self._loop_task = self._tasks.spawn("reconcile", self._reconcile_loop())

    async def stop(self, drain_timeout_s: float) -> None:
        self._shutting_down = True
        self._wake.set()
        try:
            await self._wait_for(
                lambda: not any(s.active for s in self.slots.values() if self._stops_on_exit(s.service)),
                drain_timeout_s,
            )
        except TimeoutError:
            log.error(
                "instances still running at shutdown; killing them",
                instances=[f"{k[0]}-{k[1]}" for k, s in self.slots.items() if s.active],
            )
            for key, live in self.live.items():
                if live.instance is not None and self.runtime is not None and self._stops_on_exit(key[0]):
                    await self.runtime.kill(live.instance, signal.SIGKILL)
        # The rest outlives the platform: nothing may plan a stop from here on, so the loop and probes end.
        if self._loop_task is not None:
            self._loop_task.cancel()
        for live in self.live.values():
            if live.health_task:
                live.health_task.cancel()
        left = sum(1 for s in self.slots.values() if s.active)
        if left:
            log.info("leaving instances running", count=left)
        # The deployments first: a rollout interrupted here records that it resumes at the next start, and
        # its last events go out before the publisher's end-of-stream.
        await self.deployer.close()
        self._events.put_nowait(None)
        if self._publisher is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._publisher), 5)
        await self._tasks.close()
        if self.runtime is not None:
            await self.runtime.close()
        if self.cgroups is not None and not any(s.active for s in self.slots.values()):
            self.cgroups.cleanup()
        if self._own_sink and isinstance(self.log_sink, FileLogSink):
            self.log_sink.close()

    # --- public API (console routes, CLI) ---------------------------------------------------------

    async def apply(
        self, source: str | dict[str, Any], filename: str = "spec.yaml", actor: str | None = None
    ) -> dict[str, Any]:
        """Validate and store a spec as the service's next version; the supervisor converges to it."""
        lines: dict[str, int] = {}
        if isinstance(source, dict):
            spec = await self._parse(validate_mapping, source, filename)
            text = json.dumps(source)
        else:
            parsed = await self._parse(parse_spec, source, filename)
            spec, lines, text = parsed.spec, parsed.lines, source

        def line(field: str) -> int | None:
            return lines.get(field)

        risky = await self._admit(spec, source if isinstance(source, str) else None, filename)
        if spec.name in self._deleting:
            raise Conflict(f"service {spec.name} is being removed", hint="wait for the removal to finish")
        views = {n: self._view(r) for n, r in self.services.items()}
        views[spec.name] = dataclasses.replace(self._view_of(spec, 0, "running"))
        try:
            planner.start_order(views)
        except ValueError as e:
            raise SpecError(
                [SpecProblem(filename, line("depends_on"), "depends_on", f"dependency cycle: {e}")]
            ) from None
        current = self.services.get(spec.name)
        if current is not None and current.spec == spec:
            return {**self.describe(spec.name), "changed": False}
        running = self.deployer.active.get(spec.name)
        if running is not None or spec.name in self.deployer._claimed:
            # Whatever phase its replicas are in (a recreate has stopped them all): a direct write here would
            # be overwritten by the deployment when it switches.
            which = f"deployment {running['id']}" if running is not None else "a deployment that is starting"
            raise Conflict(
                f"service {spec.name} cannot be applied now: a deployment is in progress ({which})",
                hint=(
                    f"wait for it (fsctl deploy status {running['id']}) or roll it back "
                    f"(fsctl service rollback {spec.name}) once it ends, then apply again"
                    if running is not None
                    else f"wait a moment for it to start, then see fsctl deploy status for service {spec.name}"
                ),
            )
        if (
            current is not None
            and current.desired == "running"
            and any(s.service == spec.name and s.phase == "running" for s in self.slots.values())
        ):
            # A running service changes by a deployment (rolling by default): its release N+1 serves once healthy.
            started = await self.deployer.start(spec, text, "apply", actor, filename=filename)  # audits `risky`
            return {
                **self.describe(spec.name),
                "version": started["release_id"],
                "changed": True,
                "deployment_id": started["deployment_id"],
            }
        version = await self.repo.save_version(spec, text, filename, actor)
        await self.deployer.record(spec, version, actor)
        await self._audit_risky(spec, risky, version, actor)
        now = time.time()
        self.services[spec.name] = ServiceRow(
            spec.name,
            version,
            current.desired if current else "running",
            spec,
            current.created_at if current else now,
            now,
            current.restarts if current else 0,
            current.last_exit if current else None,
        )
        now_m = self.clock.monotonic()
        for key, slot in list(self.slots.items()):
            if key[0] == spec.name and slot.phase == "absent":
                self.slots[key] = planner.reset(slot, now_m)  # a new version gets a fresh start, no back-off
        self._emit(ServiceApplied(spec.name, version, actor))
        log.info("service applied", service=spec.name, version=version)
        self._wake.set()
        return {**self.describe(spec.name), "changed": True}

    async def _admit(self, spec: ServiceSpec, source: str | None, filename: str) -> list[str]:
        """The host-dependent checks of a spec (`orch.admission`); raises SpecError with each fault's line."""
        assert self.runtime is not None
        faults, risky = await admit(
            spec, runtimes=self.runtime, default_user=self.settings.run_as_user, data_dir=self.data_dir
        )
        if faults:
            at: list[int | None] = [None] * len(faults)
            if source is not None:  # composing the YAML again is parsing work: in the pool too
                at = await self._parse(lines_of, source, [loc for loc, _, _ in faults])
            raise SpecError(
                [SpecProblem(filename, n, field, msg) for n, (_, field, msg) in zip(at, faults, strict=True)]
            )
        return risky

    async def _audit_risky(self, spec: ServiceSpec, risky: list[str], version: int, actor: str | None) -> None:
        """What `allow_host_mounts` / `allow_system_paths` let through, in the audit log (apply and deploy)."""
        if risky:
            log.warning("service mounts host paths (allow_host_mounts)", service=spec.name, mounts=risky, by=actor)
            await AuditLog(self.repo.store).record(
                AuditEntry(
                    actor or "system",
                    None,
                    "service.host_mounts.allowed",
                    spec.name,
                    "ok",
                    None,
                    None,
                    after={"version": version, "mounts": risky},
                )
            )

    # --- deploys (orch.deployer) ------------------------------------------------------------------

    async def deploy(
        self,
        name: str,
        *,
        version: str | None = None,
        artifact_id: str | None = None,
        overrides: dict[str, Any] | None = None,
        actor: str,
    ) -> dict[str, Any]:
        """Start a deployment of `name` (a new `version` label, an artifact's `${installPath}`, spec
        `overrides`); returns `{deployment_id, release_id, status: "pending"}` at once, runs in the background."""
        return await self.deployer.deploy(
            name, version=version, artifact_id=artifact_id, overrides=overrides, actor=actor
        )

    async def deploy_changes(self, deployment_id: int, overrides: dict[str, Any]) -> dict[str, Any]:
        """What a deploy's `overrides` changed, `{field: {"from", "to"}}` (secrets as release markers): audit."""
        return await self.deployer.changes(deployment_id, overrides)

    async def rollback(self, name: str, *, to: int | None = None, actor: str | None = None) -> dict[str, Any]:
        """Re-apply release `to` (default: the one before the serving release) through the same rolling path."""
        return await self.deployer.rollback(name, to, actor)

    async def deployment(self, deployment_id: int) -> dict[str, Any]:
        return await self.deployer.deployment(deployment_id)

    async def deployments(self, service: str | None = None) -> list[dict[str, Any]]:
        return await self.deployer.deployments(service)

    async def releases(self, name: str) -> list[dict[str, Any]]:
        """Every release of a service, newest first, each with what it changed against the one before."""
        row = self.services.get(name)
        return await history.releases(self.deployer.repo, name, row.version if row else None, self._parse)

    async def diff(self, name: str, from_: int | None = None, to: int | None = None) -> dict[str, Any]:
        """What changed from release `from_` to `to` (default: the one before the serving one, and it)."""
        row = self.services.get(name)
        return await history.diff(self.deployer.repo, name, row.version if row else None, from_, to, self._parse)

    async def _parse(self, fn: Callable[[Any, Any], T], source: Any, arg: Any) -> T:
        """`fn(source, arg)` in the parse pool (`PoolBusy` → 503 when it is full)."""
        if self.parse_pool is None:
            return fn(source, arg)
        return await self.parse_pool.run(fn, source, arg)

    async def versions(self, name: str) -> builtins.list[dict[str, Any]]:
        self._row(name)
        return await self.repo.versions(name)

    async def start_service(self, name: str) -> dict[str, Any]:
        row = self._row(name)
        now = self.clock.monotonic()
        for key, slot in list(self.slots.items()):
            if key[0] == name and slot.phase == "absent":
                self.slots[key] = planner.reset(slot, now)
        if row.desired != "running":
            row.desired = "running"
            await self.repo.set_desired(name, "running")
        # Plan now rather than on the loop's next turn, so the answer shows the start (`starting`), not
        # the state before it (`stopped`); the loop, woken, re-plans the same.
        self._reconcile_once()
        self._wake.set()
        return self.describe(name)

    async def stop_service(self, name: str, *, wait_s: float | None = None) -> dict[str, Any]:
        row = self._row(name)
        if row.desired != "stopped":
            row.desired = "stopped"
            await self.repo.set_desired(name, "stopped")
        self._wake.set()
        await self._wait_stopped(name, wait_s)
        return self.describe(name)

    async def restart_service(self, name: str) -> dict[str, Any]:
        row = self._row(name)
        now = self.clock.monotonic()
        for key, slot in list(self.slots.items()):
            if key[0] != name:
                continue
            slot = planner.reset(slot, now)
            if slot.phase == "running":
                slot = dataclasses.replace(slot, phase="stopping", stop_intent="restart", reason="restart requested")
                self._tasks.spawn(f"stop:{name}-{key[1]}", self._stop_instance(key))
            self.slots[key] = slot
        if row.desired != "running":
            row.desired = "running"
            await self.repo.set_desired(name, "running")
        self._emit(ServiceRestartRequested(name))
        self._wake.set()
        return self.describe(name)

    async def delete(self, name: str, *, volumes: bool = False) -> dict[str, Any]:
        """Stop every instance of the service, then forget it (its spec history stays). Its containers are
        removed; its named volumes only with `volumes`."""
        before = self.describe(name)
        self._deleting.add(name)
        try:
            self._wake.set()
            await self._wait_stopped(name, None)
            await self.repo.delete(name)
            self.services.pop(name, None)
            self.statuses.pop(name, None)
            for key in [k for k in self.slots if k[0] == name]:
                self.slots.pop(key, None)
                self.live.pop(key, None)
            self._publish_endpoints(name)
            docker = self.runtime.runtimes.get("docker") if self.runtime else None
            if volumes and isinstance(docker, DockerRuntime):
                before["volumes_removed"] = await docker.remove_volumes(name)
        finally:
            self._deleting.discard(name)
        self._emit(ServiceRemoved(name))
        return before

    # --- internals: views and waiting ----------------------------------------------------------

    def _row(self, name: str) -> ServiceRow:
        row = self.services.get(name)
        if row is None:
            raise NotFound(f"no service named {name!r}", hint="see `fsctl service ls`")
        return row

    @staticmethod
    def _view_of(spec: ServiceSpec, version: int, desired: str) -> ServiceView:
        hc = spec.healthcheck
        # `desired` is "running" or "stopped" (the state DB's CHECK constraint; callers pass a literal)
        return ServiceView(
            spec.name,
            version,
            desired,  # type: ignore[arg-type]
            spec.replicas,
            spec.restart,
            tuple(spec.depends_on),
            hc.retries if hc else None,
            hc.start_period if hc else 0.0,
        )

    def _stops_on_exit(self, service: str) -> bool:
        return self.settings.stop_services_on_exit

    def _view(self, row: ServiceRow) -> ServiceView:
        stopping = self._shutting_down and self._stops_on_exit(row.name)
        desired = "stopped" if stopping or row.name in self._deleting else row.desired
        return dataclasses.replace(
            self._view_of(row.spec, row.version, desired),
            deploying=row.name in self.deployer.active,
            hold_versions=row.name in self.deployer.held,
        )

    async def _wait_for(self, pred: Callable[[], bool], timeout_s: float | None) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(pred), timeout_s)

    async def _wait_stopped(self, name: str, wait_s: float | None) -> None:
        row = self._row(name)
        timeout = wait_s if wait_s is not None else row.spec.stop_timeout + self.settings.kill_grace_s + 10
        try:
            await self._wait_for(lambda: not any(s.active for k, s in self.slots.items() if k[0] == name), timeout)
        except TimeoutError:
            raise Conflict(
                f"service {name} did not stop within {timeout:g}s",
                hint="see `fsctl service status` for what is still running",
            ) from None

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _transitioned(self) -> None:
        self._wake.set()
        self._tasks.spawn("notify", self._notify())

    # --- internals: the reconcile loop ----------------------------------------------------------

    async def _reconcile_loop(self) -> None:
        while True:
            self._wake.clear()
            wake_at = self._reconcile_once()
            delay = None if wake_at is None else max(0.0, wake_at - self.clock.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def _reconcile_once(self) -> float | None:
        now = self.clock.monotonic()
        views = {n: self._view(r) for n, r in self.services.items()}
        p = planner.plan(views, self.slots, now, self.bo)
        self.slots = p.slots
        for action in p.actions:
            key = (action.service, action.index)
            if isinstance(action, StartInstance):
                live = self.live.setdefault(key, Live(health=deque(maxlen=self.settings.health_history)))
                live.starting = self._tasks.spawn(
                    f"start:{action.service}-{action.index}", self._start_instance(action)
                )
            elif isinstance(action, StopInstance):
                log.info(
                    "stopping instance",
                    service=action.service,
                    instance=f"{action.service}-{action.index}",
                    intent=action.intent,
                    reason=action.reason,
                )
                self._tasks.spawn(f"stop:{action.service}-{action.index}", self._stop_instance(key))
        for name, st in p.statuses.items():
            prev = self.statuses.get(name)
            if prev is None or (prev.status, prev.reason) != (st.status, st.reason):
                self.statuses[name] = st
                if prev is None or prev.status != st.status:
                    log.info(
                        "service status changed",
                        service=name,
                        status=st.status,
                        previous=prev and prev.status,
                        reason=st.reason,
                    )
                    self._emit(
                        ServiceStatusChanged(
                            service=name,
                            status=st.status,
                            previous=prev.status if prev else None,
                            reason=st.reason,
                            healthy=st.healthy,
                            replicas=st.replicas,
                        )
                    )
            else:
                self.statuses[name] = st
        for name in {*self.services, *self._endpoints.services()}:
            self._publish_endpoints(name)
        if p.actions:
            self._tasks.spawn("notify", self._notify())
        return p.wake_at

    # --- internals: endpoints, events, pidfiles ------------------------------------------------

    def _publish_endpoints(self, name: str) -> None:
        row = self.services.get(name)
        healthy = [
            (s.index, self.live[s.key].ports)
            for s in self.slots.values()
            if s.service == name and s.phase == "running" and s.healthy and s.key in self.live
        ]
        self._endpoints.publish(name, endpoint_sets(name, [p.name for p in row.spec.ports] if row else [], healthy))

    def _emit(self, event: DomainEvent) -> None:
        self._events.put_nowait(event)

    async def _publish_events(self) -> None:
        while True:
            item = await self._events.get()
            if item is None:
                return
            try:
                await self.bus.publish(item)
            except Exception as e:  # an event lost must not stop supervision
                log.error("cannot publish event", type=item.type, error=repr(e))
