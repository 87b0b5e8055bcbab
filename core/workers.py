"""Bounded worker pools: where CPU-heavy work (password hashing, YAML parsing and validation) runs so
the one event loop every site shares never stalls on it.

Theory of operation: a pool has a fixed number of workers and a bounded backlog. `submit()` either
takes a slot at once or raises `PoolBusy` at once — it never waits for room and never queues without
bound — so callers turn a full pool into a 503/429 with `Retry-After` (back-pressure). A slot is held
until the job has really finished in its worker (or was cancelled before it started), not merely
until the awaiting task gave up, so the bound holds even when clients disconnect.

Threads or processes (measured, docs/adr/worker-pools.md): processes. PyYAML — its C loader and
the pure-Python one alike — holds the GIL for whole compose/construct steps: in a thread the loop still
stalled 1.2-2.1 s on a 400 KB document, with a child process 0.2 s. bcrypt releases the GIL while it
hashes, yet a thread must take the GIL back to return, and on a busy host the loop then waits for it:
12 round-12 checks on 1-2 threads stalled the loop up to 44-146 ms, in 1-2 processes up to 6-12 ms.
Workers run at a lower CPU priority (`nice`) and number one per core but one, so the loop keeps a core.
Processes are started with `spawn` (no inherited locks or listening sockets).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import structlog

from core.errors import Unavailable

log = structlog.get_logger("core.workers")

T = TypeVar("T")
Kind = Literal["thread", "process"]


def default_workers() -> int:
    """Leave one core to the event loop: CPU-heavy workers on every core would starve it of CPU time
    (measured: with 2 bcrypt threads on a 2-core host, probes to other sites took up to 57 ms)."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def lower_priority(nice: int) -> None:
    """Run in each worker as it starts: lower its CPU priority (a thread's own on Linux, where
    `setpriority` takes a thread id), so the loop thread wins the CPU whenever both want it."""
    if nice <= 0:
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except (OSError, AttributeError):  # not permitted or not Linux: run at normal priority
        pass


def _init_process(nice: int, parent: int) -> None:
    """A worker process's start: lower priority, and exit when the server is gone — after a kill -9 its
    pipes stay open (every worker holds both ends of the job queue), so nothing else would end it."""
    lower_priority(nice)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def preload(*modules: str) -> None:
    """A warm-up job for a process pool: import what its jobs will need, before the first one comes."""
    for name in modules:
        importlib.import_module(name)


class PoolBusy(Unavailable):
    """Every worker is busy and the backlog is full: answer 503 with `Retry-After`, try later."""

    code = "busy"

    def __init__(self, pool: str, capacity: int, retry_after_s: float = 1.0) -> None:
        super().__init__(
            f"the server is busy ({pool} workers: {capacity} jobs running or waiting); retry shortly",
            hint="retry after the time in Retry-After",
            details={"pool": pool, "capacity": capacity, "retry_after_s": retry_after_s},
        )
        self.retry_after_s = retry_after_s

    def __reduce__(self) -> tuple[Any, ...]:
        return (PoolBusy, (self.details["pool"], self.details["capacity"], self.retry_after_s))


class PoolStopped(Unavailable):
    """The pool is not running (not started yet, or stopping): the server is shutting down."""

    code = "shutting_down"


class WorkerPool:
    """A named pool of `workers` threads or processes with room for `backlog` waiting jobs.

    Contract: `submit`/`run` are called from the loop thread only. `submit` raises `PoolBusy` (full)
    or `PoolStopped` synchronously and never blocks. Jobs must be plain functions of picklable
    arguments for a process pool; their exceptions are re-raised to the awaiting caller. Cancelling
    the awaiting task cancels a job that has not started; a running job finishes and its result is
    dropped. `start()`/`stop()` are called by the composition root; a pool can also be used without
    `start()` (it starts on first use) but must then be stopped by its owner.
    """

    name: str

    def __init__(
        self, name: str, *, workers: int = 2, backlog: int = 16, kind: Kind = "thread", nice: int = 10
    ) -> None:
        if workers < 1 or backlog < 0:
            raise ValueError("a pool needs at least one worker and a non-negative backlog")
        self.name = name
        self.workers = workers
        self.backlog = backlog
        self.kind = kind
        self.nice = nice
        self.capacity = workers + backlog
        self._executor: concurrent.futures.Executor | None = None
        self._in_use = 0  # jobs submitted and not yet finished (running + waiting)
        self._jobs: set[concurrent.futures.Future[Any]] = set()
        self._lock = threading.Lock()  # `_in_use` is released from worker threads
        self._stopped = False
        self.rejected = 0  # jobs refused because the pool was full (for metrics and tests)

    # --- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._ensure()

    def _ensure(self) -> concurrent.futures.Executor:
        if self._stopped:
            raise PoolStopped(f"the {self.name} worker pool is stopped; the server is shutting down")
        if self._executor is None:
            if self.kind == "process":
                # `spawn`: the parent runs threads (aiosqlite, pumps); forking it would copy their locks.
                self._executor = concurrent.futures.ProcessPoolExecutor(
                    self.workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_init_process,
                    initargs=(self.nice, os.getpid()),
                )
            else:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    self.workers,
                    thread_name_prefix=f"pool-{self.name}",
                    initializer=lower_priority,
                    initargs=(self.nice,),
                )
            log.info("worker pool started", pool=self.name, kind=self.kind, workers=self.workers, backlog=self.backlog)
        return self._executor

    async def stop(self, drain_timeout_s: float = 10.0) -> None:
        """Refuse new jobs, drop waiting ones, let running ones finish (bounded), release the workers."""
        self._stopped = True
        ex, self._executor = self._executor, None
        if ex is None:
            return
        ex.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            running = [asyncio.wrap_future(cf) for cf in self._jobs if not cf.done()]
        if running:  # a thread cannot be interrupted: wait for the running jobs' own end, bounded
            await asyncio.wait(running, timeout=drain_timeout_s)
        if self._in_use:
            log.warning("worker pool did not drain in time", pool=self.name, in_use=self._in_use)
        else:
            log.info("worker pool stopped", pool=self.name)

    # --- jobs -----------------------------------------------------------------------------------------

    @property
    def in_use(self) -> int:
        return self._in_use

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Start `fn(*args)` in a worker, or raise `PoolBusy` at once when the pool is full."""
        ex = self._ensure()
        with self._lock:
            if self._in_use >= self.capacity:
                self.rejected += 1
                raise PoolBusy(self.name, self.capacity)
            self._in_use += 1  # reserved before the job exists: no await between check and update
        try:
            cf = ex.submit(fn, *args)
        except BaseException:
            self._release(None)
            raise
        with self._lock:
            self._jobs.add(cf)
        cf.add_done_callback(self._release)
        return asyncio.wrap_future(cf)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`await` the result of `fn(*args)` run in a worker (`PoolBusy` when full)."""
        return await self.submit(fn, *args)

    def _release(self, cf: concurrent.futures.Future[Any] | None) -> None:
        with self._lock:
            self._in_use -= 1
            if cf is not None:
                self._jobs.discard(cf)
