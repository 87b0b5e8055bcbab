"""The `Runtime` contract, run against every runtime in `conftest.RUNTIMES` with real child processes."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from orch.runtime import RuntimeError_
from tests.orch.conftest import RuntimeUnderTest, alive, eventually


async def _run(rt: RuntimeUnderTest, argv: list[str], **kw: object):  # type: ignore[no-untyped-def]
    inst = await rt.runtime.create(rt.config(argv, **kw))
    await rt.runtime.start(inst)
    return inst


async def test_exit_code_is_recorded(rt: RuntimeUnderTest) -> None:
    inst = await _run(rt, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    status = await asyncio.wait_for(rt.runtime.wait(inst), 15)
    assert (status.code, status.signal, status.failed, status.detail) == (3, None, True, "exit code 3")
    assert (await rt.runtime.wait(inst)) == status  # waiting again gives the same answer
    await eventually(lambda: "svc-1 stdout out" in rt.output() and "svc-1 stderr err" in rt.output())
    assert rt.runtime.inspect(inst)["exit"]["code"] == 3
    await rt.runtime.remove(inst)


async def test_env_and_workdir_are_applied(rt: RuntimeUnderTest, tmp_path: Path) -> None:
    inst = await _run(rt, ["sh", "-c", 'echo "greeting=$GREETING cwd=$(pwd)"'], env={"GREETING": "hi"},
                      workdir=str(tmp_path))
    assert (await asyncio.wait_for(rt.runtime.wait(inst), 15)).code == 0
    await eventually(lambda: f"greeting=hi cwd={tmp_path}" in rt.output())
    await rt.runtime.remove(inst)


async def test_signal_death_is_recorded(rt: RuntimeUnderTest) -> None:
    inst = await _run(rt, ["sleep", "60"])
    assert rt.runtime.inspect(inst)["running"]
    await rt.runtime.kill(inst, signal.SIGKILL)
    status = await asyncio.wait_for(rt.runtime.wait(inst), 15)
    assert status.signal == signal.SIGKILL and status.failed and status.detail == "killed by SIGKILL"
    await rt.runtime.remove(inst)


async def test_graceful_stop_lets_the_child_exit_cleanly(rt: RuntimeUnderTest) -> None:
    code = "import signal,sys,time\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n" \
           "print('ready', flush=True)\ntime.sleep(60)"
    inst = await _run(rt, [rt.need_python(), "-c", code], stop_timeout_s=10)
    await eventually(lambda: "ready" in rt.output())
    status = await asyncio.wait_for(rt.runtime.stop(inst), 15)
    assert status.code == 0 and not status.failed
    assert (await rt.runtime.stop(inst)) == status  # idempotent
    await rt.runtime.remove(inst)


async def test_stop_escalates_to_sigkill_after_the_timeout(rt: RuntimeUnderTest) -> None:
    code = "import signal,time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\n" \
           "time.sleep(60)"
    inst = await _run(rt, [rt.need_python(), "-c", code], stop_timeout_s=0.5)
    await eventually(lambda: "ready" in rt.output())
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    status = await asyncio.wait_for(rt.runtime.stop(inst), 15)
    assert status.signal == signal.SIGKILL
    assert 0.4 <= loop.time() - t0 < 10
    await rt.runtime.remove(inst)


async def test_stop_kills_grandchildren_too(rt: RuntimeUnderTest, tmp_path: Path) -> None:
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
    pidfile = tmp_path / "gc"
    inst = await _run(rt, ["sh", "-c", f"sleep 300 & echo $! > {pidfile}; exit 1"])
    status = await asyncio.wait_for(rt.runtime.wait(inst), 15)
    assert status.code == 1
    gc = int(await eventually(lambda: pidfile.exists() and pidfile.read_text().strip()))
    await eventually(lambda: not alive(gc))
    await rt.runtime.remove(inst)


async def test_missing_command_is_a_clear_error(rt: RuntimeUnderTest) -> None:
    inst = await rt.runtime.create(rt.config(["no-such-program-xyz", "--flag"]))
    with pytest.raises(RuntimeError_, match="no-such-program-xyz"):
        await rt.runtime.start(inst)
    await rt.runtime.remove(inst)


async def test_stats_while_running(rt: RuntimeUnderTest) -> None:
    inst = await _run(rt, [rt.need_python(), "-c", "import time; x = bytearray(20_000_000); time.sleep(60)"])
    stats = await eventually(lambda: (s := rt.runtime.stats(inst)).memory_bytes and s.memory_bytes > 10_000_000 and s)
    assert stats.cpu_seconds is not None and stats.cpu_seconds >= 0
    await rt.runtime.stop(inst)
    await rt.runtime.remove(inst)
