"""`Deployer`: the asyncio shell that runs deployments for `OrchService` — releases recorded, new instances
staged beside the old ones, health-gated, switched into their slots in one step (the gate's upstreams
change at once), the old ones drained and stopped; rollback through the same path; deployments recorded
with their step log and announced as `deploy.progress` / `deploy.finished` events.

Planning is pure (`orch.rollout`, `orch.release`); this module only executes it. While a service has a
deployment running, the planner leaves its slots' versions and missing slots alone (`ServiceView.deploying`):
the deployer is the one moving them. No `await` lies between retiring an old instance from its slot and
putting the new one in (`_switch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import re
import shutil
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from core.errors import BadRequest, Conflict, NotFound
from orch import planner, rollout
from orch._files import ConfigFileRefused, read_inside
from orch.deployrepo import DeployRepo
from orch.docker import DockerRuntime
from orch.events import DeployFinished, DeployProgress
from orch.health import run_probe
from orch.instances import build_config, expand, health_target, port_requests, variables
from orch.live import Live
from orch.planner import Slot, SlotKey
from orch.release import build_release, release_vars, templates_of
from orch.runtime import Instance, RuntimeError_
from orch.spec import ServiceSpec, SpecError, SpecProblem, validate_mapping
from orch.units import render_unit

if TYPE_CHECKING:
    from orch.service import OrchService

log = structlog.get_logger("orch.deploy")

VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
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


class Deployer:
    def __init__(self, orch: OrchService, env_name: str) -> None:
        self.o = orch
        self.repo = DeployRepo(orch.repo.store)
        self.env_name = env_name
        self.active: dict[str, dict[str, Any]] = {}  # service -> its running deployment
        # Services between the check in start/rollback and `_launch` (which awaits the store on the way):
        # claimed with no await after the check, so two calls can never both start a deployment.
        self._claimed: set[str] = set()
        self.vars: dict[str, dict[str, str]] = {}  # service -> its serving release's variables
        self.templates: dict[str, dict[int, str]] = {}

    # --- start-up --------------------------------------------------------------------------------

    async def load(self) -> None:
        """The serving release's variables of every service (a restarted instance gets the same)."""
        for name, row in self.o.services.items():
            rel = await self.repo.release(name, row.version)
            self._serving(name, rel["doc"] if rel else None, row)

    def _serving(self, name: str, doc: dict[str, Any] | None, row: Any) -> None:
        if doc is None:
            self.vars[name] = release_vars(str(row.version), None, self.env_name)
            self.templates[name] = {}
        else:
            self.vars[name] = release_vars(doc.get("version") or str(row.version), doc.get("install_path"),
                                           self.env_name)
            self.templates[name] = templates_of(doc, row.spec)

    async def recover(self) -> None:
        """Deployments a killed platform left unfinished end `failed`; whatever their slots hold serves
        (adoption found it), and staged or draining instances — beyond the replica count — are stopped
        by the supervisor."""
        for d in await self.repo.unfinished():
            row = self.o.services.get(d["service"])
            serving = row.version if row else None
            self._step(d, "interrupted", "failed", f"the platform stopped during the deployment; release {serving} "
                       "is serving (staged instances are stopped)")
            d["status"] = rollout.advance(d["status"], "interrupt")
            d["error"] = "interrupted: the platform stopped during the deployment"
            d["finished_at"] = d["phases"]["finished"] = time.time()
            await self.repo.save_deployment(d)
            self.o._emit(DeployFinished(**self._event(d)))

    # --- public ---------------------------------------------------------------------------------

    async def deploy(self, name: str, *, version: str | None, artifact_id: str | None,
                     overrides: dict[str, Any] | None, actor: str | None) -> dict[str, Any]:
        row = self.o._row(name)
        if version is not None and not VERSION_RE.match(version):
            raise BadRequest(f"{version!r} is not a version label: letters, digits and . _ + -, up to 128, "
                             "starting with a letter or digit (it expands in paths as ${version})")
        base = row.spec.model_dump(mode="json", exclude_defaults=True)
        data = {**base, **(overrides or {})}
        if data.get("name") != name:
            raise BadRequest(f"overrides cannot rename the service ({data.get('name')!r})")
        spec = await self.o._parse(validate_mapping, data, f"deploy {name}")
        install_path = None
        if artifact_id is not None:
            if self.o.artifacts is None:
                raise BadRequest("artifact uploads are not available on this server",
                                 hint="deploy without artifact_id, or enable the artifact store")
            got = self.o.artifacts.install(artifact_id, name, version or "")
            install_path = str(await got if inspect.isawaitable(got) else got)
        return await self.start(spec, None, "deploy", actor, version=version, install_path=install_path,
                                artifact_id=artifact_id)

    async def start(self, spec: ServiceSpec, text: str | None, kind: str, actor: str | None, *,
                    version: str | None = None, install_path: str | None = None,
                    artifact_id: str | None = None, filename: str = "(deploy)") -> dict[str, Any]:
        """Record release N+1 of `spec` and run its deployment in the background."""
        name = spec.name
        with self._claim(name):
            return await self._start(spec, text, kind, actor, version=version, install_path=install_path,
                                     artifact_id=artifact_id, filename=filename)

    @contextlib.contextmanager
    def _claim(self, name: str) -> Iterator[None]:
        """One deployment per service: refused while another runs or is being set up."""
        if name in self.active:
            raise Conflict(f"service {name} is being deployed (deployment {self.active[name]['id']})",
                           hint=f"wait for it: fsctl deploy status {self.active[name]['id']}")
        if name in self._claimed:
            raise Conflict(f"service {name} is being deployed (a deployment is starting)",
                           hint="wait for it to finish, then try again")
        self._claimed.add(name)
        try:
            yield
        finally:
            self._claimed.discard(name)

    async def _start(self, spec: ServiceSpec, text: str | None, kind: str, actor: str | None, *,
                     version: str | None, install_path: str | None, artifact_id: str | None,
                     filename: str) -> dict[str, Any]:
        name = spec.name
        row = self.o._row(name)
        await self.o._admit(spec, text, filename)
        prev = await self.repo.release(name, row.version)
        label = version or (prev["label"] if prev else "") or ""
        if install_path is None and prev and artifact_id is None and version is None:
            install_path = prev["doc"].get("install_path")
        number = await self.o.repo.save_version(spec, text or spec.model_dump_json(), filename, actor,
                                                 current=False)
        label = label or str(number)
        rv = release_vars(label, install_path, self.env_name)
        templates = await self._read_templates(spec, rv, number)
        artifact = {"id": artifact_id, "install_path": install_path} if artifact_id else None
        doc = build_release(spec, number, rv, templates, artifact=artifact, previous_spec=row.spec,
                            previous_doc=prev["doc"] if prev else None)
        await self._extras(spec, number, rv, templates, doc)
        await self.repo.add_release(name, number, label, doc, actor)
        return await self._launch(Target(spec, number, rv, templates), kind, actor)

    async def rollback(self, name: str, to: int | None, actor: str | None) -> dict[str, Any]:
        self.o._row(name)
        with self._claim(name):
            return await self._rollback(name, to, actor)

    async def _rollback(self, name: str, to: int | None, actor: str | None) -> dict[str, Any]:
        row = self.o._row(name)
        releases = [r["release"] for r in await self.repo.releases(name)]
        if to is None:
            older = [r for r in releases if r < row.version]
            if not older:
                raise Conflict(f"service {name} has no release before {row.version} to roll back to")
            to = max(older)
        target = await self._target(name, to)
        return await self._launch(target, "rollback", actor)

    async def record(self, spec: ServiceSpec, number: int, actor: str | None) -> None:
        """The release of a spec applied directly (a new or stopped service): no instance to replace."""
        row = self.o.services.get(spec.name)
        prev = await self.repo.release(spec.name, row.version) if row is not None else None
        rv = release_vars(prev["label"] if prev else str(number), prev["doc"].get("install_path") if prev else None,
                          self.env_name)
        templates = await self._read_templates(spec, rv, number)
        doc = build_release(spec, number, rv, templates, previous_spec=row.spec if row else None,
                            previous_doc=prev["doc"] if prev else None)
        await self._extras(spec, number, rv, templates, doc)
        await self.repo.add_release(spec.name, number, rv["version"], doc, actor)
        self.vars[spec.name], self.templates[spec.name] = rv, templates

    async def _extras(self, spec: ServiceSpec, number: int, rv: dict[str, str], templates: dict[int, str],
                      doc: dict[str, Any]) -> None:
        """What only this host can say about a release: the image's digest when dockerd has the image,
        the systemd unit's text (rendered with the document's env: no secret in clear)."""
        if spec.image is not None and self.o.runtime is not None:
            docker = self.o.runtime.runtimes.get("docker")
            if isinstance(docker, DockerRuntime):
                with contextlib.suppress(Exception):
                    info = await asyncio.wait_for(docker.docker.images.inspect(spec.image), 5)
                    doc["image_digest"] = (info.get("RepoDigests") or [None])[0] or info.get("Id")
        if spec.runtime_name == "systemd":
            shown = spec.model_copy(update={"env": doc["env"]})
            config = build_config(shown, 1, {}, number, rv, templates)
            if config.argv and not config.argv[0].startswith("/"):
                found = shutil.which(config.argv[0])
                config = dataclasses.replace(config, argv=(found or f"/{config.argv[0]}", *config.argv[1:]))
            with contextlib.suppress(ValueError):
                doc["unit"] = render_unit(config)

    async def deployment(self, deployment_id: int) -> dict[str, Any]:
        for d in self.active.values():
            if d["id"] == deployment_id:
                return _public(d)
        d = await self.repo.deployment(deployment_id)
        if d is None:
            raise NotFound(f"no deployment {deployment_id}", hint="see GET /api/deployments")
        return _public(d)

    async def deployments(self, service: str | None) -> list[dict[str, Any]]:
        live = {d["id"]: d for d in self.active.values()}
        return [_public(live.get(d["id"], d)) for d in await self.repo.deployments(service)]

    # --- running a deployment -------------------------------------------------------------------

    async def _target(self, name: str, number: int, *, strict: bool = True) -> Target:
        rel = await self.repo.release(name, number)
        spec = await self.o.repo.spec_version(name, number)
        if spec is None or (strict and rel is None and await self.repo.releases(name)):
            # A spec version without its release was pruned (or failed before it was recorded).
            raise NotFound(f"service {name} has no release {number}", hint=f"see fsctl service releases {name}")
        doc = rel["doc"] if rel else {}
        rv = release_vars(doc.get("version") or str(number), doc.get("install_path"), self.env_name)
        return Target(spec, number, rv, templates_of(doc, spec))

    async def _read_templates(self, spec: ServiceSpec, rv: dict[str, str], number: int) -> dict[int, str]:
        out: dict[int, str] = {}
        v = variables(spec, 0, {}, rv)
        for i, f in enumerate(spec.config_files):
            if f.template is None:
                continue
            if not spec.workdir:
                raise SpecError([SpecProblem("deploy", None, f"config_files[{i}].template",
                                             "a template is read inside the workdir: set workdir")])
            try:
                out[i] = await asyncio.to_thread(read_inside, expand(spec.workdir, v), expand(f.template, v))
            except ConfigFileRefused as e:
                raise SpecError([SpecProblem("deploy", None, f"config_files[{i}].template", str(e))]) from None
        return out

    async def _launch(self, target: Target, kind: str, actor: str | None) -> dict[str, Any]:
        name = target.spec.name
        row = self.o._row(name)
        strategy = target.spec.deploy.strategy
        dep_id = await self.repo.add_deployment(name, target.release, row.version, kind, strategy, actor)
        d = await self.repo.deployment(dep_id)
        assert d is not None
        self.active[name] = d  # (still claimed by start/rollback: one deployment per service)
        self._step(d, "created", "ok", f"{kind} of release {target.release} (from {row.version}), {strategy}")
        self.o._tasks.spawn(f"deploy:{name}:{dep_id}", self._run(d, target))
        self.o._wake.set()
        return {"deployment_id": dep_id, "release_id": target.release, "status": "pending"}

    async def _run(self, d: dict[str, Any], target: Target) -> None:
        name = target.spec.name
        spec = target.spec
        from_release = d["from_release"]
        try:
            d["status"] = rollout.advance(d["status"], "start")
            d["phases"]["running"] = time.time()
            await self._save(d)
            old = sorted(s.index for s in self.o.slots.values() if s.service == name and s.active)
            batches = rollout.plan_batches(old, spec.replicas, spec.deploy.strategy, spec.deploy.max_surge,
                                           spec.deploy.max_unavailable)
            if spec.deploy.strategy == "recreate":
                self._step(d, "strategy", "info", "recreate: the old instances stop before the new ones start "
                           "(the service is down in between)")
            switched = False
            try:
                for n, batch in enumerate(batches, 1):
                    await self._batch(d, target, batch, n, len(batches))
                    switched = True
            except DeployFailed as e:
                d["error"] = str(e)
                self._step(d, "failed", "failed", str(e))
                if switched and spec.deploy.auto_rollback and from_release is not None:
                    self._step(d, "rollback", "info", f"rolling back to release {from_release}")
                    back = await self._target(name, from_release, strict=False)
                    mine = [s for s in self.o.slots.values() if s.service == name and s.active]
                    moved = {s.index for s in mine if s.version != from_release}  # the switched slots only
                    for batch in rollout.plan_batches(sorted(s.index for s in mine), back.spec.replicas,
                                                      back.spec.deploy.strategy, back.spec.deploy.max_surge,
                                                      back.spec.deploy.max_unavailable):
                        batch = rollout.Batch(tuple(i for i in batch.slots if i in moved or
                                                    (name, i) not in self.o.slots), batch.surge, batch.retire)
                        if batch.slots or batch.retire:
                            await self._batch(d, back, batch, 0, 0)
                    await self.o.repo.set_current(name, from_release)
                    d["status"] = rollout.advance(d["status"], "roll_back")
                else:
                    await self._restore_files(name)
                    d["status"] = rollout.advance(
                        d["status"], "roll_back" if spec.deploy.auto_rollback and not switched else "fail")
                    if not switched:
                        self._step(d, "kept", "ok", f"release {from_release} kept serving; it was never stopped")
            else:
                row = self.o.services.get(name)
                if row is not None and row.version != target.release:  # nothing to replace (0 replicas)
                    self._adopt_row(name, target)
                await self.o.repo.set_current(name, target.release)
                d["status"] = rollout.advance(d["status"], "succeed")
                self._step(d, "done", "ok", f"release {target.release} is serving")
                await self._prune(name, target.release, from_release)
        except asyncio.CancelledError:
            d["error"] = "interrupted: the platform stopped during the deployment"
            d["status"] = rollout.advance(d["status"], "interrupt") if d["status"] not in rollout.TERMINAL \
                else d["status"]
            raise
        except Exception as e:  # a bug or an I/O error: the deployment says so instead of staying "running"
            log.exception("deployment crashed", service=name, deployment=d["id"])
            d["error"] = f"{type(e).__name__}: {e}"
            self._step(d, "error", "failed", d["error"])
            if d["status"] not in rollout.TERMINAL:
                d["status"] = rollout.advance(d["status"], "fail")
        finally:
            d["finished_at"] = d["phases"]["finished"] = time.time()
            self.active.pop(name, None)
            with contextlib.suppress(Exception):
                await asyncio.shield(self._save(d))
            self.o._emit(DeployFinished(**self._event(d)))
            log.info("deployment finished", service=name, deployment=d["id"], status=d["status"], error=d.get("error"))
            self.o._wake.set()

    async def _batch(self, d: dict[str, Any], target: Target, batch: rollout.Batch, n: int, total: int) -> None:
        name = target.spec.name
        spec = target.spec
        what = f"batch {n}/{total}" if n else "rollback batch"
        retired: list[tuple[SlotKey, Live]] = []
        if not batch.surge:
            for i in batch.slots:
                retired += self._retire((name, i))
            if retired:
                self.o._publish_endpoints(name)
                self._step(d, "stop old", "ok", f"{what}: stopping {len(retired)} old instance(s) first")
                await self._stop_retired(retired, 0.0)
                retired = []
        staged: list[Staged] = []
        try:
            self._step(d, "start", "info", f"{what}: starting slot(s) {list(batch.slots)} of release {target.release}")
            for i in batch.slots:
                staged.append(await self._stage(name, i, target))
            deadline = time.monotonic() + spec.deploy.health_deadline
            await asyncio.gather(*(self._healthy(spec, st, deadline) for st in staged))
        except (DeployFailed, RuntimeError_, OSError) as e:
            for st in staged:
                await self._unstage(name, st)
            hint = "; a fixed port cannot run twice: give the service deploy: {strategy: recreate}" \
                if isinstance(e, OSError) and "already in use" in str(e) and batch.surge else ""
            raise DeployFailed(f"{e}{hint}") from None
        self._step(d, "healthy", "ok", f"{what}: {len(staged)} new instance(s) healthy")
        await self._save(d)
        retired = self._switch(name, staged, target, batch.retire)
        # Serving now: a restart after a crash from here on keeps the new release (no restart into the old).
        await self.o.repo.set_current(name, target.release)
        d["phases"].setdefault("switched", time.time())
        self._step(d, "switch", "ok", f"{what}: gate switched to release {target.release} "
                   f"({', '.join(f'{name}-{st.slot}' for st in staged) or 'no new instance'})")
        if retired:
            await self._stop_retired(retired, spec.deploy.drain)
            self._step(d, "drain", "ok", f"{what}: {len(retired)} old instance(s) drained and stopped")
        await self._save(d)

    async def _prune(self, name: str, current: int, previous: int | None) -> None:
        """Forget releases beyond `orch.release_keep`; the artifact store, when wired and able, removes
        their unpacked directories (`prune(service, keep_paths)`)."""
        rows = await self.repo.releases(name)
        gone = rollout.releases_to_prune([r["release"] for r in rows], current, previous,
                                         self.o.settings.release_keep)
        if not gone:
            return
        await self.repo.forget_releases(name, gone)
        log.info("releases pruned", service=name, releases=gone)
        prune = getattr(self.o.artifacts, "prune", None)
        if prune is not None:
            # the store keys release dirs by version label: every kept release's directory stays
            keep = {str(r["doc"].get("version") or "") for r in rows
                    if r["release"] not in gone and r["doc"].get("install_path")} - {""}
            try:
                got = prune(name, keep)
                if inspect.isawaitable(got):
                    await got
            except Exception as e:  # pruning is upkeep: a failure must not fail the deployment that ran
                log.warning("release dirs not pruned", service=name, error=repr(e))

    async def _stage(self, name: str, slot: int, target: Target) -> Staged:
        cur = self.o.live.get((name, slot))
        cur_index = cur.instance.config.index if cur is not None and cur.instance is not None else None
        index = rollout.staged_index(slot, cur_index)
        ports = self.o.ports.allocate(port_requests(target.spec))
        config = build_config(target.spec, index, ports, target.release, target.vars, target.templates)
        try:
            instance = await self.o._spawn(target.spec, config)
        except BaseException:
            self.o.ports.release(ports)
            raise
        self.o.pidfiles.write(name, rollout.staged_record_key(slot), {**instance.record(), "instance_index": index})
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
            cfg = st.instance.config
            last = "no answer yet"
            ramp = 0.05
            while True:
                if waiter.done():
                    raise DeployFailed(f"{spec.name}-{st.slot} (new) exited before it was healthy: "
                                       f"{waiter.result().detail}; last health check: {last}")
                if time.monotonic() >= deadline:
                    raise DeployFailed(f"{spec.name}-{st.slot} (new) not healthy within "
                                       f"{spec.deploy.health_deadline:g}s: health check failed: {last}")
                result = await run_probe(hc.kind, target, hc.timeout, env=dict(cfg.env), cwd=cfg.workdir,
                                         exec_in=self.o.runtime.exec_in(st.instance))
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
        self.o.pidfiles.write(key[0], RETIRED_RECORD_BASE + key[1],
                              {**live.instance.record(), "instance_index": live.instance.config.index})
        self.o.pidfiles.remove(*key)
        return [(key, live)]

    def _switch(self, name: str, staged: list[Staged], target: Target, retire: tuple[int, ...]) -> list[
            tuple[SlotKey, Live]]:
        """Every staged instance into its slot and the old ones out, then one endpoint publication. No await."""
        retired: list[tuple[SlotKey, Live]] = []
        now = self.o.clock.monotonic()
        for st in staged:
            key = (name, st.slot)
            old_slot = self.o.slots.get(key) or Slot(*key)
            retired += self._retire(key)
            self.o.live[key] = Live(instance=st.instance, ports=st.ports, started_wall=time.time(),
                                    health=deque(maxlen=self.o.settings.health_history))
            self.o.slots[key] = planner.started(planner.reset(dataclasses.replace(old_slot, phase="absent"), now),
                                                target.release, now, has_healthcheck=False)
            self.o.pidfiles.write(name, st.slot, {**st.instance.record(), "instance_index": st.index})
            self.o.pidfiles.remove(name, rollout.staged_record_key(st.slot))
            self.o._watch(key, target.spec, st.instance)
        for i in retire:
            retired += self._retire((name, i))
        self._adopt_row(name, target)
        self.o._publish_endpoints(name)
        self.o._transitioned()
        return retired

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
        await asyncio.gather(*(self.o.runtime.stop(live.instance) for _, live in retired if live.instance),
                             return_exceptions=True)

    async def _restore_files(self, name: str) -> None:
        """After a failed batch: the serving release's config files again (the new ones overwrote them
        when the workdir is shared)."""
        row = self.o.services.get(name)
        if row is None or not row.spec.config_files or row.spec.runtime_name != "process":
            return
        for key, live in list(self.o.live.items()):
            if key[0] == name and live.instance is not None:
                config = build_config(row.spec, key[1], live.ports, row.version, self.vars.get(name),
                                      self.templates.get(name))
                with contextlib.suppress(RuntimeError_, OSError):
                    await self.o._write_files(row.spec, config)
                return

    # --- records ----------------------------------------------------------------------------------

    def _step(self, d: dict[str, Any], step: str, outcome: str, detail: str) -> None:
        d["log"].append({"at": time.time(), "step": step, "outcome": outcome, "detail": detail})
        self.o._emit(DeployProgress(**self._event(d), step=step, outcome=outcome, detail=detail))
        log.info("deployment step", service=d["service"], deployment=d["id"], step=step, outcome=outcome,
                 detail=detail)

    async def _save(self, d: dict[str, Any]) -> None:
        await self.repo.save_deployment(d)

    @staticmethod
    def _event(d: dict[str, Any]) -> dict[str, Any]:
        return {"deployment_id": d["id"], "service": d["service"], "release": d["release"], "status": d["status"],
                "error": d.get("error")}


def _public(d: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "service", "release", "from_release", "kind", "strategy", "status", "actor", "created_at",
            "finished_at", "phases", "log", "error")
    return {k: d.get(k) for k in keys}


def releases_dir(data_dir: Path) -> Path:
    return data_dir / "releases"
