"""The snap service in-process with a real state DB and bus: a cron plan fires on schedule and publishes
`snap.started`/`snap.done`; retention runs after each backup; hooks; one run per plan at a time; the
event loop keeps ticking while a backup hashes and compresses."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from core.bus import EventBus
from core.clock import ManualClock
from core.errors import Conflict
from core.schema import CORE_MIGRATIONS
from core.store import Store
from snap.config import PlanBody, RestoreBody, SnapConfig
from snap.service import SnapService
from tests.snap.helpers import digest, make_tree


@pytest.fixture
async def kernel(tmp_path: Path) -> AsyncIterator[tuple[Store, EventBus]]:
    store = Store(tmp_path / "state.db")
    await store.open()
    await store.migrate("core", CORE_MIGRATIONS)
    bus = EventBus(store)
    await bus.start()
    yield store, bus
    bus.close()
    await store.close()


@pytest.fixture
async def service(tmp_path: Path, kernel: tuple[Store, EventBus]) -> AsyncIterator[SnapService]:
    store, bus = kernel
    clock = ManualClock(1_700_000_000.0)  # 2023-11-14T22:13:20Z
    svc = SnapService(
        SnapConfig(check_every_s=1.0, restore_root=tmp_path / "restore"), tmp_path / "data", store, bus, clock=clock
    )
    (tmp_path / "data").mkdir()
    await svc.start()
    yield svc
    await svc.stop(10)


async def _events(bus: EventBus, types: list[str], n: int, timeout_s: float = 60) -> list[Any]:
    out = []
    async with bus.subscribe(after_id=0, types=types) as sub:
        async with asyncio.timeout(timeout_s):
            async for ev in sub:
                out.append(ev)
                if len(out) >= n:
                    return out
    return out


def _src(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    make_tree(src, large_mib=2)
    return src


async def test_cron_plan_fires_and_publishes_done(tmp_path: Path, service: SnapService) -> None:
    src = _src(tmp_path)
    await service.add_plan(PlanBody(name="app-daily", paths=[str(src)], cron="0 3 * * *"))
    plans = await service.list_plans()
    assert plans[0]["next_runs"][0] == 1_700_017_200.0  # 2023-11-15T03:00:00Z
    await asyncio.sleep(1.5)
    assert await service.runs() == []  # not due yet
    service.clock.advance(5 * 3600)  # type: ignore[attr-defined]
    started, done = await _events(service.bus, ["snap.started", "snap.done"], 2)
    assert started.type == "snap.started" and started.data["trigger"] == "schedule"
    assert done.type == "snap.done" and done.data["plan"] == "app-daily" and done.data["files"] >= 8
    assert done.data["new_bytes"] > 0 and done.data["errors"] == 0
    (run,) = await service.runs()
    assert run["state"] == "done" and run["snapshot"] == done.data["snapshot"]
    job = service.job(f"run-{run['id']}")
    await job.done.wait()
    # restore through the service into its default directory <restore_root>/<plan>-<time>
    rjob = await service.restore(RestoreBody(snapshot=run["snapshot"][:10]))
    await rjob.done.wait()
    assert rjob.state == "done", rjob.error
    target = Path(rjob.result["target"])
    assert rjob.target == str(target)
    assert target.parent == tmp_path / "restore" and target.name.startswith("app-daily-")
    assert digest(target / str(src).lstrip("/")) == digest(src)


async def test_retention_after_each_run_and_one_run_per_plan(tmp_path: Path, service: SnapService) -> None:
    src = _src(tmp_path)
    await service.add_plan(
        PlanBody(name="p", paths=[str(src)], keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    )
    for i in range(2):
        (src / f"new-{i}").write_bytes(os.urandom(1000))
        job = await service.run_plan("p")
        with pytest.raises(Conflict, match="already running"):
            await service.run_plan("p")
        await job.done.wait()
        assert job.state == "done", job.error
        service.clock.advance(60)  # type: ignore[attr-defined]
    snaps = await service.snapshots()
    assert len(snaps) == 1 and snaps[0]["id"] == job.result["snapshot"]["id"]
    assert job.progress == {} or job.progress["files"] >= 8, job.progress  # progress comes twice a second
    assert len(job.result["forgotten"]) == 1


async def test_failing_pre_hook_fails_the_run_and_post_hook_still_runs(tmp_path: Path, service: SnapService) -> None:
    src = _src(tmp_path)
    marker = tmp_path / "post-ran"
    await service.add_plan(
        PlanBody(
            name="hooked",
            paths=[str(src)],
            pre_hook="sh -c 'echo flushing failed; exit 3'",
            post_hook=f"touch {marker}",
        )
    )
    job = await service.run_plan("hooked")
    await job.done.wait()
    assert job.state == "failed"
    assert job.error is not None
    assert "pre hook of plan 'hooked' exited with 3: flushing failed" in job.error["message"]
    assert marker.exists()
    (failed,) = await _events(service.bus, ["snap.failed"], 1)
    assert failed.data["plan"] == "hooked"
    assert await service.snapshots() == []
    (run,) = await service.runs()
    assert run["state"] == "failed" and "exited with 3" in run["error"]


async def test_loop_keeps_ticking_during_a_backup(tmp_path: Path, service: SnapService) -> None:
    src = tmp_path / "big"
    src.mkdir()
    for i in range(6):
        (src / f"f{i}").write_bytes(os.urandom(8 * 1024 * 1024))  # incompressible: the most work per byte

    async def lags(duration_s: float | None, until: asyncio.Event | None = None) -> list[float]:
        out: list[float] = []
        end = time.monotonic() + (duration_s or 1e9)
        while time.monotonic() < end and not (until and until.is_set()):
            t = time.monotonic()
            await asyncio.sleep(0.005)
            out.append(time.monotonic() - t - 0.005)
        return out

    def p99(xs: list[float]) -> float:
        return sorted(xs)[int(len(xs) * 0.99) - 1]

    base = await lags(1.5)
    await service.add_plan(PlanBody(name="big", paths=[str(src)]))
    t0 = time.monotonic()
    job = await service.run_plan("big")
    during = await lags(None, job.done)
    took = time.monotonic() - t0
    assert job.state == "done", job.error
    assert len(during) >= 20, f"only {len(during)} lag samples while the {took:.2f} s backup ran"
    # The backup runs in a child process; the loop only reads its progress lines. A backup on the loop
    # (or holding its GIL) stalls it for most of the job's wall time (48 MiB hashed and compressed):
    # the lag past 50 ms adds up to nearly `took`. Measured against the job's own duration, so a slow
    # machine slows both; one or two scheduler hiccups (CI logs show test steps of 400 ms on a loaded
    # runner) stay far under half of it. (A single `max(during) < 0.25` failed on such a hiccup.)
    stalled = sum(lag - 0.05 for lag in during if lag > 0.05)
    print("loop lag p99 base", p99(base), "during", p99(during), "max", max(during), "stalled", stalled, "of", took)
    assert stalled < 0.4 * took, (stalled, took, sorted(during)[-5:])
    assert sum(lag > 0.1 for lag in during) <= 3, sorted(during)[-5:]
    # Against the baseline, a count with a floor rather than a p99: on a fast run (a few hundred samples)
    # three scheduler hiccups of 60 ms were the p99. The bound is loose because this machine's other
    # tenants move the baseline.
    bound = max(3 * p99(base), 0.05)
    over = sum(lag > bound for lag in during)
    assert over <= max(3, len(during) // 100), (over, len(during), bound, sorted(during)[-5:])


async def test_stop_during_a_backup_interrupts_it_and_the_next_run_reuses(
    tmp_path: Path, kernel: tuple[Store, EventBus]
) -> None:
    store, bus = kernel
    src = tmp_path / "slow"
    src.mkdir()
    for i in range(4):
        (src / f"f{i}").write_bytes(os.urandom(6 * 1024 * 1024))
    (tmp_path / "data").mkdir()
    cfg = SnapConfig(check_every_s=1.0)
    svc = SnapService(cfg, tmp_path / "data", store, bus)
    await svc.start()
    await svc.add_plan(PlanBody(name="slow", paths=[str(src)], rate_limit_mb_s=6))  # ~4 s
    job = await svc.run_plan("slow")
    deadline = time.monotonic() + 60
    while job.progress.get("stored_bytes", 0) < 10 * 1024 * 1024:  # two packs written, at least
        assert time.monotonic() < deadline and job.state == "running", job.to_dict()
        await asyncio.sleep(0.1)
    await svc.stop(20)
    assert job.state == "failed" and job.error is not None and job.error["code"] == "cancelled"
    (run,) = await svc.plans.runs()
    assert run["state"] == "interrupted"

    svc = SnapService(cfg, tmp_path / "data", store, bus)
    await svc.start()
    try:
        await svc.add_plan(PlanBody(name="again", paths=[str(src)]))
        job = await svc.run_plan("again")
        await job.done.wait()
        assert job.state == "done", job.error
        stats = job.result["snapshot"]["stats"]
        assert stats["new_bytes"] <= 24 * 1024 * 1024 - 8 * 1024 * 1024, stats  # what the first run wrote is reused
    finally:
        await svc.stop(10)


async def test_a_run_refused_by_the_lock_is_due_again(tmp_path: Path, service: SnapService) -> None:
    import json as _json
    import socket

    src = _src(tmp_path)
    await service.add_plan(PlanBody(name="p", paths=[str(src)], cron="0 3 * * *"))
    lock = service._repo().write_file(
        "locks",
        _json.dumps(  # a prune of another process holds the repository
            {
                "kind": "exclusive",
                "pid": os.getppid(),
                "hostname": socket.gethostname(),
                "time": time.time(),
                "op": "prune",
            }
        ).encode(),
    )
    job = await service.run_plan("p")
    await job.done.wait()
    assert job.state == "failed" and job.error is not None and job.error["code"] == "snap_locked"
    assert "locked by prune" in job.error["message"]
    (plan,) = await service.plans.list()
    assert plan["last_run_at"] is None  # so the scheduler tries again at its next pass
    lock.unlink()
    job = await service.run_plan("p")
    await job.done.wait()
    assert job.state == "done", job.error
