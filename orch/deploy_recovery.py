"""The recovering side of `Deployer` (`orch.deployer`): the serving releases' variables at start-up,
deployments a stopped or killed platform left unfinished (resumed, or ended with what the adopted replicas
run), replicas held on their releases after a deployment that did not succeed, and the moves back (a
rollback through the same health-gated batches, the old release restarted in slots a replace batch
stopped). Mixed into `Deployer`, whose records and batches these methods use."""

from __future__ import annotations

import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from orch import rollout
from orch.deploy_slots import DeployFailed, SlotMoves, Target
from orch.events import DeployFinished
from orch.live import Live
from orch.planner import SlotKey
from orch.release import release_vars, templates_of

if TYPE_CHECKING:
    from orch.deployrepo import DeployRepo


class Recovery(SlotMoves):
    """Mixed into `Deployer`; see `orch.deployer` for the state it keeps."""

    if TYPE_CHECKING:  # what `Deployer` provides
        repo: DeployRepo
        env_name: str
        active: dict[str, dict[str, Any]]
        held: set[str]

        def _step(self, d: dict[str, Any], step: str, outcome: str, detail: str) -> None: ...
        async def _save(self, d: dict[str, Any]) -> None: ...
        @staticmethod
        def _event(d: dict[str, Any]) -> dict[str, Any]: ...
        def _spawn(self, d: dict[str, Any], run: Coroutine[Any, Any, None]) -> None: ...
        async def _run(
            self,
            d: dict[str, Any],
            target: Target,
            *,
            resume: str | None = None,
            leftovers: list[tuple[SlotKey, Live]] | None = None,
        ) -> None: ...
        async def _target(self, name: str, number: int, *, strict: bool = True) -> Target: ...
        async def _batch(self, d: dict[str, Any], target: Target, batch: rollout.Batch, n: int, total: int) -> None: ...

    async def load(self) -> None:
        """The serving release's variables of every service (a restarted instance gets the same)."""
        for name, row in self.o.services.items():
            rel = await self.repo.release(name, row.version)
            self._serving(name, rel["doc"] if rel else None, row)
            last = await self.repo.deployments(name, limit=1)
            if (
                last
                and last[0]["status"] in ("failed", "rolled_back")
                and any(s["step"] == "held" for s in last[0]["log"])
            ):
                self.held.add(name)  # a part-switched rollout stays as it was left across restarts

    def _serving(self, name: str, doc: dict[str, Any] | None, row: Any) -> None:
        if doc is None:
            self.vars[name] = release_vars(str(row.version), None, self.env_name)
            self.templates[name] = {}
        else:
            self.vars[name] = release_vars(
                doc.get("version") or str(row.version), doc.get("install_path"), self.env_name
            )
            self.templates[name] = templates_of(doc, row.spec)

    async def recover(self) -> None:
        """Deployments a killed platform left unfinished, after adoption found what still runs.

        Like a Kubernetes Deployment or a Nomad deployment after a controller restart, a rollout that had
        switched at least one batch resumes: the slots not yet on the new release move batch by batch with
        the same health gates (an interrupted rollback resumes as a rollback). What the adopted replicas run
        decides: a rollout resumes when a replica runs its release, a rollback when a replica runs another
        release than the one it goes back to. One killed before any switch ends `failed`: its release never
        served and the old one still does. A graceful stop leaves its deployment `running` too, and it
        resumes the same way. Staged and draining instances the crash left are stopped first. The step log
        says which replica runs which release."""
        for d in await self.repo.unfinished():
            name = d["service"]
            row = self.o.services.get(name)
            leftovers = self._retire_leftovers(name)
            self._step(
                d,
                "interrupted",
                "info",
                "the platform stopped during the deployment; at this start "
                f"{self.replicas_report(name)}"
                + (f"; {len(leftovers)} staged or draining instance(s) are stopped" if leftovers else ""),
            )
            back = any(s["step"] == "rollback" for s in d["log"])
            # What the adopted replicas run decides, not the service's recorded release: a rollback batch
            # switches the service's release back before the rollback has finished.
            runs = {
                s.version
                for s in self.o.slots.values()
                if s.service == name and s.active and s.index < rollout.STAGED_RECORD_BASE
            }
            live = (
                row is not None
                and row.desired == "running"
                and d["status"] == "running"
                and d["from_release"] is not None
                and d["release"] != d["from_release"]
            )
            report = self.replicas_report(name)
            if live and not back and d["release"] in runs:
                target = await self._target(name, d["release"], strict=False)
                self._step(
                    d,
                    "resume",
                    "info",
                    f"resuming the rollout to release {d['release']} ({report}): "
                    "the slots not on it yet, batch by batch with health gates",
                )
            elif live and back and runs - {d["from_release"]}:
                target = await self._target(name, d["from_release"], strict=False)
                self._step(d, "resume", "info", f"resuming the rollback to release {d['from_release']} ({report})")
            else:
                if live and back and runs:  # the rollback had brought every replica back: it is done
                    await self.o.repo.set_current(name, d["from_release"])
                    d["status"] = rollout.advance(d["status"], "roll_back")
                    self._step(d, "rolled back", "ok", f"release {d['from_release']} is serving: {report}")
                else:
                    if row is None or row.desired != "running":
                        why = "the service is not to run"
                    elif d["status"] != "running":
                        why = "it had not started"
                    elif not back:
                        why = f"no replica runs release {d['release']}"
                    else:
                        why = "no replica runs"
                    self._step(
                        d,
                        "kept",
                        "failed",
                        f"nothing to resume: {why} ({report}); the service's release is {row.version if row else None}",
                    )
                    d["status"] = rollout.advance(d["status"], "interrupt")
                    d["error"] = d.get("error") or "interrupted: the platform stopped during the deployment"
                d["finished_at"] = d["phases"]["finished"] = time.time()
                self._hold_if_mixed(d, name)
                await self.repo.save_deployment(d)
                self.o._emit(DeployFinished(**self._event(d)))
                if leftovers:
                    self.o._tasks.spawn(f"deploy-leftovers:{name}", self._stop_retired(leftovers, 0.0))
                continue
            d["phases"]["resumed"] = time.time()
            await self._save(d)
            self.active[name] = d
            self._spawn(d, self._run(d, target, resume="back" if back else "forward", leftovers=leftovers))

    def _retire_leftovers(self, name: str) -> list[tuple[SlotKey, Live]]:
        """Adopted instances a crash left beyond the replica slots (staged: 200+, draining: 300+): out of the
        planner's hands, to be stopped by the recovery (no await)."""
        out: list[tuple[SlotKey, Live]] = []
        for key in [k for k in self.o.slots if k[0] == name and k[1] >= rollout.STAGED_RECORD_BASE]:
            out += self._retire(key)
        return out

    def replicas_report(self, name: str) -> str:
        """Which replica runs which release, e.g. `web-1 runs release 3; web-2, web-3 run release 2`."""
        by: dict[int, list[str]] = {}
        for s in sorted(self.o.slots.values(), key=lambda s: s.index):
            if s.service == name and s.active and s.index < rollout.STAGED_RECORD_BASE:
                by.setdefault(s.version, []).append(f"{name}-{s.index}")
        if not by:
            return "no replica runs"
        return "; ".join(
            f"{', '.join(who)} run{'s' if len(who) == 1 else ''} release {v}"
            for v, who in sorted(by.items(), reverse=True)
        )

    def _mixed(self, name: str) -> bool:
        """Some replica runs another release than the service's (a part-switched rollout or rollback)."""
        row = self.o.services.get(name)
        return row is not None and any(
            s.service == name and s.active and s.index < rollout.STAGED_RECORD_BASE and s.version != row.version
            for s in self.o.slots.values()
        )

    def _hold_if_mixed(self, d: dict[str, Any], name: str) -> None:
        """A deployment that did not succeed and left replicas on different releases: the planner keeps each
        on the release it runs (no unchecked restart onto the service's release) until the next deployment;
        the `held` step lets `load()` restore that after a restart. No await."""
        if d["status"] == "succeeded" or not self._mixed(name) or name in self.held:
            return
        self.held.add(name)
        row = self.o.services.get(name)
        self._step(
            d,
            "held",
            "failed",
            f"{self.replicas_report(name)}; each replica keeps its release (no "
            f"restart onto release {row.version if row else '?'} without a health gate) until the next "
            "deploy or rollback; a replica that exits meanwhile restarts on its own release, health-checked",
        )

    def _runs(self, name: str, slot: int) -> bool:
        s = self.o.slots.get((name, slot))
        return s is not None and s.active

    def _not_yet(self, name: str, batch: rollout.Batch, release: int) -> rollout.Batch:
        """`batch` without the slots already running `release` (a resumed rollout)."""
        slots = tuple(i for i in batch.slots if not self._runs(name, i) or self.o.slots[(name, i)].version != release)
        return rollout.Batch(slots, batch.surge, tuple(i for i in batch.retire if self._runs(name, i)))

    async def _roll_back(self, d: dict[str, Any], name: str, from_release: int) -> None:
        """The switched slots back to `from_release` through the same health-gated batches; `rolled_back`.
        A rollback batch failing too ends the deployment `failed` (no raise): the replicas it left on
        different releases are held by `_run`'s end."""
        back = await self._target(name, from_release, strict=False)
        mine = [
            s for s in self.o.slots.values() if s.service == name and s.active and s.index < rollout.STAGED_RECORD_BASE
        ]
        moved = {s.index for s in mine if s.version != from_release}  # the switched slots only
        try:
            for batch in rollout.plan_batches(
                sorted(s.index for s in mine),
                back.spec.replicas,
                back.spec.deploy.strategy,
                back.spec.deploy.max_surge,
                back.spec.deploy.max_unavailable,
            ):
                batch = rollout.Batch(
                    tuple(i for i in batch.slots if i in moved or (name, i) not in self.o.slots),
                    batch.surge,
                    batch.retire,
                )
                if batch.slots or batch.retire:
                    await self._batch(d, back, batch, 0, 0)
        except DeployFailed as e:
            d["error"] = f"{d.get('error') or 'failed'}; the rollback failed too: {e}"
            self._step(d, "rollback", "failed", f"{e}; {self.replicas_report(name)}")
            d["status"] = rollout.advance(d["status"], "fail")
            return
        await self.o.repo.set_current(name, from_release)
        d["status"] = rollout.advance(d["status"], "roll_back")
        self._step(d, "rolled back", "ok", f"release {from_release} is serving: {self.replicas_report(name)}")

    async def _restart_stopped(self, d: dict[str, Any], name: str, from_release: int, stopped: list[int]) -> str | None:
        """A replace batch (recreate, max_surge: 0) stopped the old instances of `stopped` and the new ones
        failed: start the old release again in those slots, health-gated. None when they came back, else why
        not (the caller sets the status: `rolled_back` only if this worked)."""
        self._step(
            d,
            "rollback",
            "info",
            f"the old instance(s) of slot(s) {stopped} were stopped before the new "
            f"ones started: starting release {from_release} again in them",
        )
        back = await self._target(name, from_release, strict=False)
        try:
            await self._batch(d, back, rollout.Batch(tuple(stopped), surge=True), 0, 0)
        except DeployFailed as e:
            self._step(
                d, "rollback", "failed", f"release {from_release} did not come back: {e}; {self.replicas_report(name)}"
            )
            return str(e)
        self._step(
            d,
            "restarted",
            "ok",
            f"the old instance(s) were stopped and restarted: release {from_release} runs in slot(s) {stopped} again",
        )
        return None
