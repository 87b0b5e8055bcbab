"""What a deployment that fails part-way leaves, with real processes and a real store: a rollout of
`replicas: 3` failing with `auto_rollback: false` keeps each replica on the release it runs (no unchecked
restart, also after a platform restart); a `recreate` whose new instance fails starts the old release again,
health-gated, and says the old instances were stopped."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.errors import Conflict
from tests.conftest import kill_left_instances
from tests.orch.conftest import PY
from tests.orch.test_deploy_shell import _finished
from tests.orch.test_supervisor import Harness, until

APP = Path(__file__).parent / "deployapp" / "app.py"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path)
    await harness.open()
    try:
        yield harness
        await harness.close()
    finally:
        kill_left_instances(tmp_path / "data")  # one test lets instances outlive its first platform


def _app(work: Path, replicas: int, deploy: str, env: str = "", deadline: str = "3s") -> str:
    work.mkdir(exist_ok=True)
    shutil.copy(APP, work / "app.py")
    return (
        f"name: app\ncmd: ['{PY}', app.py, '${{PORT}}']\nworkdir: {work}\nreplicas: {replicas}\n"
        f"env: {{VERSION: '${{version}}'{env}}}\nports: [{{name: http}}]\n"
        "healthcheck: {http: 'http://127.0.0.1:${PORT}/healthz', interval: 0.3s, retries: 2}\n"
        f"restart_policy: always\ndeploy: {{drain: 0s, health_deadline: {deadline}{deploy}}}\n"
    )


def _by_slot(o: Any) -> dict[int, tuple[int, int]]:
    """slot -> (release, pid) of the running replicas."""
    return {i["index"]: (i["version"], i["pid"]) for i in o.describe("app")["instances"] if i["phase"] == "running"}


def _restarts(o: Any) -> dict[int, int]:
    """slot -> how often the supervisor restarted it."""
    return {i["index"]: i["restarts"] for i in o.describe("app")["instances"]}


async def _answers(h: Harness) -> list[str]:
    async with httpx.AsyncClient() as c:
        return sorted([(await c.get(f"http://{ep.host}:{ep.port}/")).text.split()[0] for ep in h.endpoints.get("app")])


async def test_a_failed_rollout_without_auto_rollback_keeps_the_rest_on_the_old_release(
    h: Harness, tmp_path: Path
) -> None:
    o = await h.orch(stop_services_on_exit=False)  # the default: instances outlive a platform stop
    await o.apply(_app(tmp_path / "work", 3, ", auto_rollback: false"), "app.yaml")
    await until(lambda: o.describe("app")["healthy"] == 3)
    before = _by_slot(o)
    # Batch 1 (slot 1) turns healthy and switches; batch 2's new instance (app-102) never does.
    started = await o.deploy(
        "app", version="v2", actor="ci", overrides={"env": {"VERSION": "${version}", "FAIL_INSTANCE": "app-102"}}
    )
    d = await _finished(o, started["deployment_id"])
    assert d["status"] == "failed" and "app-2 (new) not healthy" in d["error"], d
    held = [s for s in d["log"] if s["step"] == "held"]
    assert held and "app-1 runs release 2; app-2, app-3 run release 1" in held[0]["detail"], d["log"]
    # The supervisor leaves app-2 and app-3 alone: same processes, release 1, for several reconcile passes.
    for _ in range(10):
        await asyncio.sleep(0.3)
        now = _by_slot(o)
        assert now[2] == before[2] and now[3] == before[3] and now[1][0] == 2, now
    assert o.describe("app")["healthy"] == 3 and await _answers(h) == ["1", "1", "v2"]
    # ... and after a platform restart (the instances outlive it and are adopted).
    await o.stop(20)
    o = await h.orch(stop_services_on_exit=True)  # (the test's end stops them)
    await until(lambda: o.describe("app")["healthy"] == 3)
    for _ in range(6):
        await asyncio.sleep(0.3)
        now = _by_slot(o)
        assert now[2] == before[2] and now[3] == before[3], now
    # The next deployment moves them again, health-gated.
    d = await _finished(
        o,
        (await o.deploy("app", version="v3", actor="ci", overrides={"env": {"VERSION": "${version}"}}))[
            "deployment_id"
        ],
    )
    assert d["status"] == "succeeded", d
    await until(lambda: {v for v, _ in _by_slot(o).values()} == {d["release"]})
    assert "app-1, app-2, app-3 run release" in d["log"][-1]["detail"], d["log"][-1]


async def test_a_failed_recreate_starts_the_old_release_again_and_says_so(h: Harness, tmp_path: Path) -> None:
    o = await h.orch()
    await o.apply(_app(tmp_path / "work", 1, ", strategy: recreate"), "app.yaml")
    await until(lambda: o.describe("app")["healthy"] == 1)
    pid_v1 = _by_slot(o)[1][1]
    d = await _finished(
        o,
        (
            await o.deploy(
                "app", version="v2", actor="ci", overrides={"env": {"VERSION": "${version}", "FAIL_HEALTH": "1"}}
            )
        )["deployment_id"],
    )
    assert d["status"] == "rolled_back", d
    text = " | ".join(s["detail"] for s in d["log"])
    assert "never stopped" not in text and "stopped and restarted" in text, text
    assert "not healthy" in d["error"], d
    st = _by_slot(o)
    assert st[1][0] == 1 and st[1][1] != pid_v1, st  # release 1 again, in a new process
    assert o.describe("app")["version"] == 1 and await _answers(h) == ["1"]


async def test_a_failed_recreate_whose_old_release_does_not_come_back_is_failed(h: Harness, tmp_path: Path) -> None:
    o = await h.orch()
    # Release 1 is healthy as app-1 but not as app-101 (the index a restarted replacement runs under).
    await o.apply(_app(tmp_path / "work", 1, ", strategy: recreate", env=", FAIL_INSTANCE: app-101"), "app.yaml")
    await until(lambda: o.describe("app")["healthy"] == 1)
    d = await _finished(
        o,
        (
            await o.deploy(
                "app", version="v2", actor="ci", overrides={"env": {"VERSION": "${version}", "FAIL_HEALTH": "1"}}
            )
        )["deployment_id"],
    )
    assert d["status"] == "failed", d
    assert "restarting release 1 failed too" in d["error"], d
    assert "restarted" not in [s["step"] for s in d["log"]], d["log"]
    # The supervisor then brings the service back on release 1 (its usual restart).
    await until(lambda: o.describe("app")["healthy"] == 1)
    assert o.describe("app")["version"] == 1


async def test_a_failed_replace_batch_without_auto_rollback_restarts_its_slot_on_the_old_release(
    h: Harness, tmp_path: Path
) -> None:
    o = await h.orch()
    await o.apply(_app(tmp_path / "work", 3, ", auto_rollback: false, max_surge: 0, max_unavailable: 1"), "app.yaml")
    await until(lambda: o.describe("app")["healthy"] == 3)
    before = _by_slot(o)
    # max_surge 0: each batch stops its slot's old instance first; batch 2's new instance never turns healthy.
    d = await _finished(
        o,
        (
            await o.deploy(
                "app",
                version="v2",
                actor="ci",
                overrides={"env": {"VERSION": "${version}", "FAIL_INSTANCE": "app-102"}},
            )
        )["deployment_id"],
    )
    assert d["status"] == "failed", d
    steps = [s["step"] for s in d["log"]]
    assert "restarted" in steps and steps[-1] == "held", steps
    assert "app-1 runs release 2; app-2, app-3 run release 1" in d["log"][-1]["detail"], d["log"][-1]
    for _ in range(6):  # slot 2 is back on release 1 (health-gated) and stays there; slot 3 never moved
        await asyncio.sleep(0.3)
        now = _by_slot(o)
        assert now[1][0] == 2 and now[2][0] == 1 and now[2][1] != before[2][1] and now[3] == before[3], now
    assert o.describe("app")["version"] == 2 and o.describe("app")["healthy"] == 3


async def _step_seen(o: Any, dep_id: int, step: str, starts: str = "") -> None:
    async def seen() -> bool:
        d = await o.deployment(dep_id)
        return any(s["step"] == step and s["detail"].startswith(starts) for s in d["log"])

    await until(seen, timeout=40)


async def test_a_rollback_that_fails_holds_the_replicas_on_the_release_they_run(h: Harness, tmp_path: Path) -> None:
    o = await h.orch(stop_services_on_exit=False)  # instances outlive the platform stop below
    hold = tmp_path / "hold-app-1"
    # Release 1 as app-1 (the index slot 1's rollback instance runs under) waits while the hold file exists.
    await o.apply(_app(tmp_path / "work", 3, "", env=f", HOLD_INSTANCE: app-1, HOLD_FILE: '{hold}'"), "app.yaml")
    await until(lambda: o.describe("app")["healthy"] == 3)
    before = _by_slot(o)
    hold.write_text("")
    # Batch 1 switches slot 1 to release 2, batch 2 (app-102) is never healthy; the rollback of slot 1
    # to release 1 never comes up either.
    d = await _finished(
        o,
        (
            await o.deploy(
                "app",
                version="v2",
                actor="ci",
                overrides={"env": {"VERSION": "${version}", "FAIL_INSTANCE": "app-102"}},
            )
        )["deployment_id"],
    )
    assert d["status"] == "failed" and "the rollback failed too" in d["error"], d
    held = [s for s in d["log"] if s["step"] == "held"]
    assert len(held) == 1 and "app-1 runs release 2; app-2, app-3 run release 1" in held[0]["detail"], d["log"]
    # No unchecked restart of app-2 and app-3 onto release 2 (the service's release).
    for _ in range(10):
        await asyncio.sleep(0.3)
        now = _by_slot(o)
        assert now[2] == before[2] and now[3] == before[3] and now[1][0] == 2, now
    assert o.describe("app")["healthy"] == 3
    # ... also after a platform restart (the held step is what `load()` restores).
    await o.stop(20)
    o = await h.orch(stop_services_on_exit=True)
    await until(lambda: o.describe("app")["healthy"] == 3)
    for _ in range(6):
        await asyncio.sleep(0.3)
        now = _by_slot(o)
        assert now[2] == before[2] and now[3] == before[3], now


async def test_a_graceful_stop_mid_rollout_resumes_it_batch_by_batch_at_the_next_start(
    h: Harness, tmp_path: Path
) -> None:
    o = await h.orch(stop_services_on_exit=False)
    await o.apply(_app(tmp_path / "work", 3, ""), "app.yaml")
    await until(lambda: o.describe("app")["healthy"] == 3)
    before = _by_slot(o)
    hold = tmp_path / "hold-app-102"
    hold.write_text("")
    # Batch 1 (slot 1) switches; batch 2's new instance (app-102) waits while the hold file exists.
    dep_id = (
        await o.deploy(
            "app",
            version="v2",
            actor="ci",
            overrides={
                "env": {"VERSION": "${version}", "HOLD_INSTANCE": "app-102", "HOLD_FILE": str(hold)},
                "deploy": {"drain": "0s", "health_deadline": "40s"},
            },
        )
    )["deployment_id"]
    await _step_seen(o, dep_id, "start", "batch 2/3")
    assert _by_slot(o)[1][0] == 2 and _by_slot(o)[2] == before[2]
    await o.stop(20)
    d = await o.deployment(dep_id)
    assert d["status"] == "running" and d["log"][-1]["step"] == "interrupted", d
    assert "resumes at next start" in d["log"][-1]["detail"], d["log"][-1]
    # The last steps were published (the deployments end before the publisher's end-of-stream).
    assert any(e["step"] == "interrupted" for e in await h.events("deploy.progress"))
    assert not [e for e in await h.events("deploy.finished") if e["deployment_id"] == dep_id]
    o = await h.orch(stop_services_on_exit=True)
    await _step_seen(o, dep_id, "resume")
    assert (await o.deployment(dep_id))["status"] == "running"
    for _ in range(6):  # held at batch 2's health gate: slots 2 and 3 keep their processes
        await asyncio.sleep(0.3)
        now = _by_slot(o)
        assert now[2] == before[2] and now[3] == before[3] and now[1][0] == 2, now
    hold.unlink()
    d = await _finished(o, dep_id)
    assert d["status"] == "succeeded", d
    after = d["log"][[s["step"] for s in d["log"]].index("resume") :]
    assert [s["detail"].split(":")[0] for s in after if s["step"] == "switch"] == ["batch 1/2", "batch 2/2"], after
    now = _by_slot(o)
    assert {v for v, _ in now.values()} == {2} and now[2][1] != before[2][1] and now[3][1] != before[3][1], now


async def test_a_stop_mid_rollback_resumes_the_rollback_from_what_the_replicas_run(h: Harness, tmp_path: Path) -> None:
    o = await h.orch(stop_services_on_exit=False)
    hold = tmp_path / "hold-app-2"
    # Release 1 as app-2 (slot 2's rollback instance) waits while the hold file exists.
    await o.apply(
        _app(tmp_path / "work", 3, "", env=f", HOLD_INSTANCE: app-2, HOLD_FILE: '{hold}'", deadline="40s"), "app.yaml"
    )
    await until(lambda: o.describe("app")["healthy"] == 3)
    before = _by_slot(o)
    hold.write_text("")
    # Slots 1 and 2 switch to release 2; app-103 is never healthy: the rollback moves slot 1 back
    # (the service's release is 1 again), then waits on slot 2.
    dep_id = (
        await o.deploy(
            "app",
            version="v2",
            actor="ci",
            overrides={
                "env": {"VERSION": "${version}", "FAIL_INSTANCE": "app-103"},
                "deploy": {"drain": "0s", "health_deadline": "3s"},
            },
        )
    )["deployment_id"]
    await _step_seen(o, dep_id, "start", "rollback batch: starting slot(s) [2]")
    assert o.describe("app")["version"] == 1 and _by_slot(o)[2][0] == 2
    await o.stop(20)
    hold.unlink()
    o = await h.orch(stop_services_on_exit=True)
    d = await _finished(o, dep_id)
    steps = [s["step"] for s in d["log"]]
    assert "kept" not in steps and "resume" in steps, d["log"]
    resume = d["log"][steps.index("resume")]["detail"]
    assert "resuming the rollback to release 1" in resume and "app-2 runs release 2" in resume, resume
    assert d["status"] == "rolled_back", d
    now = _by_slot(o)
    assert {v for v, _ in now.values()} == {1} and now[3] == before[3], now


async def test_apply_during_a_deployment_is_refused_whatever_the_replicas_phase(h: Harness, tmp_path: Path) -> None:
    o = await h.orch()
    await o.apply(_app(tmp_path / "work", 1, ", strategy: recreate", deadline="40s"), "app.yaml")
    await until(lambda: o.describe("app")["healthy"] == 1)
    # recreate: the old instance stops first, the new one takes a while to listen: no replica is running.
    dep_id = (
        await o.deploy("app", version="v2", actor="ci", overrides={"env": {"VERSION": "${version}", "SLOW_START": "4"}})
    )["deployment_id"]
    await _step_seen(o, dep_id, "start")
    assert not [i for i in o.describe("app")["instances"] if i["phase"] == "running" and i["index"] < 100]
    with pytest.raises(Conflict) as e:
        await o.apply(_app(tmp_path / "work", 2, ""), "app.yaml")
    assert f"a deployment is in progress (deployment {dep_id})" in str(e.value), e.value
    assert f"fsctl deploy status {dep_id}" in (e.value.hint or ""), e.value.hint
    d = await _finished(o, dep_id)
    assert d["status"] == "succeeded", d
    assert o.describe("app")["version"] == d["release"] and o.services["app"].spec.replicas == 1


async def test_held_replicas_adopted_after_a_restart_are_supervised_on_their_own_release(
    h: Harness, tmp_path: Path
) -> None:
    o = await h.orch(stop_services_on_exit=False)
    await o.apply(_app(tmp_path / "work", 3, ", auto_rollback: false"), "app.yaml")
    await until(lambda: o.describe("app")["healthy"] == 3)
    before = _by_slot(o)
    # Release 2 moves its health check to /healthz2, which release 1's processes answer 404: probing an old
    # replica with release 2's spec fails it. Batch 1 (slot 1) switches; batch 2 (app-102) never turns healthy.
    d = await _finished(
        o,
        (
            await o.deploy(
                "app",
                version="v2",
                actor="ci",
                overrides={
                    "env": {"VERSION": "${version}", "FAIL_INSTANCE": "app-102", "HEALTH_PATH": "/healthz2"},
                    "healthcheck": {"http": "http://127.0.0.1:${PORT}/healthz2", "interval": "0.3s", "retries": 2},
                },
            )
        )["deployment_id"],
    )
    assert d["status"] == "failed" and any(s["step"] == "held" for s in d["log"]), d
    await o.stop(20)
    o = await h.orch(stop_services_on_exit=True)
    await until(lambda: o.describe("app")["healthy"] == 3)
    restarts = _restarts(o)
    # Adopted, app-2 and app-3 are probed on release 1's /healthz: they stay, in the same processes, never
    # restarted (probed with release 2's spec they failed and were restarted within ~1 s). Not asserted:
    # `healthy == 3` at each instant (one slow probe on a loaded runner is not what this is about).
    for _ in range(10):
        await asyncio.sleep(0.3)
        now = _by_slot(o)
        assert now[2] == before[2] and now[3] == before[3] and now[1][0] == 2, now
        assert _restarts(o) == restarts, o.describe("app")["instances"]
    # A held replica that crashes comes back on its own release (its spec, env, health check), health-gated.
    os.kill(before[2][1], signal.SIGKILL)
    await until(lambda: 2 in _by_slot(o) and _by_slot(o)[2][1] != before[2][1])
    assert _by_slot(o)[2][0] == 1, o.describe("app")["instances"]
    await until(lambda: o.describe("app")["healthy"] == 3)
    restarted = _by_slot(o)[2]
    restarts = _restarts(o)
    for _ in range(6):  # and it stays (release 2's probe on it would fail it and restart it within ~1 s)
        await asyncio.sleep(0.3)
        assert _by_slot(o).get(2) == restarted and _restarts(o) == restarts, o.describe("app")["instances"]
    assert await _answers(h) == ["1", "1", "v2"]
