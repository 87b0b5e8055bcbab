"""Fixtures for orch tests: runtimes to run the conformance suite against, and polling helpers."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orch.cgroups import CgroupDriver, RlimitDriver, detect
from orch.logfiles import FileLogSink
from orch.process import ProcessRuntime
from orch.runtime import InstanceConfig

PY = sys.executable


def alive(pid: int) -> bool:
    """True if `pid` runs (a zombie does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return False
    return raw[raw.rfind(")") + 2] not in "ZX"


async def eventually(fn: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05) -> Any:  # noqa: ASYNC109
    """Poll `fn` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {value!r})")
        await asyncio.sleep(interval)


@dataclass
class RuntimeUnderTest:
    """One runtime as the conformance suite sees it. A new runtime (docker, systemd) plugs in by adding a
    factory to `RUNTIMES`; its `config` may map argv to what it needs (e.g. an image plus the command), and
    `has_python` says whether the instance can run `PY` (a busybox image cannot: those tests skip)."""

    name: str
    runtime: Any
    logs_dir: Path
    sink: FileLogSink
    has_python: bool = True

    def need_python(self) -> str:
        if not self.has_python:
            pytest.skip(f"the {self.name} runtime's instances have no Python")
        return PY

    def config(self, argv: list[str], **kw: Any) -> InstanceConfig:
        kw.setdefault("service", "svc")
        kw.setdefault("index", 1)
        kw.setdefault("stop_timeout_s", 5.0)
        return InstanceConfig(argv=tuple(argv), **kw)

    def output(self, service: str = "svc") -> str:
        d = self.logs_dir / service
        return "".join(p.read_text(errors="replace") for p in sorted(d.glob("*.log"))) if d.exists() else ""


_DRIVER: list[CgroupDriver] = []


def cgroup_driver() -> CgroupDriver:
    if not _DRIVER:
        # A group per test session: several sessions may run these tests on one machine at once.
        group = f"infracore-test-{os.getpid()}"
        _DRIVER.append(detect("auto", group=group) if os.geteuid() == 0 else RlimitDriver("not root"))
    return _DRIVER[0]


@pytest.fixture(scope="session", autouse=True)
def _cleanup_test_cgroups() -> Any:
    yield
    if _DRIVER:
        _DRIVER[0].cleanup()


def _process(tmp: Path) -> RuntimeUnderTest:
    sink = FileLogSink(tmp / "logs")
    return RuntimeUnderTest("process", ProcessRuntime(sink, cgroup_driver()), tmp / "logs", sink)


# Every runtime the conformance suite runs against; docker and systemd join here when they exist.
RUNTIMES: dict[str, Callable[[Path], RuntimeUnderTest]] = {"process": _process}


@pytest.fixture(params=sorted(RUNTIMES))
async def rt(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RuntimeUnderTest]:
    r = RUNTIMES[request.param](tmp_path)
    yield r
    r.sink.close()
