"""Routes of snap: plans, runs and jobs (with progress), snapshots, restore, scrub, forget, prune."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from console_api.api import Api, ApiRequest, parse_int
from console_api.schemas_snap import (
    BackupJob,
    ForgetJob,
    PruneJob,
    RestoreJob,
    ScrubJob,
    Shadow,
    SnapJob,
    SnapPlan,
    SnapPlanScheduled,
    SnapRun,
    Snapshot,
    SnapStatus,
)
from snap import ForgetBody, PlanBody, RestoreBody, ScrubBody

if TYPE_CHECKING:  # the component's public face (see console_api/__init__.py)
    from snap import SnapService


def register(api: Api, snap: SnapService) -> None:
    """The routes over `SnapService`'s public methods."""

    @api.route("GET", "/api/snap/status", summary="Repository, running plans and jobs", tag="snap", returns=SnapStatus)
    async def status(req: ApiRequest) -> dict[str, Any]:
        return snap.status()

    @api.route(
        "GET",
        "/api/snap/plans",
        summary="Backup plans with their next run times",
        tag="snap",
        returns=list[SnapPlanScheduled],
    )
    async def plans(req: ApiRequest) -> list[dict[str, Any]]:
        return await snap.list_plans()

    @api.route(
        "POST",
        "/api/snap/plans",
        summary="Add a backup plan",
        role="admin",
        body=PlanBody,
        action="snap.plan.add",
        tag="snap",
        returns=SnapPlan,
    )
    async def plan_add(req: ApiRequest) -> dict[str, Any]:
        body: PlanBody = req.body
        req.audit(f"snap-plan:{body.name}")
        after = await snap.add_plan(body)
        req.audit(f"snap-plan:{body.name}", after=after)
        return after

    @api.route(
        "DELETE",
        "/api/snap/plans/{name}",
        summary="Remove a backup plan (its snapshots stay)",
        role="admin",
        action="snap.plan.remove",
        tag="snap",
        returns=SnapPlan,
    )
    async def plan_remove(req: ApiRequest) -> dict[str, Any]:
        req.audit(f"snap-plan:{req.match['name']}")
        before = await snap.remove_plan(req.match["name"])
        req.audit(f"snap-plan:{req.match['name']}", before=before)
        return before

    @api.route(
        "POST",
        "/api/snap/plans/{name}/run",
        summary="Run a plan's backup now (returns its job)",
        role="admin",
        action="snap.run",
        tag="snap",
        returns=BackupJob,
    )
    async def plan_run(req: ApiRequest) -> dict[str, Any]:
        req.audit(f"snap-plan:{req.match['name']}")
        job = await snap.run_plan(req.match["name"])
        req.audit(f"snap-plan:{req.match['name']}", after={"job": job.id})
        return job.to_dict()

    @api.route(
        "GET",
        "/api/snap/runs",
        summary="Recent backup runs",
        tag="snap",
        query={"limit": "how many (default 50, at most 1000)"},
        returns=list[SnapRun],
    )
    async def runs(req: ApiRequest) -> list[dict[str, Any]]:
        return await snap.runs(parse_int(req.query.get("limit"), "limit", 50, 1, 1000))

    @api.route("GET", "/api/snap/jobs/{id}", summary="A job's state, progress and result", tag="snap", returns=SnapJob)
    async def job(req: ApiRequest) -> dict[str, Any]:
        return snap.job(req.match["id"]).to_dict()

    @api.route(
        "GET", "/api/snap/snapshots", summary="Snapshots, oldest first, with sizes", tag="snap", returns=list[Snapshot]
    )
    async def snapshots(req: ApiRequest) -> list[dict[str, Any]]:
        return await snap.snapshots()

    @api.route(
        "POST",
        "/api/snap/restore",
        summary="Restore a snapshot into a new directory (returns its job)",
        role="admin",
        body=RestoreBody,
        action="snap.restore",
        tag="snap",
        returns=RestoreJob,
    )
    async def restore(req: ApiRequest) -> dict[str, Any]:
        body: RestoreBody = req.body
        req.audit(f"snap-snapshot:{body.snapshot}")
        job = await snap.restore(body)
        req.audit(f"snap-snapshot:{body.snapshot}", after={"job": job.id, "target": job.target})
        return job.to_dict()

    @api.route(
        "GET", "/api/snap/shadows", summary="Shadow instances started by restores", tag="snap", returns=list[Shadow]
    )
    async def shadows(req: ApiRequest) -> list[dict[str, Any]]:
        return await snap.list_shadows()

    @api.route(
        "DELETE",
        "/api/snap/shadows/{name}",
        summary="Stop a shadow instance",
        role="admin",
        action="snap.shadow.stop",
        tag="snap",
        returns=Shadow,
    )
    async def shadow_stop(req: ApiRequest) -> dict[str, Any]:
        req.audit(f"service:{req.match['name']}")
        before = await snap.stop_shadow(req.match["name"])
        req.audit(f"service:{req.match['name']}", before=before)
        return before

    @api.route(
        "POST",
        "/api/snap/scrub",
        summary="Verify packs and blobs (a sample, or all)",
        role="admin",
        body=ScrubBody,
        action="snap.scrub",
        tag="snap",
        returns=ScrubJob,
    )
    async def scrub(req: ApiRequest) -> dict[str, Any]:
        body: ScrubBody = req.body
        req.audit("snap-repository")
        return (await snap.start_scrub(1.0 if body.all else body.fraction)).to_dict()

    @api.route(
        "POST",
        "/api/snap/forget",
        summary="Apply each plan's retention to its snapshots",
        role="admin",
        body=ForgetBody,
        action="snap.forget",
        tag="snap",
        returns=ForgetJob,
    )
    async def forget(req: ApiRequest) -> dict[str, Any]:
        req.audit("snap-repository", after={"dry_run": req.body.dry_run})
        return (await snap.start_forget(req.body.dry_run)).to_dict()

    @api.route(
        "POST",
        "/api/snap/prune",
        summary="Delete data no snapshot references",
        role="admin",
        action="snap.prune",
        tag="snap",
        returns=PruneJob,
    )
    async def prune(req: ApiRequest) -> dict[str, Any]:
        req.audit("snap-repository")
        return (await snap.start_prune()).to_dict()
