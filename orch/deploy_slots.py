"""The instance-level moves of a deployment (`orch.deployer`): stage a new instance beside the old one, wait
for its health check, switch slots in one step (no `await` between retiring an old instance from its slot
and putting the new one in), drain and stop the old ones, put the serving release's config files back.
No deployment records here: `Deployer` keeps those and decides what to move."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from orch import planner, rollout
from orch.health import run_probe
from orch.instances import build_config, health_target, port_requests
from orch.live import Live
from orch.planner import Slot, SlotKey
from orch.runtime import Instance, RuntimeError_
from orch.spec import ServiceSpec

if TYPE_CHECKING:
    from orch.service import OrchService

log = structlog.get_logger("orch.deploy")

RETIRED_RECORD_BASE = 300  # an old instance draining after a switch: pidfile key 300 + slot


class DeployFailed(Exception):
    """A batch could not be brought up; the message is the reason (the health error, the spawn error)."""


@dataclass
class Staged:
    slot: int
    index: int
    instance: Instance
    ports: dict[str, int]


@dataclass
class Target:
    """What a deployment brings up: a spec version with its release's variables and template texts."""

    spec: ServiceSpec
    release: int
    vars: dict[str, str]
    templates: dict[int, str]


class SlotMoves:
    """Mixed into `Deployer`: needs `o` (the `OrchService`) and the serving releases' `vars`/`templates`."""

    o: OrchService
    vars: dict[str, dict[str, str]]
    templates: dict[str, dict[int, str]]

    async def _stage(self, name: str, slot: int, target: Target) -> Staged:
        cur = self.o.live.get((name, slot))
        cur_index = cur.instance.config.index if cur is not None and cur.instance is not None else None
        index = rollout.staged_index(slot, cur_index)
        ports = self.o.ports.allocate(port_requests(target.spec))
        config = build_config(target.spec, index, ports, target.release, target.vars, target.templates)
        try:
            instance = await self.o._spawn(target.spec, config)
            # Recorded before anything else, or stopped again (`_record` raises `RuntimeError_`: the batch fails).
            await self.o._record(name, rollout.staged_record_key(slot), instance, f"{name}-{slot} (new)")
        except BaseException:
            self.o.ports.release(ports)
            raise
        return Staged(slot, index, instance, ports)

    async def _unstage(self, name: str, st: Staged) -> None:
        assert self.o.runtime is not None
        with contextlib.suppress(Exception):
            await self.o.runtime.stop(st.instance)
        with contextlib.suppress(Exception):
            await self.o.runtime.remove(st.instance)
        self.o.ports.release(st.ports)
        self.o.pidfiles.remove(name, rollout.staged_record_key(st.slot))

    async def _healthy(self, spec: ServiceSpec, st: Staged, deadline: float) -> None:
        """Returns once the staged instance passes its health check; raises `DeployFailed` when it exits or
        the deadline passes first (with the last probe's answer)."""
        assert self.o.runtime is not None
        waiter = asyncio.ensure_future(self.o.runtime.wait(st.instance))
        try:
            hc = spec.healthcheck
            if hc is None:  # no check: it counts once it has stayed up a moment
                done, _ = await asyncio.wait({waiter}, timeout=min(1.0, max(0.0, deadline - time.monotonic())))
                if done:
                    raise DeployFailed(f"{spec.name}-{st.slot} (new) exited: {waiter.result().detail}")
                return
            target = health_target(spec, st.index, st.ports)
            assert target is not None  # None only without a healthcheck
            cfg = st.instance.config
            last = "no answer yet"
            ramp = 0.05
            while True:
                if waiter.done():
                    raise DeployFailed(
                        f"{spec.name}-{st.slot} (new) exited before it was healthy: "
                        f"{waiter.result().detail}; last health check: {last}"
                    )
                if time.monotonic() >= deadline:
                    raise DeployFailed(
                        f"{spec.name}-{st.slot} (new) not healthy within "
                        f"{spec.deploy.health_deadline:g}s: health check failed: {last}"
                    )
                result = await run_probe(
                    hc.kind,
                    target,
                    hc.timeout,
                    env=dict(cfg.env),
                    cwd=cfg.workdir,
                    exec_in=self.o.runtime.exec_in(st.instance),
                )
                if result.ok:
                    return
                last = result.detail
                await asyncio.sleep(min(ramp, hc.interval, max(0.0, deadline - time.monotonic())))
                ramp *= 2
        finally:
            waiter.cancel()

    def _retire(self, key: SlotKey) -> list[tuple[SlotKey, Live]]:
        """Take the old instance out of its slot (no await): its probes end, its exit no longer touches
        the slot, its record moves aside so a crash before it stops still finds (and stops) it."""
        live = self.o.live.pop(key, None)
        self.o.slots.pop(key, None)
        if live is None or live.instance is None:
            if live is not None and live.starting is not None:
                live.starting.cancel()
            return []
        if live.health_task is not None:
            live.health_task.cancel()
        self.o._retired.add(id(live.instance))
        try:
            self.o.pidfiles.write(
                key[0],
                RETIRED_RECORD_BASE + key[1],
                {**live.instance.record(), "instance_index": live.instance.config.index},
            )
        except OSError as e:  # (disk full) no await here: it stays found by its slot's record until it stops
            log.error("pidfile not moved aside", instance=f"{key[0]}-{key[1]}", error=e.strerror)
            live.holds_slot_record = True
        else:
            self.o.pidfiles.remove(*key)
        return [(key, live)]

    def _switch(
        self, name: str, staged: list[Staged], target: Target, retire: tuple[int, ...]
    ) -> list[tuple[SlotKey, Live]]:
        """Every staged instance into its slot and the old ones out, then one endpoint publication. No await."""
        retired: list[tuple[SlotKey, Live]] = []
        now = self.o.clock.monotonic()
        for st in staged:
            key = (name, st.slot)
            old_slot = self.o.slots.get(key) or Slot(*key)
            out = self._retire(key)
            retired += out
            keep_staged = any(live.holds_slot_record for _, live in out)
            self.o.live[key] = Live(
                instance=st.instance,
                ports=st.ports,
                started_wall=time.time(),
                health=deque(maxlen=self.o.settings.health_history),
            )
            self.o.slots[key] = planner.started(
                planner.reset(dataclasses.replace(old_slot, phase="absent"), now),
                target.release,
                now,
                has_healthcheck=False,
            )
            # The slot's record still names the draining old instance when it could not be moved aside: the
            # new one stays under its staged record until the old one has stopped (`_stop_retired`).
            if not keep_staged:
                self._record_in_slot(name, st.slot, st.instance, st.index)
            self.o._watch(key, target.spec, st.instance)
        for i in retire:
            retired += self._retire((name, i))
        self._adopt_row(name, target)
        self.o._publish_endpoints(name)
        self.o._transitioned()
        return retired

    def _record_in_slot(self, name: str, slot: int, instance: Instance, index: int) -> None:
        """Move a switched-in instance's record from its staged key to its slot's. No await."""
        try:
            self.o.pidfiles.write(name, slot, {**instance.record(), "instance_index": index})
        except OSError as e:  # no await here: it stays found by its staged record (adopted as a leftover)
            log.error("pidfile not moved to its slot", instance=f"{name}-{slot}", error=e.strerror)
        else:
            self.o.pidfiles.remove(name, rollout.staged_record_key(slot))

    def _adopt_row(self, name: str, target: Target) -> None:
        row = self.o.services.get(name)
        if row is not None:
            row.spec, row.version, row.updated_at = target.spec, target.release, time.time()
        self.vars[name], self.templates[name] = target.vars, target.templates

    async def _stop_retired(self, retired: list[tuple[SlotKey, Live]], drain_s: float) -> None:
        """Let in-flight requests finish (bounded), then stop the old instances; their waiters clean up."""
        assert self.o.runtime is not None
        if drain_s > 0:
            await asyncio.sleep(drain_s)
        await asyncio.gather(
            *(self.o.runtime.stop(live.instance) for _, live in retired if live.instance), return_exceptions=True
        )
        for key, live in retired:  # the old one is gone: its slot's record may name the new one now
            cur = self.o.live.get(key)
            if live.holds_slot_record and cur is not None and cur.instance is not None:
                self._record_in_slot(key[0], key[1], cur.instance, cur.instance.config.index)

    async def _restore_files(self, name: str) -> None:
        """After a failed batch: the serving release's config files again (the new ones overwrote them
        when the workdir is shared)."""
        row = self.o.services.get(name)
        if row is None or not row.spec.config_files or row.spec.runtime_name != "process":
            return
        for key, live in list(self.o.live.items()):
            if key[0] == name and live.instance is not None:
                config = build_config(
                    row.spec, key[1], live.ports, row.version, self.vars.get(name), self.templates.get(name)
                )
                with contextlib.suppress(RuntimeError_, OSError):
                    await self.o._write_files(row.spec, config)
                return
