"""The snap service: plans on a cron schedule, backup/restore/scrub/forget/prune as jobs, events on
the bus. The asyncio shell around the synchronous engine: nothing CPU- or disk-heavy runs on the loop.

Theory of operation: every repository operation is a `Job` whose work runs in a child process
(`snap.runner`, see its docstring for why not a thread); the loop reads the child's progress lines into
`job.progress` and its last line into `job.result` / `job.error`. Backups of one plan never overlap
(`_running_plans` is checked and updated with no await in between); other conflicts are settled by the
repository's own locks (`RepositoryLocked` → 409). Light reads (the snapshot list) run in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shlex
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from core.bus import EventBus
from core.clock import Clock, SystemClock
from core.errors import BadRequest, Conflict, InfraError, NotFound, Unavailable
from core.ports import ServiceLauncher
from core.store import Store
from core.tasks import TaskSet
from snap.config import PlanBody, RestoreBody, SnapConfig
from snap.errors import RepositoryError
from snap.events import SnapDone, SnapFailed, SnapStarted
from snap.plans import PlanRepo, policy_of
from snap.repo import Repository
from snap.schedule import due, next_runs
from snap.shadow import shadow_name

log = structlog.get_logger("snap.service")

_MAX_JOBS_KEPT = 200


@dataclass
class Job:
    id: str
    kind: str  # backup | restore | scrub | forget | prune
    started_at: float
    state: str = "running"  # running | done | failed
    finished_at: float | None = None
    progress: dict[str, Any] = field(default_factory=dict)  # the child's latest progress line
    result: Any = None
    error: dict[str, Any] | None = None
    target: str | None = None  # restores: where to
    proc: asyncio.subprocess.Process | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "progress": self.progress,
            "result": self.result,
            "error": self.error,
            "target": self.target,
        }


_ROOT = str(Path(__file__).resolve().parent.parent)  # so the child imports this very code
_MAX_LINE = 64 * 1024 * 1024


class SnapService:
    """Component `snap`. Public methods are what the console routes call."""

    name = "snap"

    def __init__(
        self,
        config: SnapConfig,
        data_dir: Path,
        store: Store,
        bus: EventBus,
        *,
        clock: Clock | None = None,
        launcher: Callable[[], ServiceLauncher | None] = lambda: None,
    ) -> None:
        self.config = config
        self.data_dir = data_dir
        self.plans = PlanRepo(store)
        self.bus = bus
        self.clock = clock or SystemClock()
        self.repo: Repository | None = None
        self.jobs: dict[str, Job] = {}
        self._seq = itertools.count(1)
        self._running_plans: set[str] = set()
        self._tasks = TaskSet("snap")
        self._pool: ThreadPoolExecutor | None = None
        self._wake = asyncio.Event()
        self._launcher = launcher

    # --- component ------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.plans.migrate()
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="snap-read")
        self.repo = await self._in_thread(self._open_repo)
        if self.config.enabled:
            self._tasks.spawn("scheduler", self._scheduler())
        log.info("snap started", repository=str(self.repo.path), encryption=self.repo.crypto.mode)

    def _open_repo(self) -> Repository:
        path = self.config.repo_path(self.data_dir)
        passphrase = self.config.passphrase()
        if (path / "config").exists():
            # the server only lists snapshots; the index (large for a big repository) stays in the jobs
            return Repository.open(path, passphrase=passphrase, load_index=False)
        return Repository.init(path, encryption=self.config.encryption, passphrase=passphrase)

    async def stop(self, drain_timeout_s: float) -> None:
        for job in self.jobs.values():
            if job.proc is not None and job.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    job.proc.send_signal(signal.SIGTERM)  # backups flush and index what they wrote, then stop
        running = [j.done.wait() for j in self.jobs.values() if j.state == "running"]
        if running:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*running), drain_timeout_s)
        await self._tasks.close(drain_timeout_s)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        assert self._pool is not None, "snap is not started"
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _repo(self) -> Repository:
        if self.repo is None:
            raise RepositoryError("the snap repository is not open")
        return self.repo

    # --- scheduling -----------------------------------------------------------------------------

    async def _scheduler(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.check_every_s)
            self._wake.clear()
            now = self.clock.now()
            try:
                for plan in await self.plans.list():
                    if (
                        plan["enabled"]
                        and plan["cron"]
                        and plan["name"] not in self._running_plans
                        and due(plan["cron"], plan["last_run_at"], plan["created_at"], now)
                    ):
                        await self.run_plan(plan["name"], trigger="schedule")
            except asyncio.CancelledError:
                raise
            except Exception as e:  # one bad plan must not stop the scheduler
                log.error("scheduler pass failed", error=repr(e))

    # --- plans ----------------------------------------------------------------------------------

    async def list_plans(self) -> list[dict[str, Any]]:
        now = self.clock.now()
        out = []
        for p in await self.plans.list():
            p["next_runs"] = next_runs(p["cron"], max(now, p["last_run_at"] or 0), 3) if p["cron"] else []
            out.append(p)
        return out

    async def add_plan(self, body: PlanBody) -> dict[str, Any]:
        plan = await self.plans.add(body, self.clock.now())
        self._wake.set()
        return plan

    async def remove_plan(self, name: str) -> dict[str, Any]:
        return await self.plans.remove(name)

    # --- jobs -----------------------------------------------------------------------------------

    def job(self, job_id: str) -> Job:
        j = self.jobs.get(job_id)
        if j is None:
            raise NotFound(f"no snap job {job_id!r}", hint="jobs are kept in memory until the server restarts")
        return j

    def _new_job(self, kind: str, job_id: str | None = None) -> Job:
        job = Job(job_id or f"{kind}-{next(self._seq)}", kind, self.clock.now())
        self.jobs[job.id] = job
        if len(self.jobs) > _MAX_JOBS_KEPT:
            for old in [j for j in self.jobs.values() if j.state != "running"][: len(self.jobs) - _MAX_JOBS_KEPT]:
                self.jobs.pop(old.id, None)
        return job

    def _spawn(self, job: Job, body: Awaitable[Any]) -> None:
        async def runner() -> None:
            try:
                job.result = await body
                job.state = "done"
            except asyncio.CancelledError:
                job.state, job.error = "failed", {"code": "cancelled", "message": "stopped"}
                raise
            except InfraError as e:
                job.state, job.error = "failed", e.to_dict()["error"]
            except Exception as e:
                log.error("snap job crashed", job=job.id, error=repr(e), exc_info=e)
                job.state, job.error = "failed", {"code": "internal", "message": str(e) or repr(e)}
            finally:
                job.finished_at = self.clock.now()
                job.done.set()

        self._tasks.spawn(job.id, runner())

    async def _run_child(self, job: Job, op: str, params: dict[str, Any]) -> Any:
        """Run `op` in a `snap.runner` child; progress into `job.progress`; its result, or its error raised."""
        req = {
            "op": op,
            "repo": str(self.config.repo_path(self.data_dir)),
            "passphrase_file": str(self.config.passphrase_file) if self.config.passphrase_file else None,
            "nice": self.config.nice,
            "cpus": self.config.job_cpu_count(),
            "params": params,
        }
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "snap.runner",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
            limit=_MAX_LINE,
        )
        job.proc = proc
        final: dict[str, Any] | None = None
        try:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(json.dumps(req).encode())
            await proc.stdin.drain()
            proc.stdin.close()
            while line := await proc.stdout.readline():
                msg = json.loads(line) if len(line) < 65536 else await asyncio.to_thread(json.loads, line)
                if "progress" in msg:
                    job.progress = msg["progress"]
                else:
                    final = msg
            await proc.wait()
        except BaseException:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(proc.wait()), 10)
                if proc.returncode is None:
                    proc.kill()
            raise
        if final is None:
            raise InfraError(
                f"snap {op} ended without a result (exit status {proc.returncode})",
                hint="see the server log for the runner's output",
            )
        if "error" in final:
            err = final["error"]
            e = InfraError(err.get("message", "?"), details=err.get("details"), code=err.get("code", "internal"))
            e.status = 409 if e.code == "snap_locked" else e.status
            raise e
        return final["result"]

    # --- backup ---------------------------------------------------------------------------------

    async def run_plan(self, name: str, *, trigger: str = "manual") -> Job:
        """Start a backup of plan `name` now; returns its job at once. 409 when it is already running."""
        plan = await self.plans.get(name)
        if name in self._running_plans:
            raise Conflict(f"plan {name!r} is already running", hint="watch it with `fsctl snap runs`")
        self._running_plans.add(name)  # no await between the check and this add
        now = self.clock.now()
        try:
            await self.plans.mark_run(name, now)
            run_id = await self.plans.start_run(name, trigger, now)
        except BaseException:
            self._running_plans.discard(name)
            raise
        job = self._new_job("backup", f"run-{run_id}")
        self._spawn(job, self._backup(plan, run_id, job, trigger))
        return job

    async def _unmark(self, plan: dict[str, Any]) -> None:
        """A run refused by the repository lock (a prune) did not happen: due again at the next pass."""
        with contextlib.suppress(Exception):
            await self.plans.mark_run(plan["name"], plan["last_run_at"])
            self._wake.set()

    async def _backup(self, plan: dict[str, Any], run_id: int, job: Job, trigger: str) -> dict[str, Any]:
        name = plan["name"]
        await self.bus.publish(SnapStarted(plan=name, run_id=run_id, trigger=trigger))
        try:
            if plan.get("pre_hook"):
                await self._hook(plan["pre_hook"], "pre", name)
            params = {
                "paths": plan["paths"],
                "plan": name,
                "excludes": plan["excludes"],
                "workers": self.config.workers,
                "rate_limit_bytes_s": plan["rate_limit_mb_s"] * 1e6 if plan["rate_limit_mb_s"] else None,
            }
            snap = await self._run_child(job, "backup", params)
        except BaseException as e:
            msg = e.message if isinstance(e, InfraError) else (str(e) or type(e).__name__)
            cancelled = isinstance(e, asyncio.CancelledError) or getattr(e, "code", "") == "cancelled"
            state = "interrupted" if cancelled else "failed"
            if getattr(e, "code", "") == "snap_locked":
                await self._unmark(plan)
            with contextlib.suppress(Exception):  # the store may be closing; the next start marks it anyway
                await self.plans.finish_run(run_id, self.clock.now(), state, error=msg)
                await self.bus.publish(SnapFailed(plan=name, run_id=run_id, error=msg))
            log.error("backup failed", plan=name, run_id=run_id, error=msg)
            raise
        finally:
            self._running_plans.discard(name)
            if plan.get("post_hook"):
                try:
                    await self._hook(plan["post_hook"], "post", name)
                except InfraError as e:
                    log.error("post hook failed", plan=name, error=e.message)
        s = snap["stats"]
        await self.plans.finish_run(run_id, self.clock.now(), "done", snapshot=snap["id"], stats=s)
        await self.bus.publish(
            SnapDone(
                plan=name,
                run_id=run_id,
                snapshot=snap["id"],
                files=s["files"],
                bytes=s["bytes"],
                new_bytes=s["new_bytes"],
                stored_bytes=s["stored_bytes"],
                duration_s=s["duration_s"],
                errors=s["error_count"],
            )
        )
        retention: list[dict[str, Any]] = []
        try:
            policy = policy_of(plan)
            retention = await self._run_child(job, "forget", {"policies": {name: _policy_dict(policy)}})
            retention = [d for d in retention if d["plan"] == name]
            if self.config.auto_prune and any(not d["keep"] for d in retention):
                await self._run_child(job, "prune", {})
        except InfraError as e:  # e.g. another job holds the lock: retention runs after the next backup
            log.warning("retention after backup skipped", plan=name, error=e.message)
        return {"snapshot": snap, "forgotten": [d["snapshot"] for d in retention if not d["keep"]]}

    async def _hook(self, command: str, which: str, plan: str) -> None:
        argv = shlex.split(command)
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), self.config.hook_timeout_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise InfraError(
                f"{which} hook of plan {plan!r} timed out after {self.config.hook_timeout_s:g} s", code="snap_hook"
            ) from None
        if proc.returncode != 0:
            tail = out.decode(errors="replace").strip()[-500:]
            raise InfraError(
                f"{which} hook of plan {plan!r} exited with {proc.returncode}: {tail}",
                code="snap_hook",
                hint="fix the hook command, or remove it from the plan",
            )

    # --- snapshots, restore, upkeep -------------------------------------------------------------

    async def snapshots(self) -> list[dict[str, Any]]:
        snaps = await self._in_thread(lambda: self._repo().snapshots())
        return [s.to_dict() for s in snaps]

    async def restore(self, body: RestoreBody) -> Job:
        repo = self._repo()
        snap = await self._in_thread(repo.snapshot, body.snapshot)
        stamp = datetime.fromtimestamp(snap.time, UTC).strftime("%Y%m%dT%H%M%SZ")
        target = (
            Path(body.target)
            if body.target
            else self.config.restore_dir(self.data_dir) / (f"{snap.plan or 'snapshot'}-{stamp}")
        )
        service, launcher = None, None
        if body.shadow:
            service, launcher = await self._shadow_check(snap.plan)
        job = self._new_job("restore")
        job.target = str(target)

        async def go() -> dict[str, Any]:
            res = await self._run_child(
                job,
                "restore",
                {
                    "snapshot": snap.id,
                    "target": str(target),
                    "path": body.path,
                    "force": body.force,
                    "workers": self.config.workers,
                },
            )
            if not res["ok"]:
                raise InfraError(
                    f"restore of {snap.id[:12]} into {target}: {len(res['damaged'])} file(s) damaged and not restored",
                    code="snap_damaged",
                    details=res,
                    hint="run `fsctl snap scrub --all` for the full damage report",
                )
            if launcher is not None and service is not None:
                path_map = {p: str(target) + p for p in snap.paths}
                name = shadow_name(service)
                info = dict(await launcher.start_copy(service, name, path_map, self.config.shadow_timeout_s))
                eps = info.get("endpoints")
                info.update(
                    service=service,
                    snapshot=snap.id,
                    target=str(target),
                    url=f"http://{eps[0]}/" if isinstance(eps, list) and eps else None,
                )
                await self.plans.put_shadow(name, info, self.clock.now())
                res["shadow"] = info
                log.info(
                    "shadow instance started",
                    service=service,
                    shadow=name,
                    healthy=info.get("healthy"),
                    url=info["url"],
                )
            return res

        self._spawn(job, go())
        return job

    async def _shadow_check(self, plan_name: str) -> tuple[str, ServiceLauncher]:
        """The plan's service and the launcher, or a precise refusal before anything is restored."""
        try:
            plan = await self.plans.get(plan_name)
        except NotFound:
            raise BadRequest(f"--shadow needs the snapshot's plan {plan_name!r}, which no longer exists") from None
        if not plan.get("service"):
            raise BadRequest(
                f"plan {plan_name!r} names no service, so there is nothing to start a shadow of",
                hint="add the plan again with --service NAME",
            )
        launcher = self._launcher()
        if launcher is None:
            raise Unavailable("shadow instances need orch, which is not running in this server")
        return plan["service"], launcher

    async def list_shadows(self) -> list[dict[str, Any]]:
        return await self.plans.shadows()

    async def stop_shadow(self, name: str) -> dict[str, Any]:
        info = await self.plans.shadow(name)
        launcher = self._launcher()
        if info is None or launcher is None:
            raise NotFound(f"no shadow instance {name!r}", hint="list them with `fsctl snap shadow ls`")
        await launcher.stop_copy(name)
        await self.plans.forget_shadow(name)
        return info

    async def start_scrub(self, fraction: float) -> Job:
        job = self._new_job("scrub")
        self._spawn(job, self._run_child(job, "scrub", {"fraction": fraction}))
        return job

    async def start_forget(self, dry_run: bool) -> Job:
        job = self._new_job("forget")
        policies = {p["name"]: _policy_dict(policy_of(p)) for p in await self.plans.list()}
        self._spawn(job, self._run_child(job, "forget", {"policies": policies, "dry_run": dry_run}))
        return job

    async def start_prune(self) -> Job:
        job = self._new_job("prune")
        self._spawn(job, self._run_child(job, "prune", {}))
        return job

    async def runs(self, limit: int = 50) -> list[dict[str, Any]]:
        return await self.plans.runs(limit)

    def status(self) -> dict[str, Any]:
        repo = self.repo
        return {
            "repository": str(repo.path) if repo else None,
            "encryption": repo.crypto.mode if repo else None,
            "running": sorted(self._running_plans),
            "jobs": [j.to_dict() for j in self.jobs.values() if j.state == "running"],
            "checked_at": time.time(),
        }


def _policy_dict(p: Any) -> dict[str, int]:
    return {
        "last": p.last,
        "hourly": p.hourly,
        "daily": p.daily,
        "weekly": p.weekly,
        "monthly": p.monthly,
        "yearly": p.yearly,
    }
