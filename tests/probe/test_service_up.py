"""Probe over a real orch (real child processes, their cgroups where the host has them, real SQLite):
`service_up{service}` stays reported as 0 when a service is stopped or OOM-killed, a "service down" rule
fires on it, a removed service stops being reported; and a service's disk writes reach its I/O series."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from core.bus import EventBus
from core.ports import EndpointBoard
from core.schema import CORE_MIGRATIONS
from core.store import Store
from orch.cgroups import CgroupDriver, RlimitDriver, detect
from orch.config import OrchSettings
from orch.service import OrchService
from probe.config import AlertRuleBody, ProbeConfig
from probe.service import ProbeService

PY = sys.executable
# Waits for its trigger file, then allocates past its 64 MiB limit (the kernel's OOM killer ends it).
HOG = """import os, time
while not os.path.exists({trigger!r}):
    time.sleep(0.05)
x = [bytearray(8 << 20) for _ in range(40)]
time.sleep(60)
"""
SLEEP = "import time; time.sleep(600)"
# A parent that forks a child writing 1 MiB a round, synced, until killed: the writes are the child's.
WRITER = """import os, time
if os.fork() == 0:
    with open({path!r}, "wb") as f:
        while True:
            f.write(os.urandom(1 << 20)); f.flush(); os.fsync(f.fileno()); time.sleep(0.1)
time.sleep(600)
"""


async def until(pred: Callable[[], Awaitable[Any] | Any], timeout: float = 20.0, what: str = "") -> Any:  # noqa: ASYNC109
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        v = pred()
        v = await v if asyncio.iscoroutine(v) else v
        if v:
            return v
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout}s: {what} (last: {v!r})")
        await asyncio.sleep(0.05)


def latest(svc: ProbeService, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(labels.items())): v for (n, _), (labels, v) in svc.latest.items() if n == name}


class Stack:
    def __init__(self, orch: OrchService, probe: ProbeService, bus: EventBus, driver: CgroupDriver) -> None:
        self.orch, self.probe, self.bus, self.driver = orch, probe, bus, driver


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    store = Store(tmp_path / "state.db", synchronous="NORMAL")
    await store.open()
    await store.migrate("core", CORE_MIGRATIONS)
    bus = EventBus(store)
    await bus.start()
    driver = (
        detect("auto", group=f"infracore-probe-test-{os.getpid()}") if os.geteuid() == 0 else RlimitDriver("not root")
    )
    orch = OrchService(
        OrchSettings(backoff_initial_s=0.1, backoff_max_s=0.4),
        data_dir=tmp_path / "data",
        store=store,
        bus=bus,
        endpoints=EndpointBoard(),
        cgroups=driver,
    )
    await orch.start()
    # Not enabled: the test ticks it by hand, so it knows what each tick saw.
    probe = ProbeService(ProbeConfig(enabled=False, interval_s=0.5), tmp_path, store, bus, inventory=lambda: orch)
    await probe.start()
    try:
        yield Stack(orch, probe, bus, driver)
    finally:
        await probe.stop(5)
        await orch.stop(20)
        driver.cleanup()
        bus.close()
        await store.close()


async def test_service_up_goes_to_zero_when_stopped_or_oom_killed_and_ends_when_removed(
    stack: Stack, tmp_path: Path
) -> None:
    o, probe = stack.orch, stack.probe
    trigger = tmp_path / "oom-now"
    oom_for_real = stack.driver.kind != "rlimit" and getattr(stack.driver, "enforces_memory", False)
    await o.apply(
        {
            "name": "hog",
            "cmd": [PY, "-c", HOG.format(trigger=str(trigger))],
            "restart_policy": "no",
            **({"resources": {"memory": "64Mi"}} if oom_for_real else {}),
        },
        "hog.yaml",
    )
    await o.apply({"name": "steady", "cmd": [PY, "-c", SLEEP], "restart_policy": "no"}, "steady.yaml")
    await until(lambda: all(o.describe(n)["status"] == "running" for n in ("hog", "steady")), what="both running")
    await probe.tick()
    up = latest(probe, "service_up")
    assert up[(("service", "hog"),)] == 1.0 and up[(("service", "steady"),)] == 1.0, up
    assert latest(probe, "service_healthy_instances")[(("service", "steady"),)] == 1.0
    assert latest(probe, "service_instance_up")[(("instance", "steady-1"), ("service", "steady"))] == 1.0

    sub = stack.bus.subscribe(types=["alert.triggered", "alert.resolved"])
    try:
        await probe.add_rule(
            AlertRuleBody.model_validate(
                {
                    "name": "steady down",
                    "metric": "service_up",
                    "labels": {"service": "steady"},
                    "op": "<",
                    "threshold": 1,
                }
            )
        )
        await o.stop_service("steady", wait_s=20)
        await probe.tick()
        up = latest(probe, "service_up")
        assert up.get((("service", "steady"),)) == 0.0, up  # reported as down, not missing
        assert up[(("service", "hog"),)] == 1.0
        ev = await asyncio.wait_for(sub.__anext__(), 10)
        assert ev.type == "alert.triggered" and ev.data["labels"] == {"service": "steady"}
        assert ev.data["value"] == 0.0 and ev.data["reason"] == "threshold"

        # Killed by the kernel's OOM killer (or, on a host without a memory cgroup, by SIGKILL: the same
        # exit as far as orch and probe can tell); restart_policy "no" leaves it down.
        if oom_for_real:
            trigger.touch()
        else:
            os.kill(o.describe("hog")["instances"][0]["pid"], signal.SIGKILL)
        await until(lambda: o.describe("hog")["status"] not in ("running", "starting"), what="hog down")
        if oom_for_real:
            assert o.describe("hog")["last_exit"]["oom_killed"], o.describe("hog")["last_exit"]
        await asyncio.sleep(1.05)  # a second of its own in metrics.db (points are per whole second)
        await probe.tick()
        assert latest(probe, "service_up")[(("service", "hog"),)] == 0.0
        assert latest(probe, "service_healthy_instances")[(("service", "hog"),)] == 0.0
        # stored, not only exposed (a tick stores at round(now), so the query reaches past now)
        q = await probe.query("service_up", {"service": "hog"}, probe.clock.now() - 60, probe.clock.now() + 2, 1)
        assert [p[1] for p in q["series"][0]["points"] if p[1] is not None][-1] == 0.0
        assert 'service_up{service="hog"} 0' in probe.exposition()

        # Removed: no longer a known service, so no longer reported; its alert resolves for want of data.
        await o.delete("steady")
        await probe.tick()
        assert (("service", "steady"),) not in latest(probe, "service_up")
        assert 'service_up{service="steady"}' not in probe.exposition()
        await asyncio.sleep(1.1)  # two of its 0.5 s intervals without a sample
        await probe.tick()
        ev = await asyncio.wait_for(sub.__anext__(), 10)
        assert ev.type == "alert.resolved" and ev.data["reason"] == "no data" and ev.data["value"] is None
    finally:
        sub.close()


async def test_a_services_disk_writes_show_in_its_io_series(stack: Stack, tmp_path: Path) -> None:
    """Through orch as deployed: the instance runs in its own cgroup where the host allows (no io.stat on
    cgroup v1, nor on v2 without the io controller), and the writes are a child process's."""
    o, probe = stack.orch, stack.probe
    out = tmp_path / "written.bin"
    await o.apply(
        {"name": "writer", "cmd": [PY, "-c", WRITER.format(path=str(out))], "restart_policy": "no"}, "writer.yaml"
    )
    await until(lambda: o.describe("writer")["status"] == "running", what="writer running")
    key = (("instance", "writer-1"), ("service", "writer"))

    async def writing() -> float:
        await asyncio.sleep(0.3)
        await probe.tick()
        return latest(probe, "service_io_write_bytes_per_second").get(key, 0.0) > 256 * 1024

    await until(writing, 20, "writer's service_io_write_bytes_per_second above 256 KiB/s")
    assert key in latest(probe, "service_io_read_bytes_per_second")
    # A native process shares the host's network namespace: no per-service network series is made up.
    assert key not in latest(probe, "service_net_rx_bytes_per_second")
    sm = await probe.service_metrics("writer", probe.clock.now() - 60, probe.clock.now() + 2, 1)
    assert "service_io_write_bytes_per_second" in sm["metrics"] and "service_up" in sm["metrics"]
    await o.stop_service("writer", wait_s=20)
