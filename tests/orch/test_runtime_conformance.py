"""The `Runtime` contract, run against every runtime in `conftest.RUNTIMES` for real (native children, Docker
containers); a runtime that cannot run here is skipped with the reason. The programs are `sh` scripts so
that the host and the test image run the same thing."""

from __future__ import annotations

import asyncio
import inspect
import signal
from pathlib import Path
from typing import Any

import pytest

from orch.runtime import RuntimeError_
from tests.orch.conftest import RuntimeUnderTest, alive, eventually, read_logs
from tests.orch.dockerenv import docker_oom_unreliable

# Holds ~40 MB in a shell variable, says so, then waits (the last command keeps the shell from exec-ing sleep).
HOG = "x=$(yes | head -c 40000000); echo held; sleep 60; echo ${#x}"  # not exec-ing sleep: x stays


async def _run(rt: RuntimeUnderTest, argv: list[str], **kw: Any) -> Any:
    inst = await rt.runtime.create(rt.config(argv, **kw))
    await rt.runtime.start(inst)
    return inst


async def _leftovers(rt: RuntimeUnderTest, inst: Any) -> Any:
    assert rt.leftovers is not None
    v = rt.leftovers(inst)
    return await v if inspect.isawaitable(v) else v


async def test_exit_code_and_separate_streams(rt: RuntimeUnderTest) -> None:
    inst = await _run(rt, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    status = await asyncio.wait_for(rt.runtime.wait(inst), 30)
    assert (status.code, status.signal, status.failed, status.detail) == (3, None, True, "exit code 3")
    assert (await rt.runtime.wait(inst)) == status  # waiting again gives the same answer
    me = f"{rt.service}-1"
    if not rt.separate_streams:  # systemd: journald keeps no record of which stream a line came from
        await eventually(lambda: f"{me} stdout out" in rt.output() and f"{me} stdout err" in rt.output())
    else:
        await eventually(lambda: f"{me} stdout out" in rt.output() and f"{me} stderr err" in rt.output())
        assert f"{me} stdout err" not in rt.output() and f"{me} stderr out" not in rt.output()
    assert rt.runtime.inspect(inst)["exit"]["code"] == 3
    await rt.runtime.remove(inst)
    assert not await _leftovers(rt, inst)


async def test_env_and_workdir_are_applied(rt: RuntimeUnderTest, tmp_path: Path) -> None:
    inst = await _run(
        rt, ["sh", "-c", 'echo "greeting=$GREETING cwd=$(pwd)"'], env={"GREETING": "hi"}, workdir=str(tmp_path)
    )
    assert (await asyncio.wait_for(rt.runtime.wait(inst), 30)).code == 0
    await eventually(lambda: f"greeting=hi cwd={tmp_path}" in rt.output())
    await rt.runtime.remove(inst)


async def test_config_files_are_in_place_before_start(rt: RuntimeUnderTest, tmp_path: Path) -> None:
    inst = await _run(
        rt,
        ["sh", "-c", "cat conf/app.ini; ls -l conf/app.ini"],
        workdir=str(tmp_path),
        config_files=(("conf/app.ini", "port=8080\n", 0o600),),
    )
    assert (await asyncio.wait_for(rt.runtime.wait(inst), 30)).code == 0
    await eventually(lambda: "port=8080" in rt.output() and "-rw-------" in rt.output())
    await rt.runtime.remove(inst)


async def test_signal_death_is_recorded(rt: RuntimeUnderTest) -> None:
    inst = await _run(rt, ["sleep", "60"])
    assert rt.runtime.inspect(inst)["running"]
    await rt.runtime.kill(inst, signal.SIGKILL)
    status = await asyncio.wait_for(rt.runtime.wait(inst), 30)
    assert status.signal == signal.SIGKILL and status.failed and status.detail == "killed by SIGKILL"
    await rt.runtime.remove(inst)


async def test_graceful_stop_lets_the_child_exit_cleanly(rt: RuntimeUnderTest) -> None:
    script = "trap 'echo bye; exit 0' TERM; echo ready; while :; do sleep 0.1; done"
    inst = await _run(rt, ["sh", "-c", script], stop_timeout_s=10)
    await eventually(lambda: "ready" in rt.output())
    status = await asyncio.wait_for(rt.runtime.stop(inst), 30)
    assert status.code == 0 and not status.failed, status
    assert (await rt.runtime.stop(inst)) == status  # idempotent
    await eventually(lambda: "bye" in rt.output())
    await rt.runtime.remove(inst)


async def test_stop_escalates_to_sigkill_after_the_timeout(rt: RuntimeUnderTest) -> None:
    # SIG_IGN is inherited: neither the shell nor its sleep can be stopped by SIGTERM.
    inst = await _run(rt, ["sh", "-c", "trap '' TERM; echo ready; sleep 60"], stop_timeout_s=0.5)
    await eventually(lambda: "ready" in rt.output())
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    status = await asyncio.wait_for(rt.runtime.stop(inst), 30)
    assert status.signal == signal.SIGKILL, status
    assert 0.4 <= loop.time() - t0 < 10
    await rt.runtime.remove(inst)


async def test_stop_signal_is_the_configured_one(rt: RuntimeUnderTest) -> None:
    script = "trap 'echo got-int; exit 0' INT; trap '' TERM; echo ready; while :; do sleep 0.1; done"
    inst = await _run(rt, ["sh", "-c", script], stop_signal=int(signal.SIGINT), stop_timeout_s=10)
    await eventually(lambda: "ready" in rt.output())
    status = await asyncio.wait_for(rt.runtime.stop(inst), 30)
    assert status.code == 0, status
    await eventually(lambda: "got-int" in rt.output())
    await rt.runtime.remove(inst)


async def test_stop_kills_grandchildren_too(rt: RuntimeUnderTest, tmp_path: Path) -> None:
    if not rt.host_pids:
        pytest.skip(f"{rt.name}: {rt.pidns_note}; host pids of grandchildren are not visible to check")
    pids = tmp_path / "pids"
    # The child forks a grandchild that ignores SIGTERM, and a great-grandchild; neither may survive.
    script = f"(trap '' TERM; sleep 300 & echo $! >> {pids}; sleep 300) & echo $! >> {pids}; sleep 300"
    inst = await _run(rt, ["sh", "-c", script], stop_timeout_s=0.5)
    await eventually(lambda: pids.exists() and len(pids.read_text().split()) == 2)
    descendants = [int(p) for p in pids.read_text().split()]
    assert all(alive(p) for p in descendants)
    await asyncio.wait_for(rt.runtime.stop(inst), 15)
    assert not any(alive(p) for p in descendants), "a descendant of a stopped instance survived"
    await rt.runtime.remove(inst)


async def test_leader_exit_takes_its_leftovers_with_it(rt: RuntimeUnderTest, tmp_path: Path) -> None:
    if not rt.host_pids:
        pytest.skip(f"{rt.name}: {rt.pidns_note}")
    pidfile = tmp_path / "gc"
    inst = await _run(rt, ["sh", "-c", f"sleep 300 & echo $! > {pidfile}; exit 1"])
    status = await asyncio.wait_for(rt.runtime.wait(inst), 15)
    assert status.code == 1
    gc = int(await eventually(lambda: pidfile.exists() and pidfile.read_text().strip()))
    await eventually(lambda: not alive(gc))
    await rt.runtime.remove(inst)


async def test_missing_command_is_a_clear_error(rt: RuntimeUnderTest) -> None:
    """A runtime that spawns directly refuses at start; one whose init execs the program (Docker's
    `Init: true`) reports exit code 127 with the reason on stderr."""
    inst = await rt.runtime.create(rt.config(["no-such-program-xyz", "--flag"]))
    try:
        await rt.runtime.start(inst)
    except RuntimeError_ as e:
        assert "no-such-program-xyz" in str(e)
    else:
        status = await asyncio.wait_for(rt.runtime.wait(inst), 30)
        assert status.code == 127, status
        await eventually(lambda: "stderr" in rt.output() and "no-such-program-xyz" in rt.output())
    await rt.runtime.remove(inst)


async def test_stats_while_running(rt: RuntimeUnderTest) -> None:
    inst = await _run(rt, ["sh", "-c", HOG])
    await eventually(lambda: "held" in rt.output(), timeout=30)
    stats = await eventually(lambda: (s := rt.runtime.stats(inst)).memory_bytes and s.memory_bytes > 30_000_000 and s)
    assert stats.cpu_seconds is not None and stats.cpu_seconds > 0
    await rt.runtime.stop(inst)
    await rt.runtime.remove(inst)


async def test_memory_limit_kills_and_reports_oom(rt: RuntimeUnderTest) -> None:
    if not rt.enforces_memory:
        pytest.skip(f"{rt.name}: no memory limit can be enforced here (no cgroup memory controller)")
    inst = await _run(rt, ["sh", "-c", HOG], memory_bytes=24 << 20)
    status = await asyncio.wait_for(rt.runtime.wait(inst), 60)
    assert status.signal == signal.SIGKILL and status.failed, status
    assert "held" not in rt.output()
    await rt.runtime.remove(inst)
    if not rt.reports_oom:
        pytest.skip(
            f"{rt.name}: the limit is enforced (killed by SIGKILL), but on cgroup v1 it cannot be told "
            "from another SIGKILL (systemd reports Result=oom-kill only on cgroup v2)"
        )
    if rt.name == "docker" and not status.oom_killed and (why := docker_oom_unreliable()):
        pytest.skip(f"docker: the limit is enforced (killed by SIGKILL), but {why}")
    assert status.oom_killed and "OOM" in status.detail, status


async def test_restart_with_the_same_identity(rt: RuntimeUnderTest) -> None:
    """Stop, remove, create and start again under the same service and index (what orch does on restart)."""
    first = await _run(rt, ["sh", "-c", "echo run-$RUN; sleep 60"], env={"RUN": "1"})
    await eventually(lambda: "run-1" in rt.output())
    await asyncio.wait_for(rt.runtime.stop(first, 0.5), 30)
    await rt.runtime.remove(first)
    second = await _run(rt, ["sh", "-c", "echo run-$RUN; sleep 60"], env={"RUN": "2"})
    await eventually(lambda: "run-2" in rt.output())
    assert rt.runtime.inspect(second)["running"] and not rt.runtime.inspect(first)["running"]
    await rt.runtime.stop(second, 0.5)
    await rt.runtime.remove(second)
    assert not await _leftovers(rt, second)


async def test_adoption_by_a_restarted_platform(rt: RuntimeUnderTest, tmp_path: Path) -> None:
    """A new runtime object (the platform after a SIGKILL and a new start) re-attaches from `record()`:
    same instance, output keeps flowing to the new log sink, stop and removal work through it."""
    inst = await _run(rt, ["sh", "-c", "trap '' TERM; while :; do echo tick; sleep 0.1; done"], stop_timeout_s=0.5)
    await eventually(lambda: "tick" in rt.output())
    record = inst.record()
    second = rt.fresh(tmp_path / "logs2")
    adopted = await second.adopt(inst.config, record)
    assert adopted is not None and adopted.adopted
    assert second.inspect(adopted)["running"]
    await eventually(lambda: "tick" in read_logs(tmp_path / "logs2", rt.service), timeout=20)
    status = await asyncio.wait_for(second.stop(adopted), 30)
    # SIGKILL after the timeout; an adopted native process is not our child: its status is unknown
    assert status.signal == signal.SIGKILL or "adopted" in status.detail, status
    await asyncio.wait_for(rt.runtime.wait(inst), 30)  # the first handle sees the end too
    await second.remove(adopted)
    assert await second.adopt(inst.config, record) is None  # gone: nothing to adopt
