"""Response models of the snap routes (console_api/routes_snap.py), for the OpenAPI document: plans,
runs, snapshots, shadows, and jobs typed by kind (each kind's progress and result)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from console_api.schemas import Out, Timestamp


def _absent_if_none(v: Any) -> bool:
    return v is None


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # openapi-typescript would type a field with a default as always present


# A key the handler leaves out rather than sending null: optional in the document (see console_api/openapi.py).
def _omitted(description: str) -> Any:
    return Field(default=None, exclude_if=_absent_if_none, description=description, json_schema_extra=_no_default)


class SnapPlan(Out):
    id: int
    name: str
    paths: list[str]
    excludes: list[str]
    cron: str | None = Field(description="None: run only on demand")
    keep_last: int
    keep_daily: int
    keep_weekly: int
    keep_monthly: int
    pre_hook: str | None
    post_hook: str | None
    rate_limit_mb_s: float | None
    service: str | None = Field(description="the service a restore with `shadow` starts a copy of")
    enabled: bool
    created_at: Timestamp
    updated_at: Timestamp
    last_run_at: Timestamp | None


class SnapPlanScheduled(SnapPlan):
    next_runs: list[Timestamp] = Field(description="the next 3 fire times (empty without a cron)")


class BackupStats(Out):
    files: int
    dirs: int
    bytes: int = Field(description="bytes of file contents covered (read, or reused from the parent)")
    read_bytes: int
    new_bytes: int = Field(description="plaintext bytes of chunks the repository did not have")
    stored_bytes: int = Field(description="bytes added to packs (compressed, sealed)")
    unchanged_files: int
    errors: list[str] = Field(description="paths that could not be backed up (the first 100)")
    error_count: int
    duration_s: float


class SnapRun(Out):
    id: int
    plan: str
    trigger: Literal["manual", "schedule"]
    started_at: Timestamp
    finished_at: Timestamp | None
    state: Literal["running", "done", "failed", "interrupted"]
    snapshot: str | None
    stats: BackupStats | None
    error: str | None


class Snapshot(Out):
    id: str
    time: Timestamp
    plan: str
    paths: list[str]
    hostname: str
    parent: str | None
    stats: BackupStats


class Shadow(Out):
    name: str
    healthy: bool
    status: str
    reason: str
    endpoints: list[str]
    service: str
    snapshot: str
    target: str
    url: str | None


# --- jobs -----------------------------------------------------------------------------------------


class JobError(Out):
    code: str
    message: str
    details: dict[str, Any] | None = _omitted("absent when the job was stopped or crashed")


class NoProgress(Out):
    """`{}`: before the first progress line, and for jobs that report none (scrub, forget, prune)."""


class BackupProgress(Out):
    files: int
    dirs: int
    bytes: int
    read_bytes: int
    new_bytes: int
    stored_bytes: int
    unchanged_files: int
    errors: list[str] = Field(description="the first 50")
    error_count: int
    current: str = Field(description="the path being read")
    started: Timestamp
    expected_bytes: int = Field(description="the parent snapshot's size, for a progress bar (0: unknown)")


class DamagedFile(Out):
    path: str
    error: str


class RestoreProgress(Out):
    snapshot: str
    target: str
    files: int
    dirs: int
    symlinks: int
    bytes: int
    skipped: int = Field(description="sockets and devices, not restorable")
    damaged: list[DamagedFile]
    ok: bool


class RestoreResult(RestoreProgress):
    shadow: Shadow | None = _omitted("the shadow instance, when the restore asked for one")


class BackupResult(Out):
    snapshot: Snapshot
    forgotten: list[str] = Field(description="snapshots of the plan its retention removed")


class DamagedPack(Out):
    pack: str
    error: str


class DamagedBlob(Out):
    blob: str
    pack: str
    error: str


class AffectedSnapshot(Out):
    snapshot: str
    time: Timestamp
    plan: str
    paths: list[str] = Field(description="damaged files; `(manifest)` when the snapshot's tree itself is")


class UnreadableSnapshot(Out):
    snapshot: str
    error: str


class ScrubReport(Out):
    packs_checked: int
    packs_total: int
    blobs_checked: int
    bytes_checked: int
    damaged_packs: list[DamagedPack]
    damaged_blobs: list[DamagedBlob]
    missing_blobs: list[str]
    affected: list[AffectedSnapshot]
    unreadable_snapshots: list[UnreadableSnapshot]
    damaged_index_files: list[str]
    ok: bool


class ForgetDecision(Out):
    snapshot: str
    plan: str
    time: Timestamp
    keep: bool
    reasons: list[str] = Field(description="the retention rules that keep it (e.g. daily)")


class PruneReport(Out):
    packs_before: int
    packs_deleted: int
    packs_repacked: int
    packs_written: int
    blobs_dropped: int
    bytes_freed: int
    dry_run: bool


class _Job(Out):
    id: str
    state: Literal["running", "done", "failed"]
    started_at: Timestamp
    finished_at: Timestamp | None
    error: JobError | None


class BackupJob(_Job):
    kind: Literal["backup"]
    progress: BackupProgress | NoProgress
    result: BackupResult | None
    target: None


class RestoreJob(_Job):
    kind: Literal["restore"]
    progress: RestoreProgress | NoProgress
    result: RestoreResult | None
    target: str = Field(description="the directory restored into")


class ScrubJob(_Job):
    kind: Literal["scrub"]
    progress: NoProgress
    result: ScrubReport | None
    target: None


class ForgetJob(_Job):
    kind: Literal["forget"]
    progress: NoProgress
    result: list[ForgetDecision] | None
    target: None


class PruneJob(_Job):
    kind: Literal["prune"]
    progress: NoProgress
    result: PruneReport | None
    target: None


SnapJob = Annotated[BackupJob | RestoreJob | ScrubJob | ForgetJob | PruneJob, Field(discriminator="kind")]


class SnapStatus(Out):
    repository: str | None
    encryption: Literal["none", "aes-256-gcm"] | None
    running: list[str] = Field(description="plans whose backup is running")
    jobs: list[SnapJob] = Field(description="the running jobs")
    checked_at: Timestamp
