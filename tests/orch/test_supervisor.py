"""The supervisor shell with real child processes, a real SQLite store and the real event bus."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.bus import EventBus
from core.ports import EndpointBoard
from core.schema import CORE_MIGRATIONS
from core.store import Store
from orch.config import OrchSettings
from orch.service import OrchService
from orch.spec import SpecError
from tests.orch.conftest import PY, alive, cgroup_driver

# Instances stop with the harness's orch (no process outlives a test); tests of the default pass False.
FAST = {
    "backoff_initial_s": 0.1,
    "backoff_max_s": 0.4,
    "stable_after_s": 30,
    "crashloop_failures": 4,
    "crashloop_window_s": 60,
    "stop_services_on_exit": True,
}


class Harness:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.store = Store(tmp / "state.db", synchronous="NORMAL")
        self.bus = EventBus(self.store)
        self.endpoints = EndpointBoard()
        self.orchs: list[OrchService] = []

    async def open(self) -> None:
        await self.store.open()
        await self.store.migrate("core", CORE_MIGRATIONS)
        await self.bus.start()

    async def orch(self, **settings: Any) -> OrchService:
        o = OrchService(
            OrchSettings(**{**FAST, **settings}),
            data_dir=self.tmp / "data",
            store=self.store,
            bus=self.bus,
            endpoints=self.endpoints,
            cgroups=cgroup_driver(),
        )
        await o.start()
        self.orchs.append(o)
        return o

    async def events(self, etype: str) -> list[dict[str, Any]]:
        return [e.data for e in await self.bus.read_after(0, 10_000) if e.type == etype]

    async def close(self) -> None:
        for o in self.orchs:
            if not o._shutting_down:
                await o.stop(20)
        self.bus.close()
        await self.store.close()


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path)
    await harness.open()
    yield harness
    await harness.close()


async def until(pred: Callable[[], Awaitable[Any] | Any], timeout: float = 20.0) -> Any:  # noqa: ASYNC109
    async def check() -> Any:
        v = pred()
        return await v if asyncio.iscoroutine(v) else v

    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        v = await check()
        if v:
            return v
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {v!r})")
        await asyncio.sleep(0.05)


def web_spec(name: str = "web", extra: str = "") -> str:
    return f"""\
name: {name}
cmd: ["{PY}", "-m", "http.server", "--bind", "127.0.0.1", "${{PORT}}"]
ports: [{{ name: http, internal: auto }}]
healthcheck: {{ http: "http://127.0.0.1:${{PORT}}/", interval: 0.3s, timeout: 2s, retries: 2 }}
restart_policy: always
{extra}"""


def pid_of(o: OrchService, name: str, index: int = 1) -> int | None:
    insts = [i for i in o.describe(name)["instances"] if i["index"] == index and i["phase"] == "running"]
    return insts[0]["pid"] if insts else None


async def test_apply_runs_healthy_publishes_endpoint_and_restarts_after_kill(h: Harness) -> None:
    o = await h.orch()
    result = await o.apply(web_spec(), "web.yaml", actor="admin")
    assert result["changed"] and result["version"] == 1
    await until(lambda: o.describe("web")["status"] == "running")
    (ep,) = h.endpoints.get("web")
    assert h.endpoints.get("web:http") == (ep,)
    async with httpx.AsyncClient() as c:
        assert (await c.get(f"http://{ep.host}:{ep.port}/")).status_code == 200
    pid = pid_of(o, "web")
    assert pid and alive(pid)
    os.kill(pid, signal.SIGKILL)
    await until(lambda: (p := pid_of(o, "web")) and p != pid and o.describe("web")["status"] == "running")
    d = o.describe("web")
    assert d["restarts"] == 1 and d["last_exit"]["signal"] == signal.SIGKILL
    exits = await until(lambda: h.events("service.instance.exited"))
    assert exits and exits[-1]["exit"]["detail"] == "killed by SIGKILL" and exits[-1]["restarts"] == 1
    changes = [(e["previous"], e["status"]) for e in await h.events("service.status.changed")]
    assert (None, "starting") in changes and ("starting", "running") in changes
    assert ("running", "backoff") in changes or ("running", "starting") in changes


async def test_unchanged_apply_is_a_no_op_and_each_change_is_a_version(h: Harness) -> None:
    o = await h.orch()
    await o.apply(web_spec(), "web.yaml")
    again = await o.apply(web_spec(), "web.yaml")
    assert not again["changed"] and again["version"] == 1
    v2 = await o.apply(web_spec(extra="env: {A: b}\n"), "web.yaml")
    assert v2["changed"] and v2["version"] == 2
    assert [v["version"] for v in await o.versions("web")] == [2, 1]
    await until(lambda: any(i["version"] == 2 and i["healthy"] for i in o.describe("web")["instances"]))


async def test_crash_loop_backs_off_and_is_reported(h: Harness, tmp_path: Path) -> None:
    o = await h.orch()
    starts = tmp_path / "starts"
    await o.apply(f"name: flaky\ncmd: [sh, -c, 'echo x >> {starts}; exit 3']\nrestart_policy: always\n", "f.yaml")
    await until(lambda: o.describe("flaky")["status"] == "crashloop")
    d = o.describe("flaky")
    assert "crash loop" in d["reason"] and "exit code 3" in d["reason"]
    n = len(starts.read_text().split())
    assert n == FAST["crashloop_failures"]
    # No hot spinning: in crashloop it retries only every backoff_max_s.
    await asyncio.sleep(0.5)  # measuring a rate: the wait is the measurement window
    assert len(starts.read_text().split()) <= n + 2
    changes = [e["status"] for e in await h.events("service.status.changed") if e["service"] == "flaky"]
    assert "crashloop" in changes


async def test_on_failure_gives_up_and_start_resets(h: Harness) -> None:
    o = await h.orch()
    await o.apply("name: once\ncmd: [sh, -c, 'exit 1']\nrestart_policy: on-failure:2\n", "o.yaml")
    await until(lambda: o.describe("once")["status"] == "failed")
    assert o.describe("once")["restarts"] == 2 and "gave up after 2" in o.describe("once")["reason"]
    await o.start_service("once")
    await until(lambda: o.describe("once")["restarts"] == 4)


async def test_failing_health_check_restarts_with_the_reason(h: Harness, tmp_path: Path) -> None:
    o = await h.orch()
    flag = tmp_path / "ok"
    flag.write_text("1")
    spec = (
        f"name: checked\ncmd: [sleep, '300']\nrestart_policy: on-failure\n"
        f"healthcheck: {{ exec: [test, -f, '{flag}'], interval: 0.2s, timeout: 2s, retries: 2 }}\n"
    )
    await o.apply(spec, "c.yaml")
    await until(lambda: o.describe("checked")["status"] == "running")
    pid = pid_of(o, "checked")
    flag.unlink()
    await until(lambda: o.describe("checked")["restarts"] >= 1)
    flag.write_text("1")
    await until(lambda: o.describe("checked")["status"] == "running" and pid_of(o, "checked") != pid)
    await until(lambda: h.events("service.instance.exited"))
    exits = [e for e in await h.events("service.instance.exited") if e["service"] == "checked"]
    assert "health check failed 2 time(s): exit code 1" in exits[0]["reason"]
    statuses = [e for e in await h.events("service.status.changed") if e["service"] == "checked"]
    assert any(e["status"] in ("restarting", "unhealthy") and "health check failed" in e["reason"] for e in statuses)


async def test_depends_on_start_order_and_reverse_stop(h: Harness, tmp_path: Path) -> None:
    o = await h.orch()
    log = tmp_path / "order"
    trap = f"trap 'echo stop-$0 >> {log}; exit 0' TERM; echo start-$0 >> {log}; while :; do sleep 0.05; done"
    await o.apply(f'name: api\ncmd: [sh, -c, "{trap}", api]\ndepends_on: [db]\n', "api.yaml")
    await until(lambda: o.describe("api")["status"] == "waiting")
    assert "depends on db, which is not defined" in o.describe("api")["reason"]
    await o.apply(
        f'name: db\ncmd: [sh, -c, "sleep 0.5; {trap}", db]\nports: [{{name: pg}}]\n'
        "healthcheck: { exec: [sh, -c, 'test -s " + str(log) + "'], interval: 0.2s, retries: 3 }\n",
        "db.yaml",
    )
    await until(lambda: o.describe("api")["status"] == "running")
    await until(lambda: "start-api" in log.read_text())  # running = spawned; its shell writes a moment later
    assert log.read_text().split() == ["start-db", "start-api"]
    await o.stop(20)
    assert log.read_text().split() == ["start-db", "start-api", "stop-api", "stop-db"]


async def test_stop_and_delete_leave_nothing_running(h: Harness, tmp_path: Path) -> None:
    o = await h.orch()
    pids = tmp_path / "pids"
    await o.apply(
        f"name: forker\ncmd: [sh, -c, 'sleep 300 & echo $! >> {pids}; echo $$ >> {pids}; wait']\nstop_timeout: 1s\n",
        "f.yaml",
    )
    await until(lambda: pids.exists() and len(pids.read_text().split()) == 2)
    procs = [int(p) for p in pids.read_text().split()]
    d = await o.stop_service("forker")
    assert d["status"] == "stopped" and d["desired"] == "stopped"
    assert not any(alive(p) for p in procs)
    await o.start_service("forker")
    await until(lambda: o.describe("forker")["status"] == "running")
    before = await o.delete("forker")
    assert before["name"] == "forker" and "forker" not in [s["name"] for s in o.list()]
    assert await o.repo.load() == []
    assert not [p for p in pids.read_text().split() if alive(int(p))]
    await until(lambda: h.events("service.removed"))
    assert (await h.events("service.removed"))[-1]["service"] == "forker"


async def test_platform_restart_adopts_without_duplicates(h: Harness) -> None:
    first = await h.orch(stop_services_on_exit=False)
    await first.apply(web_spec(), "web.yaml")
    await until(lambda: first.describe("web")["status"] == "running")
    pid = pid_of(first, "web")
    await first.stop(10)
    assert pid and alive(pid), "stop_services_on_exit: false leaves the instance running"
    second = await h.orch()
    await until(lambda: second.describe("web")["status"] == "running")
    assert pid_of(second, "web") == pid and second.describe("web")["instances"][0]["adopted"]
    assert [i.pid for i in second.instances()] == [pid]
    assert len([e for e in h.endpoints.get("web")]) == 1
    await second.stop(10)
    await until(lambda: not alive(pid))


async def test_platform_restart_after_the_instance_died_starts_a_new_one(h: Harness) -> None:
    first = await h.orch(stop_services_on_exit=False)
    await first.apply(web_spec(), "web.yaml")
    await until(lambda: first.describe("web")["status"] == "running")
    pid = pid_of(first, "web")
    await first.stop(10)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await until(lambda: not alive(pid))
    second = await h.orch()
    await until(lambda: second.describe("web")["status"] == "running")
    assert pid_of(second, "web") not in (None, pid)


async def test_invalid_spec_and_unavailable_runtime(h: Harness) -> None:
    o = await h.orch(docker=False, systemd=False)
    with pytest.raises(SpecError, match=r"bad.yaml:2 replicas"):
        await o.apply("name: a\nreplicas: lots\ncmd: x\n", "bad.yaml")
    with pytest.raises(SpecError, match=re.escape("a.yaml:2 image: the docker runtime is not available")):
        await o.apply("name: a\nimage: nginx\n", "a.yaml")
    with pytest.raises(SpecError, match=re.escape("a.yaml:2 runtime: the systemd runtime is not available")):
        await o.apply("name: a\nruntime: systemd\ncmd: [sleep, '100']\n", "a.yaml")
    down = await h.orch(docker_host="unix:///nonexistent/docker.sock", systemd_command_prefix=["/nonexistent/ctl"])
    with pytest.raises(SpecError, match=re.escape("a.yaml:2 image: dockerd does not answer at unix:///nonexistent")):
        await down.apply("name: a\nimage: nginx\n", "a.yaml")
    with pytest.raises(
        SpecError,
        match=re.escape(
            "a.yaml:2 runtime: the systemd runtime cannot reach systemd through "
            "/nonexistent/ctl (cannot run /nonexistent/ctl"
        ),
    ):
        await down.apply("name: a\nruntime: systemd\ncmd: [sleep, '100']\n", "a.yaml")
    await o.apply("name: a\ncmd: [sleep, '100']\ndepends_on: [b]\n", "a.yaml")
    with pytest.raises(SpecError, match=re.escape("b.yaml:3 depends_on: dependency cycle: a -> b -> a")):
        await o.apply("name: b\ncmd: [sleep, '100']\ndepends_on: [a]\n", "b.yaml")
    assert [s["name"] for s in o.list()] == ["a"]


async def test_start_failure_is_reported_not_spun(h: Harness) -> None:
    o = await h.orch()
    await o.apply("name: missing\ncmd: [no-such-program-xyz]\nrestart_policy: on-failure:1\n", "m.yaml")
    await until(lambda: o.describe("missing")["status"] == "failed")
    assert "not found in PATH" in o.describe("missing")["reason"]


def test_python_is_used_for_children() -> None:
    assert os.path.exists(sys.executable)


async def test_applying_a_fixed_version_clears_a_give_up(h: Harness) -> None:
    o = await h.orch()
    await o.apply("name: fixme\ncmd: [sh, -c, 'exit 1']\nrestart_policy: on-failure:1\n", "f.yaml")
    await until(lambda: o.describe("fixme")["status"] == "failed")
    await o.apply("name: fixme\ncmd: [sleep, '300']\nrestart_policy: on-failure:1\n", "f.yaml")
    await until(lambda: o.describe("fixme")["status"] == "running")


async def test_stop_while_starting_does_not_count_as_a_crash(h: Harness) -> None:
    o = await h.orch()
    await o.apply("name: quick\ncmd: [sleep, '300']\nrestart_policy: always\n", "q.yaml")
    d = await o.stop_service("quick")  # planned while the start may still be under way
    assert d["status"] == "stopped" and d["restarts"] == 0
    assert all(i["state"] == "ok" for i in d["instances"])


async def test_memory_limit_exit_is_reported_as_oom(h: Harness) -> None:
    if cgroup_driver().kind == "rlimit" or not cgroup_driver().enforces_memory:
        pytest.skip(f"memory limits need a cgroup memory controller here: {cgroup_driver().warning}")
    o = await h.orch()
    hog = "x = [bytearray(8 << 20) for _ in range(40)]"
    await o.apply(
        f"name: hog\ncmd: ['{PY}', -c, '{hog}']\nresources: {{memory: 48Mi}}\nrestart_policy: 'no'\n", "hog.yaml"
    )
    await until(lambda: o.describe("hog")["status"] == "exited")
    d = o.describe("hog")
    assert d["last_exit"]["oom_killed"] and "OOM" in d["reason"], d


async def test_unknown_user_is_rejected_at_apply(h: Harness) -> None:
    o = await h.orch()
    with pytest.raises(SpecError, match=re.escape("a.yaml:3 user: user 'no-such-user-xyz' does not exist")):
        await o.apply("name: a\ncmd: [sleep, '1']\nuser: no-such-user-xyz\n", "a.yaml")


async def test_restart_replaces_the_instance_and_inventory_names_its_cgroup(h: Harness) -> None:
    o = await h.orch()
    await o.apply("name: sleeper\ncmd: [sleep, '300']\nresources: {memory: 64Mi, cpu: 0.5}\n", "s.yaml")
    await until(lambda: o.describe("sleeper")["status"] == "running")
    (info,) = o.instances()
    assert (info.service, info.instance, info.runtime, info.state) == ("sleeper", "sleeper-1", "process", "running")
    if cgroup_driver().kind == "v1":
        # One relative path in every hierarchy: what probe reads per-instance counters from.
        assert info.cgroup is not None
        for hier, f in (("memory", "memory.usage_in_bytes"), ("cpuacct", "cpuacct.usage")):
            assert (Path("/sys/fs/cgroup") / hier / info.cgroup.strip("/") / f).exists()
    d = await o.restart_service("sleeper")
    assert d["name"] == "sleeper"
    await until(lambda: (p := pid_of(o, "sleeper")) and p != info.pid)
    d = o.describe("sleeper")
    assert d["restarts"] == 1 and d["instances"][0]["state"] == "ok" and d["status"] == "running"
    assert not alive(info.pid or 0)
