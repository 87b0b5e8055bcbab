"""`Deployer`: the asyncio shell that runs deployments for `OrchService` — releases recorded, new instances
staged beside the old ones, health-gated, switched into their slots in one step (the gate's upstreams
change at once), the old ones drained and stopped; rollback through the same path; deployments recorded
with their step log and announced as `deploy.progress` / `deploy.finished` events.

Planning is pure (`orch.rollout`, `orch.release`); this module only executes it. While a service has a
deployment running, the planner leaves its slots' versions and missing slots alone (`ServiceView.deploying`):
the deployer is the one moving them (the instance-level moves are `orch.deploy_slots`, what a release is
made of `orch.deploy_releases`, recovery at start-up, holds and the moves back `orch.deploy_recovery`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Coroutine, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from core.errors import BadRequest, Conflict, NotFound
from orch import rollout
from orch.deploy_recovery import Recovery
from orch.deploy_releases import Releases
from orch.deploy_slots import DeployFailed, Staged, Target
from orch.deployrepo import DeployRepo
from orch.events import DeployFinished, DeployProgress
from orch.live import Live
from orch.planner import SlotKey
from orch.release import VERSION_RE, VERSION_RULE, build_release, override_changes, release_vars
from orch.runtime import RuntimeError_
from orch.spec import ServiceSpec, validate_mapping

if TYPE_CHECKING:
    from orch.service import OrchService

log = structlog.get_logger("orch.deploy")


class Deployer(Recovery, Releases):
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
        # Services a rollout left part-switched with auto_rollback off: the planner keeps each replica on the
        # release it runs until the next deployment (`ServiceView.hold_versions`).
        self.held: set[str] = set()
        self._running: set[asyncio.Task[Any]] = set()  # the deployments' tasks, cancelled first at a stop
        self._releases: dict[tuple[str, int], Target] = {}  # older releases replicas still run (`release_of`)

    def _spawn(self, d: dict[str, Any], run: Coroutine[Any, Any, None]) -> None:
        task = self.o._tasks.spawn(f"deploy:{d['service']}:{d['id']}", run)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def close(self, timeout_s: float = 5.0) -> None:
        """At a platform stop: cancel the running deployments and wait (bounded) until each has recorded
        where it stopped (`running`, resumed at the next start) and emitted its last events."""
        tasks = list(self._running)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)

    # --- public ---------------------------------------------------------------------------------

    async def deploy(
        self,
        name: str,
        *,
        version: str | None,
        artifact_id: str | None,
        overrides: dict[str, Any] | None,
        actor: str | None,
    ) -> dict[str, Any]:
        row = self.o._row(name)
        if version is not None and not VERSION_RE.match(version):
            raise BadRequest(
                f"{version!r} is not a version label: {VERSION_RULE} (it expands in paths as "
                "${version} and names the release dir)",
                details={"field": "version"},
            )
        base = row.spec.model_dump(mode="json", exclude_defaults=True)
        data = {**base, **(overrides or {})}
        if data.get("name") != name:
            raise BadRequest(f"overrides cannot rename the service ({data.get('name')!r})")
        spec = await self.o._parse(validate_mapping, data, f"deploy {name}")
        if artifact_id is not None and self.o.artifacts is None:
            raise BadRequest(
                "artifact uploads are not available on this server",
                hint="deploy without artifact_id, or enable the artifact store",
            )
        # The artifact is unpacked by `_start`, after the conflict and admission checks passed.
        return await self.start(spec, None, "deploy", actor, version=version, artifact_id=artifact_id)

    async def changes(self, deployment_id: int, keys: Iterable[str]) -> dict[str, Any]:
        """For the audit log of a deploy with `overrides` (top-level spec fields `keys`): each field they
        changed from the deployment's previous release to its new one, old → new, secrets as markers."""
        d = await self.deployment(deployment_id)
        new = await self.repo.release(d["service"], d["release"])
        old = await self.repo.release(d["service"], d["from_release"]) if d["from_release"] is not None else None
        return override_changes(old["doc"] if old else None, new["doc"] if new else {}, keys)

    async def _install(self, artifact_id: str, name: str, version: str) -> str:
        """The artifact unpacked as `${installPath}`, in a task of orch's own that a cancelled caller (a
        client gone mid-request) does not cut short: the install finishes whole, and the same deploy again
        finds it done."""

        async def install() -> str:
            got = self.o.artifacts.install(artifact_id, name, version)
            return str(await got if inspect.isawaitable(got) else got)

        return await asyncio.shield(self.o._tasks.spawn(f"install:{name}:{version}", install()))

    async def start(
        self,
        spec: ServiceSpec,
        text: str | None,
        kind: str,
        actor: str | None,
        *,
        version: str | None = None,
        install_path: str | None = None,
        artifact_id: str | None = None,
        filename: str = "(deploy)",
    ) -> dict[str, Any]:
        """Record release N+1 of `spec` and run its deployment in the background."""
        name = spec.name
        with self._claim(name):
            return await self._start(
                spec,
                text,
                kind,
                actor,
                version=version,
                install_path=install_path,
                artifact_id=artifact_id,
                filename=filename,
            )

    @contextlib.contextmanager
    def _claim(self, name: str) -> Iterator[None]:
        """One deployment per service: refused while another runs or is being set up."""
        if name in self.active:
            raise Conflict(
                f"service {name} is being deployed (deployment {self.active[name]['id']})",
                hint=f"wait for it: fsctl deploy status {self.active[name]['id']}",
            )
        if name in self._claimed:
            raise Conflict(
                f"service {name} is being deployed (a deployment is starting)",
                hint="wait for it to finish, then try again",
            )
        self._claimed.add(name)
        try:
            yield
        finally:
            self._claimed.discard(name)

    async def _start(
        self,
        spec: ServiceSpec,
        text: str | None,
        kind: str,
        actor: str | None,
        *,
        version: str | None,
        install_path: str | None,
        artifact_id: str | None,
        filename: str,
    ) -> dict[str, Any]:
        name = spec.name
        row = self.o._row(name)
        risky = await self.o._admit(spec, text, filename)
        if artifact_id is not None and install_path is None:
            install_path = await self._install(artifact_id, name, version or "")
        prev = await self.repo.release(name, row.version)
        label = version or (prev["label"] if prev else "") or ""
        if install_path is None and prev and artifact_id is None and version is None:
            install_path = prev["doc"].get("install_path")
        number = await self.o.repo.save_version(spec, text or spec.model_dump_json(), filename, actor, current=False)
        label = label or str(number)
        rv = release_vars(label, install_path, self.env_name)
        templates = await self._read_templates(spec, rv, number)
        artifact = {"id": artifact_id, "install_path": install_path} if artifact_id else None
        doc = build_release(
            spec,
            number,
            rv,
            templates,
            artifact=artifact,
            previous_spec=row.spec,
            previous_doc=prev["doc"] if prev else None,
        )
        await self._extras(spec, number, rv, templates, doc)
        await self.repo.add_release(name, number, label, doc, actor)
        # What only `allow_host_mounts` / `allow_system_paths` let through is audited as on apply, whichever
        # way the spec came (apply, or a deploy's overrides).
        await self.o._audit_risky(spec, risky, number, actor)
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

    async def deployment(self, deployment_id: int) -> dict[str, Any]:
        for d in self.active.values():
            if d["id"] == deployment_id:
                return _public(d)
        rec = await self.repo.deployment(deployment_id)
        if rec is None:
            raise NotFound(f"no deployment {deployment_id}", hint="see GET /api/deployments")
        return _public(rec)

    async def deployments(self, service: str | None) -> list[dict[str, Any]]:
        live = {d["id"]: d for d in self.active.values()}
        return [_public(live.get(d["id"], d)) for d in await self.repo.deployments(service)]

    # --- running a deployment -------------------------------------------------------------------

    async def _launch(self, target: Target, kind: str, actor: str | None) -> dict[str, Any]:
        name = target.spec.name
        row = self.o._row(name)
        strategy = target.spec.deploy.strategy
        dep_id = await self.repo.add_deployment(name, target.release, row.version, kind, strategy, actor)
        d = await self.repo.deployment(dep_id)
        assert d is not None
        self.active[name] = d  # (still claimed by start/rollback: one deployment per service)
        self.held.discard(name)
        self._step(d, "created", "ok", f"{kind} of release {target.release} (from {row.version}), {strategy}")
        self._spawn(d, self._run(d, target))
        self.o._wake.set()
        return {"deployment_id": dep_id, "release_id": target.release, "status": "pending"}

    async def _run(
        self,
        d: dict[str, Any],
        target: Target,
        *,
        resume: str | None = None,
        leftovers: list[tuple[SlotKey, Live]] | None = None,
    ) -> None:
        """Run a deployment to its end. `resume`: "forward" (a crash interrupted it after a switch: only the
        slots not on the target move) or "back" (a crash interrupted its rollback: finish the rollback)."""
        name = target.spec.name
        spec = target.spec
        from_release = d["from_release"]
        try:
            if leftovers:
                await self._stop_retired(leftovers, 0.0)
            if resume is None:
                d["status"] = rollout.advance(d["status"], "start")
                d["phases"]["running"] = time.time()
                await self._save(d)
            if resume == "back":
                await self._roll_back(d, name, from_release)
                return
            old = sorted(
                s.index
                for s in self.o.slots.values()
                if s.service == name and s.active and s.index < rollout.STAGED_RECORD_BASE
            )
            batches = rollout.plan_batches(
                old, spec.replicas, spec.deploy.strategy, spec.deploy.max_surge, spec.deploy.max_unavailable
            )
            if resume == "forward":
                batches = [b for b in (self._not_yet(name, b, target.release) for b in batches) if b.slots or b.retire]
            if spec.deploy.strategy == "recreate":
                self._step(
                    d,
                    "strategy",
                    "info",
                    "recreate: the old instances stop before the new ones start (the service is down in between)",
                )
            switched = resume == "forward"  # a resumed rollout had switched at least one batch
            d["_stopped"] = []  # slots whose old instance a replace batch stopped (recreate, max_surge: 0)
            try:
                for n, batch in enumerate(batches, 1):
                    await self._batch(d, target, batch, n, len(batches))
                    switched = True
            except DeployFailed as e:
                d["error"] = str(e)
                self._step(d, "failed", "failed", str(e))
                stopped = [i for i in d["_stopped"] if not self._runs(name, i)]
                if switched and spec.deploy.auto_rollback and from_release is not None:
                    self._step(d, "rollback", "info", f"rolling back to release {from_release}")
                    await self._roll_back(d, name, from_release)
                elif stopped and spec.deploy.auto_rollback and from_release is not None:
                    error = await self._restart_stopped(d, name, from_release, stopped)
                    if error is None:
                        d["status"] = rollout.advance(d["status"], "roll_back")
                        self._step(
                            d,
                            "rolled back",
                            "ok",
                            f"release {from_release} is serving again ({self.replicas_report(name)})",
                        )
                    else:
                        d["error"] = f"{d['error']}; restarting release {from_release} failed too: {error}"
                        d["status"] = rollout.advance(d["status"], "fail")
                elif switched:  # auto_rollback off: what switched stays, the rest keeps its release
                    if stopped and from_release is not None:  # a replace batch's stopped slots: the old release
                        await self._restart_stopped(d, name, from_release, stopped)
                        self._adopt_row(name, target)  # the service's release stays the new one
                        await self.o.repo.set_current(name, target.release)
                    await self._restore_files(name)
                    self.held.add(name)
                    d["status"] = rollout.advance(d["status"], "fail")
                    self._step(
                        d,
                        "held",
                        "failed",
                        f"auto_rollback is off: {self.replicas_report(name)}; the "
                        "replicas not switched keep their release (no restart onto the new one) until the "
                        "next deploy or rollback; a replica that exits meanwhile restarts on its own release, "
                        "health-checked",
                    )
                else:
                    await self._restore_files(name)
                    if stopped:  # auto_rollback off (or nothing to go back to): the supervisor starts them again
                        d["status"] = rollout.advance(d["status"], "fail")
                        self._step(
                            d,
                            "stopped",
                            "failed",
                            f"the old instance(s) of slot(s) {stopped} were stopped; "
                            f"auto_rollback is off, so they start again on release {from_release} "
                            "by the supervisor (no health gate)",
                        )
                    else:
                        d["status"] = rollout.advance(d["status"], "roll_back" if spec.deploy.auto_rollback else "fail")
                        self._step(d, "kept", "ok", f"release {from_release} kept serving; it was never stopped")
            else:
                row = self.o.services.get(name)
                if row is not None and row.version != target.release:  # nothing to replace (0 replicas)
                    self._adopt_row(name, target)
                await self.o.repo.set_current(name, target.release)
                try:  # upkeep, before the status: a caller seeing `succeeded` sees the pruned history
                    await self._prune(name, target.release, from_release)
                except Exception as e:  # a failed upkeep must not fail the deployment that ran
                    log.warning("releases not pruned", service=name, error=repr(e))
                d["status"] = rollout.advance(d["status"], "succeed")
                self._step(d, "done", "ok", f"release {target.release} is serving: {self.replicas_report(name)}")
        except asyncio.CancelledError:
            if self.o._shutting_down and d["status"] == "running":
                # A graceful stop: the record stays `running` and `recover()` resumes it at the next start,
                # as after a SIGKILL (ending it `failed` would leave a part-switched service unheld).
                self._step(
                    d,
                    "interrupted",
                    "info",
                    f"interrupted by shutdown; resumes at next start: {self.replicas_report(name)}",
                )
            elif d["status"] not in rollout.TERMINAL:
                d["error"] = "interrupted: the platform stopped during the deployment"
                d["status"] = rollout.advance(d["status"], "interrupt")
            raise
        except Exception as e:  # a bug or an I/O error: the deployment says so instead of staying "running"
            log.exception("deployment crashed", service=name, deployment=d["id"])
            d["error"] = f"{type(e).__name__}: {e}"
            self._step(d, "error", "failed", d["error"])
            if d["status"] not in rollout.TERMINAL:
                d["status"] = rollout.advance(d["status"], "fail")
        finally:
            d.pop("_stopped", None)
            ended = d["status"] in rollout.TERMINAL
            if ended:
                d["finished_at"] = d["phases"]["finished"] = time.time()
                self._hold_if_mixed(d, name)
            # No await between the final status and freeing the service: whoever sees the deployment end
            # can start the next one.
            self.active.pop(name, None)
            with contextlib.suppress(Exception):
                await asyncio.shield(self._save(d))
            if ended:
                self.o._emit(DeployFinished(**self._event(d)))
                log.info(
                    "deployment finished", service=name, deployment=d["id"], status=d["status"], error=d.get("error")
                )
                self.o._wake.set()
            else:  # interrupted by a graceful stop: resumed at the next start
                log.info("deployment interrupted by shutdown", service=name, deployment=d["id"])

    async def _batch(self, d: dict[str, Any], target: Target, batch: rollout.Batch, n: int, total: int) -> None:
        name = target.spec.name
        spec = target.spec
        what = f"batch {n}/{total}" if n else "rollback batch"
        retired: list[tuple[SlotKey, Live]] = []
        if not batch.surge:
            for i in batch.slots:
                retired += self._retire((name, i))
            if retired:
                d["_stopped"] = [*d.get("_stopped", []), *(key[1] for key, _ in retired)]
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
            hint = (
                "; a fixed port cannot run twice: give the service deploy: {strategy: recreate}"
                if isinstance(e, OSError) and "already in use" in str(e) and batch.surge
                else ""
            )
            raise DeployFailed(f"{e}{hint}") from None
        self._step(d, "healthy", "ok", f"{what}: {len(staged)} new instance(s) healthy")
        await self._save(d)
        retired = self._switch(name, staged, target, batch.retire)
        # Serving now: a restart after a crash from here on keeps the new release (no restart into the old).
        await self.o.repo.set_current(name, target.release)
        d["phases"].setdefault("switched", time.time())
        self._step(
            d,
            "switch",
            "ok",
            f"{what}: gate switched to release {target.release} "
            f"({', '.join(f'{name}-{st.slot}' for st in staged) or 'no new instance'})",
        )
        if retired:
            await self._stop_retired(retired, spec.deploy.drain)
            self._step(d, "drain", "ok", f"{what}: {len(retired)} old instance(s) drained and stopped")
        await self._save(d)

    async def _prune(self, name: str, current: int, previous: int | None) -> None:
        """Forget releases beyond `orch.release_keep`; the artifact store, when wired and able, removes
        their unpacked directories (`prune(service, keep_paths)`)."""
        rows = await self.repo.releases(name)
        gone = rollout.releases_to_prune([r["release"] for r in rows], current, previous, self.o.settings.release_keep)
        if not gone:
            return
        await self.repo.forget_releases(name, gone)
        log.info("releases pruned", service=name, releases=gone)
        prune = getattr(self.o.artifacts, "prune", None)
        if prune is not None:
            # the store keys release dirs by version label: every kept release's directory stays
            keep = {
                str(r["doc"].get("version") or "")
                for r in rows
                if r["release"] not in gone and r["doc"].get("install_path")
            } - {""}
            try:
                got = prune(name, keep)
                if inspect.isawaitable(got):
                    await got
            except Exception as e:  # pruning is upkeep: a failure must not fail the deployment that ran
                log.warning("release dirs not pruned", service=name, error=repr(e))

    # --- records ----------------------------------------------------------------------------------

    def _step(self, d: dict[str, Any], step: str, outcome: str, detail: str) -> None:
        d["log"].append({"at": time.time(), "step": step, "outcome": outcome, "detail": detail})
        self.o._emit(DeployProgress(**self._event(d), step=step, outcome=outcome, detail=detail))
        log.info("deployment step", service=d["service"], deployment=d["id"], step=step, outcome=outcome, detail=detail)

    async def _save(self, d: dict[str, Any]) -> None:
        await self.repo.save_deployment(d)

    @staticmethod
    def _event(d: dict[str, Any]) -> dict[str, Any]:
        return {
            "deployment_id": d["id"],
            "service": d["service"],
            "release": d["release"],
            "status": d["status"],
            "error": d.get("error"),
        }


def _public(d: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "id",
        "service",
        "release",
        "from_release",
        "kind",
        "strategy",
        "status",
        "actor",
        "created_at",
        "finished_at",
        "phases",
        "log",
        "error",
    )
    return {k: d.get(k) for k in keys}


def releases_dir(data_dir: Path) -> Path:
    return data_dir / "releases"
