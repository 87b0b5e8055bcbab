"""The instance side of `OrchService` (`orch.service`): executing the planner's start and stop actions
through the runtime, watching each instance's exit and health, turning an exit into the slot's next state,
and adopting at start-up the instances that outlived the last run. Mixed into `OrchService`, whose state
(`slots`, `live`, `services`, the runtime) these methods read and write on its one loop."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from orch import planner
from orch._files import ConfigFileRefused, write_config_files
from orch.cgroups import CgroupHandle
from orch.deploy_slots import RETIRED_RECORD_BASE
from orch.docker import DockerRuntime
from orch.events import InstanceAdopted, InstanceExited, InstanceHealth
from orch.health import run_probe
from orch.instances import build_config, health_target, port_requests
from orch.live import Live
from orch.planner import Slot, SlotKey, StartInstance
from orch.runtime import ExitStatus, Instance, InstanceConfig, RuntimeError_
from orch.spec import ServiceSpec

if TYPE_CHECKING:
    from core.bus import DomainEvent
    from core.clock import Clock
    from core.tasks import TaskSet
    from orch.config import OrchSettings
    from orch.deployer import Deployer
    from orch.instances import PortAllocator
    from orch.pidfiles import PidFiles
    from orch.planner import BackoffPolicy, ServiceView
    from orch.repo import OrchRepo, ServiceRow
    from orch.runtimes import RuntimeSet


log = structlog.get_logger("orch")  # the same logger as orch.service: event names stay where they were


class Supervision:
    """Mixed into `OrchService`; see `orch.service` for the state and the concurrency rules."""

    if TYPE_CHECKING:  # what `OrchService` provides
        settings: OrchSettings
        data_dir: Path
        repo: OrchRepo
        runtime: RuntimeSet | None
        clock: Clock
        bo: BackoffPolicy
        services: dict[str, ServiceRow]
        slots: dict[SlotKey, Slot]
        live: dict[SlotKey, Live]
        ports: PortAllocator
        pidfiles: PidFiles
        deployer: Deployer
        _tasks: TaskSet
        _retired: set[int]
        _deleting: set[str]
        _shutting_down: bool

        def _view(self, row: ServiceRow) -> ServiceView: ...
        def _emit(self, event: DomainEvent) -> None: ...
        def _publish_endpoints(self, name: str) -> None: ...
        def _transitioned(self) -> None: ...

    # --- internals: executing actions ------------------------------------------------------------

    async def _start_instance(self, action: StartInstance) -> None:
        key = (action.service, action.index)
        live = self.live[key]
        row = self.services.get(action.service)
        assert self.runtime is not None
        if row is None:
            self._on_exit(key, ExitStatus(note="service removed"), failed=False)
            return
        try:
            # A held replica restarts on the release it ran (`planner`: `hold_versions`), under that
            # release's spec, variables and templates; any other start is on the serving release.
            own = await self.deployer.release_of(action.service, action.version)
            spec = own.spec
            live.ports = self.ports.allocate(port_requests(spec), live.ports)
            config = build_config(spec, action.index, live.ports, own.release, own.vars, own.templates)
            instance = await self._spawn(spec, config)
            await self._record(key[0], key[1], instance, f"{key[0]}-{key[1]}")
        except (RuntimeError_, OSError) as e:
            self.ports.release(live.ports)
            log.warning("cannot start instance", service=action.service, index=action.index, error=str(e))
            self._on_exit(key, ExitStatus(note=f"cannot start: {e}"), failed=True)
            return
        finally:
            live.starting = None
        live.instance = instance
        live.started_wall = time.time()
        slot = self.slots.get(key, Slot(*key))
        new = planner.started(slot, own.release, self.clock.monotonic(), has_healthcheck=spec.healthcheck is not None)
        if slot.phase == "stopping":  # a stop was planned while it was starting: it still goes
            new = dataclasses.replace(new, phase="stopping", stop_intent=slot.stop_intent, reason=slot.reason)
        self.slots[key] = new
        self._watch(key, spec, instance)
        self._transitioned()

    async def _spawn(self, spec: ServiceSpec, config: InstanceConfig) -> Instance:
        """Create and start an instance; a native process's config files are written first, here (atomic,
        with owner, refused in system directories)."""
        assert self.runtime is not None
        if config.runtime == "process" and config.config_files:
            await self._write_files(spec, config)
            config = dataclasses.replace(config, config_files=())
        instance = await self.runtime.create(config)
        try:
            await self.runtime.start(instance)
        except BaseException:
            await self.runtime.remove(instance)
            raise
        return instance

    async def _record(self, service: str, record_key: int, instance: Instance, what: str) -> None:
        """Write the instance's pidfile (what lets the next start adopt it). When it cannot be written (disk
        full, a read-only file system) the instance is stopped and removed again: a child no record points
        to would run untracked after a restart. Raises `RuntimeError_` saying so."""
        rec = instance.record()
        try:
            self.pidfiles.write(service, record_key, {**rec, "instance_index": instance.config.index})
        except OSError as e:
            assert self.runtime is not None
            with contextlib.suppress(Exception):
                await self.runtime.stop(instance)
            with contextlib.suppress(Exception):
                await self.runtime.remove(instance)
            self.pidfiles.remove(service, record_key)  # (no-op unless a stale one is there)
            who = f"pid {rec['pid']}" if rec.get("pid") else rec.get("container_id") or rec.get("unit") or "?"
            path = self.pidfiles.path(service, record_key)
            log.error("pidfile not written; instance stopped", instance=what, path=str(path), error=e.strerror)
            raise RuntimeError_(
                f"{what} was started ({who}) but its pidfile {path} could not be written ({e.strerror}); it "
                f"was stopped again, since the platform could not find it after a restart: free space in "
                f"{self.pidfiles.run_dir} or make it writable"
            ) from e

    async def _write_files(self, spec: ServiceSpec, config: InstanceConfig) -> None:
        try:
            await asyncio.to_thread(
                write_config_files,
                config,
                owners=[f.owner for f in spec.config_files],
                allow_system=spec.allow_system_paths,
                data_dir=str(self.data_dir),
            )
        except ConfigFileRefused as e:
            raise RuntimeError_(f"{config.instance}: {e}") from e

    def _watch(self, key: SlotKey, spec: ServiceSpec, instance: Instance) -> None:
        live = self.live[key]
        if spec.healthcheck is not None:
            live.health_task = self._tasks.spawn(f"health:{key[0]}-{key[1]}", self._health_loop(key, spec, instance))
        self._tasks.spawn(f"wait:{key[0]}-{key[1]}", self._wait_instance(key, instance))

    async def _wait_instance(self, key: SlotKey, instance: Instance) -> None:
        assert self.runtime is not None
        status = await self.runtime.wait(instance)
        if id(instance) in self._retired:  # an old release's instance, out of its slot: only clean up
            self._retired.discard(id(instance))
            await self.runtime.remove(instance)
            self.ports.release(instance.config.ports)
            self.pidfiles.remove(key[0], RETIRED_RECORD_BASE + key[1])
            return
        live = self.live.get(key)
        if live is not None and live.health_task is not None:
            live.health_task.cancel()
        await self.runtime.remove(instance)
        if live is not None and live.instance is instance:
            live.instance = None
        self._on_exit(key, status, failed=status.failed)

    async def _stop_instance(self, key: SlotKey) -> None:
        live = self.live.get(key)
        if live is None:
            return
        if live.starting is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(live.starting)
        if live.instance is not None and self.runtime is not None:
            if live.ports and self.settings.drain_before_stop_s > 0:
                # Its endpoints were withdrawn when the slot left `running`: let requests in flight finish.
                await asyncio.sleep(self.settings.drain_before_stop_s)
            await self.runtime.stop(live.instance)

    def _on_exit(self, key: SlotKey, status: ExitStatus, *, failed: bool) -> None:
        """The one place an instance's end is turned into the slot's next state (no await in here)."""
        slot = self.slots.get(key, Slot(*key))
        row = self.services.get(key[0])
        view = self._view(row) if row is not None and key[0] not in self._deleting and not self._shutting_down else None
        if view is not None and key[1] > view.replicas:
            view = None
        if view is not None and view.desired == "stopped":
            view = None
        new = planner.exited(slot, view, failed=failed, detail=status.detail, now=self.clock.monotonic(), bo=self.bo)
        self.slots[key] = new
        live = self.live.get(key)
        exit_info = {**status.to_dict(), "at": time.time(), "instance": f"{key[0]}-{key[1]}"}
        if live is not None:
            self.ports.release(live.ports)
            live.last_exit = exit_info
            live.started_wall = None
        self.pidfiles.remove(*key)
        if row is not None:
            row.restarts += new.restarts - slot.restarts
            row.last_exit = exit_info
            self._tasks.spawn("record-exit", self.repo.record_exit(row.name, row.restarts, exit_info))
        self._emit(
            InstanceExited(
                service=key[0],
                instance=f"{key[0]}-{key[1]}",
                exit=status.to_dict(),
                expected=not failed,
                state=new.state,
                restarts=new.restarts,
                reason=new.reason,
                restart_in_s=round(new.next_start_at - self.clock.monotonic(), 2)
                if new.state in ("backoff", "crashloop")
                else None,
            )
        )
        log.info(
            "instance ended",
            service=key[0],
            instance=f"{key[0]}-{key[1]}",
            status=status.detail,
            state=new.state,
            restarts=new.restarts,
        )
        self._publish_endpoints(key[0])
        self._transitioned()

    async def _health_loop(self, key: SlotKey, spec: ServiceSpec, instance: Instance) -> None:
        hc = spec.healthcheck
        assert hc is not None
        live = self.live[key]
        target = health_target(spec, key[1], live.ports)
        assert target is not None
        cfg = getattr(instance, "config", None)
        env = dict(cfg.env) if cfg is not None else {}
        # Until the first success, probe early and back off (0.05 s, 0.1 s, ... up to interval): a success
        # counts at once, a failure only once per interval, so a slow starter still gets retries * interval.
        ramp = 0.05
        counted_at = self.clock.monotonic()
        while True:
            slot = self.slots.get(key)
            if slot is None or slot.phase != "running":
                return
            if slot.healthy:
                ramp = hc.interval
            await asyncio.sleep(min(hc.interval, ramp))
            ramp *= 2
            result = await run_probe(
                hc.kind,
                target,
                hc.timeout,
                env=env,
                cwd=cfg.workdir if cfg else None,
                exec_in=self.runtime.exec_in(instance) if self.runtime else None,
            )
            live.health.append(result)
            slot = self.slots.get(key)
            if slot is None or slot.phase != "running" or live.instance is not instance:
                return
            row = self.services.get(key[0])
            if row is None:
                return
            now = self.clock.monotonic()
            if not result.ok and not slot.healthy and now - counted_at < hc.interval * 0.999:
                continue
            counted_at = now
            new = planner.health_checked(slot, result.ok, now, self._view(row), result.detail)
            self.slots[key] = new
            if new.healthy != slot.healthy:
                log.info(
                    "instance health changed",
                    service=key[0],
                    instance=f"{key[0]}-{key[1]}",
                    healthy=new.healthy,
                    detail=result.detail,
                )
                self._emit(
                    InstanceHealth(
                        service=key[0], instance=f"{key[0]}-{key[1]}", healthy=new.healthy, detail=result.detail
                    )
                )
                self._publish_endpoints(key[0])
            if new != slot:
                self._transitioned()

    async def _adopt(self) -> None:
        """Re-attach to instances that outlived the last run of the platform; forget the dead ones."""
        assert self.runtime is not None
        records = self.pidfiles.scan()
        docker = self.runtime.runtimes.get("docker")
        if isinstance(docker, DockerRuntime) and await docker.problem() is None:
            # Containers whose record was lost are found by their labels (this platform's owner label).
            # A container keeps the index it was created with; after a rolling deploy that may differ from its
            # slot (orch.rollout.staged_index), so a container already recorded is known by its id too.
            known = {(r["service"], r["index"]) for r in records}
            ids = {r.get("container_id") for r in records if r.get("container_id")}
            records += [
                r
                for r in await docker.discover()
                if (r["service"], r["index"]) not in known and r.get("container_id") not in ids
            ]
        for rec in records:
            key = (rec["service"], rec["index"])
            row = self.services.get(key[0])
            spec = row.spec if row is not None else None
            ports = {str(k): int(v) for k, v in (rec.get("ports") or {}).items()}
            if spec is None:
                spec = (
                    ServiceSpec(name=key[0], image="unknown")
                    if rec.get("runtime") == "docker"
                    else ServiceSpec(name=key[0], cmd=["unknown"], runtime=rec.get("runtime") or "process")
                )
            try:
                index = int(rec.get("instance_index") or key[1])
                version = int(rec.get("version", 0))
            except (TypeError, ValueError):  # a damaged record must not stop the platform from starting
                log.error("instance record unreadable, not adopted", service=key[0], index=key[1])
                continue
            rv, templates = self.deployer.vars.get(key[0]), self.deployer.templates.get(key[0])
            if row is not None and version != row.version:
                # A replica on another release (held after a failed rollout, or mid-rollout): its probes,
                # stop and restart follow the release it was started from, as recorded in its pidfile.
                own = await self.deployer.release_of(key[0], version)
                spec, rv, templates = own.spec, own.vars, own.templates
            config = build_config(spec, index, ports, version, rv, templates)
            try:
                instance = await self.runtime.adopt(config, rec)
            except RuntimeError_ as e:  # e.g. dockerd down: its record stays for the next start
                log.error("cannot adopt instance from the last run", service=key[0], index=key[1], error=str(e))
                continue
            if instance is None:
                log.info("instance from the last run is gone", service=key[0], index=key[1], pid=rec.get("pid"))
                cg = CgroupHandle.from_record(rec.get("cgroup"))
                if cg is not None:
                    cg.kill_all()  # whatever it left behind goes too
                    cg.remove()
                self.pidfiles.remove(*key)
                continue
            self.ports.reserve(ports)
            live = Live(
                instance=instance,
                ports=ports,
                started_wall=rec.get("started_at"),
                health=deque(maxlen=self.settings.health_history),
            )
            self.live[key] = live
            # Assumed healthy (it was serving); its probes say otherwise within `retries`.
            self.slots[key] = planner.started(
                Slot(*key), int(rec.get("version", 0)), self.clock.monotonic(), has_healthcheck=False
            )
            self._watch(key, spec, instance)
            self._emit(InstanceAdopted(service=key[0], instance=f"{key[0]}-{key[1]}", pid=rec.get("pid")))
