"""Worker pools: bounded (a full pool refuses at once, it never queues without bound), slots held until
the job really ends, errors carried back, lower CPU priority, stop refuses new work."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from core.workers import PoolBusy, PoolStopped, WorkerPool, lower_priority
from core.yamlsafe import YamlRefused, load


def _nice_of_this_worker() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


async def test_a_full_pool_refuses_at_once_and_frees_slots_when_jobs_end():
    pool = WorkerPool("t", workers=2, backlog=1)
    release = threading.Event()
    try:
        jobs = [pool.submit(release.wait, 30) for _ in range(3)]  # 2 running + 1 waiting = capacity
        assert pool.in_use == 3
        with pytest.raises(PoolBusy) as info:
            pool.submit(release.wait, 30)
        assert info.value.status == 503 and info.value.retry_after_s == 1.0
        assert info.value.details == {
            "pool": "t",
            "capacity": 3,
            "retry_after_s": 1.0,
            "hint": "retry after the time in Retry-After",
        }
        assert pool.rejected == 1
        release.set()
        assert await asyncio.gather(*jobs) == [True, True, True]
        assert pool.in_use == 0
        assert await pool.run(sum, [1, 2]) == 3
    finally:
        release.set()
        await pool.stop(10)


async def test_a_cancelled_caller_keeps_the_slot_until_the_running_job_ends():
    pool = WorkerPool("t", workers=1, backlog=0)
    release = threading.Event()
    try:
        task = asyncio.ensure_future(pool.run(release.wait, 30))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.in_use == 1  # the thread still runs it: the bound counts real work
        with pytest.raises(PoolBusy):
            pool.submit(int)
        release.set()
        for _ in range(500):
            if not pool.in_use:
                break
            await asyncio.sleep(0.01)
        assert pool.in_use == 0
    finally:
        release.set()
        await pool.stop(10)


async def test_process_pool_runs_jobs_and_carries_errors_back():
    pool = WorkerPool("p", workers=1, backlog=2, kind="process")
    try:
        assert await pool.run(load, "a: &x [1]\nb: *x\n") == {"a": [1], "b": [1]}
        with pytest.raises(YamlRefused) as e:
            await pool.run(load, "a: [\n")
        assert e.value.line == 2 and "invalid YAML" in e.value.problem
        child_nice = await pool.run(os.nice, 0)
        assert child_nice >= os.nice(0) + 1 or child_nice == 19  # the worker runs at a lower priority
    finally:
        await pool.stop(10)
    with pytest.raises(PoolStopped):
        pool.submit(int)


async def test_thread_workers_run_at_lower_priority_than_the_loop():
    pool = WorkerPool("t", workers=1, backlog=0, nice=5)
    try:
        mine = _nice_of_this_worker()
        theirs = await pool.run(_nice_of_this_worker)
        assert theirs == min(19, mine + 5)
        assert _nice_of_this_worker() == mine  # the loop's thread is untouched
    finally:
        await pool.stop(10)
    lower_priority(0)  # a no-op


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError):
        WorkerPool("x", workers=0)
