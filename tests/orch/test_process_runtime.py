"""Process-runtime specifics: cgroup limits (v1 here, v2 mechanics where mounted, rlimit fallback) and
adoption after a platform restart."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
from pathlib import Path

import pytest

from orch.cgroups import CgroupV2Driver, Mounts, RlimitDriver, detect
from orch.logfiles import FileLogSink
from orch.process import ProcessRuntime, proc_start_ticks
from orch.runtime import InstanceConfig
from tests.orch.conftest import PY, alive, cgroup_driver, eventually

HOG = "print('start', flush=True)\nx = [bytearray(8 << 20) for _ in range(40)]\nprint('survived', flush=True)"


def _cfg(argv: list[str], **kw: object) -> InstanceConfig:
    return InstanceConfig(service="svc", index=1, argv=tuple(argv), **kw)  # type: ignore[arg-type]


def _out(logs: Path) -> str:
    return "".join(p.read_text() for p in sorted((logs / "svc").glob("*.log"))) if (logs / "svc").exists() else ""


@pytest.fixture
def cg_runtime(tmp_path: Path) -> ProcessRuntime:
    driver = cgroup_driver()
    if driver.kind == "rlimit" or not driver.enforces_memory:
        pytest.skip(f"no cgroup memory controller usable here: {driver.warning}")
    return ProcessRuntime(FileLogSink(tmp_path / "logs"), driver)


async def test_memory_limit_kills_and_reports_oom(cg_runtime: ProcessRuntime, tmp_path: Path) -> None:
    inst = await cg_runtime.create(_cfg([PY, "-c", HOG], memory_bytes=64 << 20))
    await cg_runtime.start(inst)
    status = await asyncio.wait_for(cg_runtime.wait(inst), 30)
    assert status.oom_killed and status.failed, status
    assert "OOM" in status.detail
    assert "survived" not in _out(tmp_path / "logs")
    await cg_runtime.remove(inst)


async def test_without_a_limit_the_same_child_survives(cg_runtime: ProcessRuntime, tmp_path: Path) -> None:
    inst = await cg_runtime.create(_cfg([PY, "-c", HOG]))
    await cg_runtime.start(inst)
    status = await asyncio.wait_for(cg_runtime.wait(inst), 30)
    assert status.code == 0 and not status.oom_killed
    await cg_runtime.remove(inst)


async def test_cpu_limit_caps_usage(cg_runtime: ProcessRuntime) -> None:
    if not cg_runtime.cgroups.enforces_cpu:
        pytest.skip("no cpu controller")
    inst = await cg_runtime.create(_cfg([PY, "-c", "while True: pass"], cpu=0.2))
    await cg_runtime.start(inst)
    loop = asyncio.get_running_loop()
    t0, c0 = loop.time(), cg_runtime.stats(inst).cpu_seconds or 0.0
    await asyncio.sleep(1.5)  # measuring a rate over a window: the wait is the measurement
    used = (cg_runtime.stats(inst).cpu_seconds or 0.0) - c0
    elapsed = loop.time() - t0
    await cg_runtime.stop(inst)
    await cg_runtime.remove(inst)
    assert used / elapsed < 0.35, f"used {used:.2f}s of CPU in {elapsed:.2f}s with a 0.2 limit"


async def test_platform_cgroup_is_never_limited_or_joined(cg_runtime: ProcessRuntime) -> None:
    own = Path("/proc/self/cgroup").read_text()
    m = Mounts.read()
    own_limit = m.v1["memory"] / m.own_v1["memory"].strip("/") / "memory.limit_in_bytes" if "memory" in m.v1 else None
    limit_before = own_limit.read_text() if own_limit else None
    inst = await cg_runtime.create(_cfg(["sleep", "30"], memory_bytes=32 << 20, cpu=0.1))
    await cg_runtime.start(inst)
    assert inst.cgroup is not None
    await eventually(lambda: inst.pid in inst.cgroup.pids())
    assert os.getpid() not in inst.cgroup.pids()
    assert Path("/proc/self/cgroup").read_text() == own
    assert (own_limit.read_text() if own_limit else None) == limit_before
    await cg_runtime.stop(inst)
    await cg_runtime.remove(inst)
    assert not any(d.exists() for d in inst.cgroup.dirs.values())


async def test_cgroup_v2_mechanics_where_mounted(tmp_path: Path) -> None:
    """Join, usage and cgroup.kill on the v2 hierarchy, even where it has no memory/cpu controllers."""
    m = Mounts.read()
    if os.geteuid() != 0 or m.v2 is None or not os.access(m.v2, os.W_OK):
        pytest.skip("no writable cgroup2 mount")
    base = m.v2 / f"infracore-test-{secrets.token_hex(3)}"
    base.mkdir()
    try:
        controllers = set((base / "cgroup.subtree_control").read_text().split())
        rt = ProcessRuntime(FileLogSink(tmp_path / "logs"), CgroupV2Driver(base, "/" + base.name, controllers))
        inst = await rt.create(_cfg(["sh", "-c", "sleep 300 & sleep 300"]))
        await rt.start(inst)
        assert inst.cgroup is not None and inst.cgroup.kind == "v2"
        pids = await eventually(lambda: len(inst.cgroup.pids()) == 3 and inst.cgroup.pids())  # sh + 2 sleeps
        assert inst.cgroup.cpu_seconds() is not None
        inst.cgroup.kill_all(signal.SIGKILL)  # cgroup.kill
        status = await asyncio.wait_for(rt.wait(inst), 15)
        assert status.signal == signal.SIGKILL
        await eventually(lambda: not any(alive(p) for p in pids))
        await rt.remove(inst)
    finally:
        for d in sorted(base.glob("*"), reverse=True):
            if d.is_dir():
                (d / "cgroup.kill").write_text("1")
                await eventually(lambda d=d: not (d / "cgroup.procs").read_text().strip())
                d.rmdir()
        base.rmdir()


async def test_rlimit_fallback_bounds_memory(tmp_path: Path) -> None:
    driver = RlimitDriver("test")
    assert "CPU limits are NOT enforced" in driver.warning
    rt = ProcessRuntime(FileLogSink(tmp_path / "logs"), driver)
    inst = await rt.create(_cfg([PY, "-c", HOG], memory_bytes=200 << 20))
    await rt.start(inst)
    status = await asyncio.wait_for(rt.wait(inst), 30)
    assert status.code == 1 and not status.oom_killed
    await eventually(lambda: "MemoryError" in _out(tmp_path / "logs"))


async def test_detect_respects_the_preference() -> None:
    assert detect("none").kind == "rlimit"
    if os.geteuid() == 0 and "memory" in Mounts.read().v1:
        d = detect("v1", group=f"infracore-test-{os.getpid()}-v1")
        assert d.kind == "v1"
        d.cleanup()


async def test_adoption_after_a_platform_restart(tmp_path: Path) -> None:
    first = ProcessRuntime(FileLogSink(tmp_path / "logs1"), cgroup_driver())
    code = "import time\nwhile True:\n    print('tick', flush=True)\n    time.sleep(0.05)"
    cfg = _cfg([PY, "-c", code])
    inst = await first.create(cfg)
    await first.start(inst)
    await eventually(lambda: "tick" in _out(tmp_path / "logs1"))
    record = inst.record()
    assert record["start_ticks"] == proc_start_ticks(record["pid"])
    # A new runtime (the platform after a restart) finds it by pid + start time and takes its output.
    second = ProcessRuntime(FileLogSink(tmp_path / "logs2"), cgroup_driver())
    assert await second.adopt(cfg, {**record, "start_ticks": record["start_ticks"] + 1}) is None
    adopted = await second.adopt(cfg, record)
    assert adopted is not None and adopted.pid == inst.pid and adopted.adopted
    await eventually(lambda: "tick" in _out(tmp_path / "logs2"))
    status = await asyncio.wait_for(second.stop(adopted), 15)
    assert "adopted" in status.detail
    await eventually(lambda: not alive(record["pid"]))
    await asyncio.wait_for(first.wait(inst), 15)
    await second.remove(adopted)


async def test_adopting_a_dead_pid_gives_none(tmp_path: Path) -> None:
    rt = ProcessRuntime(FileLogSink(tmp_path / "logs"), RlimitDriver())
    inst = await rt.create(_cfg(["true"]))
    await rt.start(inst)
    await rt.wait(inst)
    assert await rt.adopt(inst.config, inst.record()) is None


async def test_runs_as_the_configured_user_when_root(tmp_path: Path) -> None:
    import pwd

    if os.geteuid() != 0:
        pytest.skip("needs root to switch users")
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' on this host")
    rt = ProcessRuntime(FileLogSink(tmp_path / "logs"), cgroup_driver())
    inst = await rt.create(_cfg(["sh", "-c", "echo uid=$(id -u)"], user="nobody", memory_bytes=64 << 20))
    await rt.start(inst)
    status = await asyncio.wait_for(rt.wait(inst), 15)
    assert status.code == 0, _out(tmp_path / "logs")
    await eventually(lambda: f"uid={nobody.pw_uid}" in _out(tmp_path / "logs"))
    await rt.remove(inst)
    bad = await rt.create(_cfg(["true"], user="no-such-user-xyz"))
    with pytest.raises(Exception, match="does not exist"):
        await rt.start(bad)
    await rt.remove(bad)


async def test_config_files_are_written_before_start(tmp_path: Path) -> None:
    rt = ProcessRuntime(FileLogSink(tmp_path / "logs"), RlimitDriver())
    cfg = _cfg(["cat", "conf/app.ini"], workdir=str(tmp_path), config_files=(("conf/app.ini", "port=8080\n", 0o600),))
    inst = await rt.create(cfg)
    await rt.start(inst)
    assert (await asyncio.wait_for(rt.wait(inst), 15)).code == 0
    assert (tmp_path / "conf/app.ini").stat().st_mode & 0o777 == 0o600
    await eventually(lambda: "port=8080" in _out(tmp_path / "logs"))


def test_v2_limits_are_written_as_the_kernel_expects(tmp_path: Path) -> None:
    """This machine's cgroup2 has no memory/cpu controllers, so the files a v2 host would have are faked
    with plain files in tmp_path (the kernel interface is the only thing faked): detection must prefer v2,
    enable the controllers for orch's group, and write memory.max / memory.swap.max / cpu.max."""
    from orch.cgroups import CgroupV1Driver

    root = tmp_path / "cg2"
    (root / "system.slice").mkdir(parents=True)
    (root / "system.slice" / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "system.slice" / "cgroup.subtree_control").write_text("")
    mounts = Mounts(v1={}, v2=root, own_v1={}, own_v2="/system.slice/infracore.service")
    # The fake has no kernel behind it: pre-create what the kernel would show once controllers are enabled.
    base = root / "system.slice" / "infracore"
    base.mkdir()
    (base / "cgroup.subtree_control").write_text("cpu memory\n")
    driver = detect("auto", mounts=mounts)
    assert isinstance(driver, CgroupV2Driver) and driver.enforces_memory and driver.enforces_cpu
    assert "+cpu +memory" in (root / "system.slice" / "cgroup.subtree_control").read_text()
    leaf = base / "web-1"
    leaf.mkdir()
    (leaf / "memory.swap.max").write_text("max\n")
    h = driver.create("web-1", memory_bytes=256 << 20, cpu=0.5)
    assert (leaf / "memory.max").read_text() == str(256 << 20)
    assert (leaf / "memory.swap.max").read_text() == "0"
    assert (leaf / "cpu.max").read_text() == "50000 100000"
    assert h.rel == "/system.slice/infracore/web-1" and h.join_files() == [leaf / "cgroup.procs"]
    (leaf / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    (leaf / "memory.current").write_text("1234\n")
    (leaf / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\n")
    assert (h.oom_kills(), h.memory_bytes(), h.cpu_seconds()) == (1, 1234, 2.5)
    # Without the controllers it falls back to v1 when present, else to rlimits with a clear warning.
    (root / "system.slice" / "cgroup.controllers").write_text("pids\n")
    (base / "cgroup.subtree_control").write_text("")
    fallback = detect("auto", mounts=mounts)
    assert fallback.kind == "v2" and not fallback.enforces_memory and "lacks the cpu, memory" in fallback.warning
    assert isinstance(detect("auto", mounts=Mounts({}, None, {}, None)), RlimitDriver)
    assert not isinstance(fallback, CgroupV1Driver)
