"""Fixtures for orch tests: runtimes to run the conformance suite against, and polling helpers."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from orch.cgroups import CgroupDriver, Mounts, RlimitDriver, detect
from orch.logfiles import FileLogSink
from orch.process import ProcessRuntime
from orch.runtime import InstanceConfig
from tests.orch.dockerenv import FULL_IMAGE, docker_problem, in_container, remove_owned, systemd_container

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
    """One runtime as the conformance suite sees it. A runtime plugs in by adding a factory to `RUNTIMES`;
    its `config` maps argv to what it needs (e.g. an image plus the command). The programs the suite runs
    are POSIX `sh` scripts with `sleep`, `head`, `tr`, which the host and the test image both have.

    `fresh()` is the same runtime as a restarted platform would build it (new object, new log sink);
    `host_pids` says whether pids the instance reports are the host's (not inside a pid namespace);
    `enforces_memory` whether a memory limit is enforced here; `leftovers(inst)` names what of a removed
    instance still exists (empty when removal was clean)."""

    name: str
    runtime: Any
    logs_dir: Path
    sink: FileLogSink
    service: str = "svc"
    extra: dict[str, Any] = field(default_factory=dict)
    host_pids: bool = True
    enforces_memory: bool = False
    make: Callable[[Path], Any] | None = None
    leftovers: Callable[[Any], Any] | None = None
    separate_streams: bool = True  # the journal does not record whether a line was stdout or stderr
    reports_oom: bool = True  # systemd on cgroup v1 sees an OOM kill as a plain SIGKILL
    pidns_note: str = ""  # why the instance's pids are not the host's
    _others: list[Any] = field(default_factory=list)

    def config(self, argv: list[str], **kw: Any) -> InstanceConfig:
        if kw.get("workdir") and hasattr(self, "prepare_workdir"):
            self.prepare_workdir(kw["workdir"])  # the instance runs on another file system (a container)
        kw.setdefault("service", self.service)
        kw.setdefault("index", 1)
        kw.setdefault("stop_timeout_s", 5.0)
        return InstanceConfig(argv=tuple(argv), **{**self.extra, **kw})

    def output(self, service: str | None = None) -> str:
        return read_logs(self.logs_dir, service or self.service)

    def fresh(self, logs_dir: Path) -> Any:
        assert self.make is not None
        rt = self.make(logs_dir)
        self._others.append(rt)
        return rt


def read_logs(logs_dir: Path, service: str) -> str:
    d = logs_dir / service
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
    def make(logs: Path) -> ProcessRuntime:
        return ProcessRuntime(FileLogSink(logs), cgroup_driver(), output_dir=tmp / "out")

    def leftovers(inst: Any) -> list[str]:
        return [str(d) for d in inst.cgroup.dirs.values() if d.exists()] if inst.cgroup is not None else []

    sink = FileLogSink(tmp / "logs")
    driver = cgroup_driver()
    return RuntimeUnderTest(
        "process",
        ProcessRuntime(sink, driver, output_dir=tmp / "out"),
        tmp / "logs",
        sink,
        make=make,
        enforces_memory=driver.kind != "rlimit" and driver.enforces_memory,
        leftovers=leftovers,
    )


def _docker(tmp: Path) -> RuntimeUnderTest:
    from orch.docker import DockerRuntime

    why = docker_problem()
    if why:
        pytest.skip(f"docker runtime: {why}")
    owner = f"test-{secrets.token_hex(4)}"  # this test's containers only: cleaned up by owner label

    def make(logs: Path) -> DockerRuntime:
        return DockerRuntime(FileLogSink(logs), prefix="infracore-test", owner=owner)

    async def leftovers(inst: Any) -> list[str]:
        from aiodocker.exceptions import DockerError

        try:
            await inst_runtime.docker.containers.container(inst.container_id).show()
        except DockerError as e:
            if e.status == 404:
                return []
            raise
        return [f"container {inst.name}"]

    sink = FileLogSink(tmp / "logs")
    inst_runtime = DockerRuntime(sink, prefix="infracore-test", owner=owner)
    return RuntimeUnderTest(
        "docker",
        inst_runtime,
        tmp / "logs",
        sink,
        service=f"c{secrets.token_hex(3)}",
        extra={"image": FULL_IMAGE, "runtime": "docker"},
        host_pids=False,
        enforces_memory=True,
        pidns_note="a container has its own pid namespace, which the kernel empties when its "
        "init ends (Init: true; stop kills init)",
        make=make,
        leftovers=leftovers,
    )


def _systemd(tmp: Path) -> RuntimeUnderTest:
    from orch.systemd import SystemdRuntime

    name, why = systemd_container()
    if name is None:
        pytest.skip(f"systemd runtime: {why}")
    cid = name
    prefix = f"infracore-t{secrets.token_hex(3)}"

    def make(logs: Path) -> SystemdRuntime:
        return SystemdRuntime(
            FileLogSink(logs),
            prefix=prefix,
            command_prefix=["docker", "exec", "-i", cid],
            poll_s=0.3,
            cgroup_root="",
        )  # cgroupns=host: its ControlGroup paths are the host's

    def leftovers(inst: Any) -> list[str]:
        rc, _ = in_container(cid, ["test", "-e", f"/etc/systemd/system/{inst.unit}"])
        return [inst.unit] if rc == 0 else []

    sink = FileLogSink(tmp / "logs")
    rt = make(tmp / "logs")
    rt.log_sink = sink
    r = RuntimeUnderTest(
        "systemd",
        rt,
        tmp / "logs",
        sink,
        service=f"u{secrets.token_hex(3)}",
        host_pids=False,
        enforces_memory=True,
        make=make,
        leftovers=leftovers,
        separate_streams=False,
        reports_oom="memory" not in Mounts.read().v1,
        pidns_note="the test's systemd runs in a container's pid namespace; systemd itself ends "
        "a unit's whole cgroup (KillMode=control-group)",
    )
    r.prepare_workdir = lambda path: in_container(cid, ["mkdir", "-p", path])  # type: ignore[attr-defined]
    return r


# Every runtime the conformance suite runs against.
RUNTIMES: dict[str, Callable[[Path], RuntimeUnderTest]] = {"process": _process, "docker": _docker, "systemd": _systemd}


@pytest.fixture(params=sorted(RUNTIMES))
async def rt(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RuntimeUnderTest]:
    r = RUNTIMES[request.param](tmp_path)
    yield r
    r.sink.close()
    for other in [r.runtime, *r._others]:
        if getattr(other, "name", "") == "systemd":
            for inst in list(other._watched.values()):
                await other.remove(inst)
        owner = getattr(other, "owner", None)
        if owner:
            await remove_owned(other, owner)
        if hasattr(other, "close"):
            await other.close()
