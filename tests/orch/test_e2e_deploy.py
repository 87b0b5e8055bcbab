"""Deploys through a real `fsctl serve` and its gate, under steady keep-alive traffic (≥ 200 req/s):
rolling v1 → v2 with zero failed requests, replicas: 2, a v2 that never turns healthy, rollback restoring
code and config files, and a platform SIGKILLed in the middle of a deploy."""

from __future__ import annotations

import json
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import kill_left_instances
from tests.orch._load import Load
from tests.orch.conftest import alive

APP = Path(__file__).resolve().parent / "deployapp" / "app.py"


def _until(fn: Any, timeout: float = 30.0, what: Any = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"{what() if callable(what) else what} not met within {timeout}s (last: {last!r})")


def _spec(workdir: Path, name: str = "app", extra: str = "") -> str:
    return (
        f"name: {name}\n"
        f'cmd: ["{sys.executable}", "app.py", "${{PORT}}"]\n'
        f"workdir: {workdir}\n"
        'env: { VERSION: "${version}", CONF: conf/app.ini }\n'
        "ports: [{ name: http, internal: auto }]\n"
        'healthcheck: { http: "http://127.0.0.1:${PORT}/healthz", interval: 0.5s, timeout: 2s, retries: 2 }\n'
        'config_files: [{ path: conf/app.ini, content: "greeting=${version} env=${env}\\n", mode: 0640 }]\n'
        "deploy: { drain: 1s, health_deadline: 6s }\n"
        "restart_policy: always\n" + extra
    )


def _deploy(srv: Any, name: str, body: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    r = srv.api("POST", f"/api/services/{name}/deploy", json=body)
    assert r.status_code == 202, r.text
    started = r.json()
    assert started["status"] == "pending" and set(started) == {"deployment_id", "release_id", "status"}
    return _finished(srv, started["deployment_id"], timeout)


def _finished(srv: Any, dep_id: int, timeout: float = 60) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        d = srv.api("GET", f"/api/deployments/{dep_id}").json()
        return d if d["status"] in ("succeeded", "failed", "rolled_back") else None

    return _until(
        done,
        timeout,
        what=lambda: f"deployment {dep_id} finished: {srv.api('GET', f'/api/deployments/{dep_id}').json()}",
    )


@pytest.fixture
def platform(server_factory: Any, tmp_path: Path) -> Any:
    config = tmp_path / "config.yaml"
    config.write_text("orch: { environment: staging, backoff_initial_s: 0.2 }\n")
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(APP, work / "app.py")

    def start(name: str = "data", **kw: Any) -> Any:
        return server_factory(name, extra_args=["--config", str(config)], **kw)

    return start, work


def _serve_app(srv: Any, work: Path, extra: str = "") -> str:
    r = srv.fsctl("service", "apply", "-f", "-", input=_spec(work, extra=extra))
    assert r.returncode == 0, r.stderr
    _until(lambda: srv.api("GET", "/api/services/app").json()["status"] == "running", what="app running")
    if srv.api("GET", "/api/routes").status_code == 404:
        pytest.skip("the gate is not wired in this build")
    r = srv.fsctl("route", "add", "--host", "app.localhost", "--upstream", "service:app")
    assert r.returncode == 0, r.stderr
    url = f"http://127.0.0.1:{srv.http_port}/"
    _until(lambda: httpx.get(url, headers={"Host": "app.localhost"}).status_code == 200, what="gate → app")
    return url


def test_rolling_deploy_failed_deploy_and_rollback_under_traffic(platform: Any) -> None:
    start, work = platform
    srv = start()
    url = _serve_app(srv, work)
    load = Load(url, "app.localhost", rate=300).start()
    try:
        time.sleep(1.0)
        # v2: rolling, zero failures, the answers switch to v2 (code: $VERSION; config file: its text).
        t0 = time.monotonic()
        d = _deploy(srv, "app", {"version": "v2"})
        assert d["status"] == "succeeded", d
        assert [s["step"] for s in d["log"]][-4:] == ["healthy", "switch", "drain", "done"], d["log"]
        assert {"pending", "running", "switched", "finished"} <= set(d["phases"])
        _until(
            lambda: (
                load.since(time.monotonic() - 0.3)
                and all(b == "v2 greeting=v2 env=staging" for b in load.since(time.monotonic() - 0.3))
            ),
            10,
            "only v2 answers",
        )
        seen = load.since(t0)
        assert seen[0] == "1 greeting=1 env=staging" and seen[-1] == "v2 greeting=v2 env=staging"
        assert not load.failures, load.failures

        # v3 never turns healthy: v2 keeps serving, the deployment ends with the health error in its log.
        t1 = time.monotonic()
        d3 = _deploy(
            srv,
            "app",
            {
                "version": "v3",
                "overrides": {"env": {"VERSION": "${version}", "CONF": "conf/app.ini", "FAIL_HEALTH": "1"}},
            },
        )
        assert d3["status"] in ("failed", "rolled_back"), d3
        assert "health check failed" in d3["error"] and "503" in d3["error"], d3
        assert any("health check failed" in s["detail"] for s in d3["log"])
        time.sleep(0.5)
        assert set(load.since(t1)) == {"v2 greeting=v2 env=staging"}, set(load.since(t1))
        assert (work / "conf/app.ini").read_text() == "greeting=v2 env=staging\n"  # v3's file was put back
        assert not load.failures, load.failures
        st = srv.api("GET", "/api/services/app").json()
        assert st["version"] == d["release"] and len(st["instances"]) == 1

        # Releases and their diff: v3 changed env and the config file; secrets never in clear.
        rels = srv.api("GET", "/api/services/app/releases").json()
        assert [r["release"] for r in rels] == [3, 2, 1] and [r["current"] for r in rels] == [False, True, False]
        diff = srv.api("GET", "/api/services/app/diff?from=2&to=3").json()
        fields = {c["field"] for c in diff["changes"]}
        assert {"env.FAIL_HEALTH", "version", "config_files[conf/app.ini].content"} <= fields, fields
        r = srv.fsctl("service", "diff", "app", "1", "2")
        assert r.returncode == 0 and "-greeting=1 env=staging" in r.stdout and "+greeting=v2" in r.stdout, r.stdout
        r = srv.fsctl("service", "releases", "app")
        assert r.returncode == 0 and "v2" in r.stdout, r.stderr

        # Rollback to release 1: code and config file contents back, zero failures.
        t2 = time.monotonic()
        r = srv.fsctl("service", "rollback", "app", "--to", "1", "--wait", "60")
        assert r.returncode == 0, r.stdout + r.stderr
        _until(
            lambda: (
                load.since(time.monotonic() - 0.3)
                and all(b == "1 greeting=1 env=staging" for b in load.since(time.monotonic() - 0.3))
            ),
            10,
            "release 1 answers",
        )
        assert load.since(t2)[-1] == "1 greeting=1 env=staging"
        assert (work / "conf/app.ini").read_text() == "greeting=1 env=staging\n"
        assert (work / "conf/app.ini").stat().st_mode & 0o777 == 0o640
        assert srv.api("GET", "/api/services/app").json()["version"] == 1
    finally:
        load.stop()
    assert not load.failures, load.failures
    assert load.rps >= 200, load.rps
    print(f"deploys under load: {load.ok} answers at {load.rps:.0f} req/s, 0 failed")
    deps = srv.api("GET", "/api/deployments?service=app").json()
    assert [x["kind"] for x in deps][:3] == ["rollback", "deploy", "deploy"]
    r = srv.fsctl("deploy", "status", str(deps[0]["id"]))
    assert r.returncode == 0 and "succeeded" in r.stdout
    assert srv.stop() == 0


def test_rolling_deploy_two_replicas_under_traffic(platform: Any) -> None:
    start, work = platform
    srv = start()
    url = _serve_app(srv, work, extra="replicas: 2\n")
    _until(lambda: srv.api("GET", "/api/services/app").json()["healthy"] == 2, what="2 healthy")
    load = Load(url, "app.localhost", rate=300).start()
    try:
        time.sleep(1.0)
        d = _deploy(srv, "app", {"version": "v2"})
        assert d["status"] == "succeeded", d
        assert sum(1 for s in d["log"] if s["step"] == "switch") == 2  # max_surge 1: two batches
        _until(
            lambda: (
                load.since(time.monotonic() - 0.3)
                and all(b.startswith("v2 ") for b in load.since(time.monotonic() - 0.3))
            ),
            10,
            "only v2 answers",
        )
        st = srv.api("GET", "/api/services/app").json()
        assert st["healthy"] == 2 and {i["version"] for i in st["instances"]} == {2}
    finally:
        load.stop()
    assert not load.failures, load.failures
    assert load.rps >= 200, load.rps
    assert srv.stop() == 0


def test_platform_killed_mid_deploy_recovers_serving_the_old_release(platform: Any) -> None:
    start, work = platform
    srv = start()
    url = _serve_app(srv, work)
    pid_v1 = srv.api("GET", "/api/services/app").json()["instances"][0]["pid"]
    r = srv.api(
        "POST",
        "/api/services/app/deploy",
        json={
            "version": "v2",
            "overrides": {"env": {"VERSION": "${version}", "CONF": "conf/app.ini", "SLOW_START": "30"}},
        },
    )
    assert r.status_code == 202, r.text
    dep_id = r.json()["deployment_id"]
    _until(
        lambda: any(s["step"] == "start" for s in srv.api("GET", f"/api/deployments/{dep_id}").json()["log"]),
        what="new instance starting",
    )
    staged = [p for p in (srv.data_dir / "run" / "orch").glob("app-2*.json")]
    _until(lambda: list((srv.data_dir / "run" / "orch").glob("app-201.json")), what="staged instance recorded")
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait(10)
    again = start("data", console_port=srv.console_port)
    try:
        d = _until(
            lambda: (x := again.api("GET", f"/api/deployments/{dep_id}").json())["status"] != "running" and x,
            what="deployment marked",
        )
        assert d["status"] == "failed" and "interrupted" in d["error"], d
        st = _until(
            lambda: (x := again.api("GET", "/api/services/app").json())["status"] == "running" and x,
            what="app running after the restart",
        )
        # Slot 1 holds what served before the crash; the staged instance (adopted beyond the replica
        # count) may still be listed while it is being stopped.
        assert st["version"] == 1 and [i["pid"] for i in st["instances"] if i["index"] == 1] == [pid_v1], st
        assert httpx.get(
            url.replace(str(srv.http_port), str(again.http_port)), headers={"Host": "app.localhost"}
        ).text.startswith("1 ")
        _until(lambda: not list((again.data_dir / "run" / "orch").glob("app-201.json")), what="staged one stopped")
        del staged
    finally:
        assert again.stop() == 0
    assert alive(pid_v1)  # services outlive the platform (orch.stop_services_on_exit: false, the default)
    kill_left_instances(again.data_dir)
    assert not alive(pid_v1)


def test_platform_killed_while_the_old_release_drains_keeps_the_new_one(platform: Any) -> None:
    start, work = platform
    srv = start()
    url = _serve_app(srv, work)
    pid_v1 = srv.api("GET", "/api/services/app").json()["instances"][0]["pid"]
    r = srv.api("POST", "/api/services/app/deploy", json={"version": "v2", "overrides": {"deploy": {"drain": "60s"}}})
    assert r.status_code == 202, r.text
    dep_id = r.json()["deployment_id"]
    _until(
        lambda: any(s["step"] == "switch" for s in srv.api("GET", f"/api/deployments/{dep_id}").json()["log"]),
        what="switched",
    )
    pid_v2 = srv.api("GET", "/api/services/app").json()["instances"][0]["pid"]
    assert pid_v2 != pid_v1 and alive(pid_v1)  # still draining
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait(10)
    again = start("data", console_port=srv.console_port)
    try:
        d = _until(
            lambda: (x := again.api("GET", f"/api/deployments/{dep_id}").json())["status"] != "running" and x,
            what="deployment marked",
        )
        # Every replica had switched: the resumed rollout has nothing left to move and succeeds.
        steps = [s["step"] for s in d["log"]]
        assert d["status"] == "succeeded" and "interrupted" in steps and "resume" in steps, d
        st = _until(
            lambda: (x := again.api("GET", "/api/services/app").json())["status"] == "running" and x,
            what="app running after the restart",
        )
        assert st["version"] == 2 and [i["pid"] for i in st["instances"] if i["index"] == 1] == [pid_v2], st
        assert httpx.get(f"http://127.0.0.1:{again.http_port}/", headers={"Host": "app.localhost"}).text.startswith(
            "v2 "
        )
        _until(lambda: not alive(pid_v1), what="the draining v1 stopped")
    finally:
        assert again.stop() == 0
    del url


def _slots(srv: Any) -> dict[int, tuple[int, int]]:
    """slot -> (release, pid) of the running replicas 1..N."""
    st = srv.api("GET", "/api/services/app").json()
    return {
        i["index"]: (i["version"], i["pid"]) for i in st["instances"] if i["phase"] == "running" and i["index"] < 100
    }


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_platform_killed_between_batches_of_three_replicas_resumes_batch_by_batch(
    platform: Any, tmp_path: Path, how: str
) -> None:
    """SIGTERM (a graceful stop) leaves the deployment `running` as SIGKILL does: both resume it."""
    start, work = platform
    srv = start()
    _serve_app(srv, work, extra="replicas: 3\n")
    _until(lambda: srv.api("GET", "/api/services/app").json()["healthy"] == 3, what="3 healthy")
    before = _slots(srv)
    hold = tmp_path / "hold-app-102"
    hold.write_text("")
    # Batch 1 (slot 1) switches; batch 2's new instance (app-102) waits while the hold file exists.
    r = srv.api(
        "POST",
        "/api/services/app/deploy",
        json={
            "version": "v2",
            "overrides": {
                "env": {
                    "VERSION": "${version}",
                    "CONF": "conf/app.ini",
                    "HOLD_INSTANCE": "app-102",
                    "HOLD_FILE": str(hold),
                },
                "deploy": {"drain": "0s", "health_deadline": "40s"},
            },
        },
    )
    assert r.status_code == 202, r.text
    dep_id = r.json()["deployment_id"]
    _until(lambda: list((srv.data_dir / "run" / "orch").glob("app-202.json")), what="batch 2 staged")
    assert _slots(srv)[1][0] == 2 and _slots(srv)[2] == before[2] and _slots(srv)[3] == before[3]
    if how == "SIGKILL":
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(10)
    else:
        assert srv.stop() == 0
    again = start("data", console_port=srv.console_port)
    try:
        d = _until(
            lambda: (
                (x := again.api("GET", f"/api/deployments/{dep_id}").json())
                and any(s["step"] == "resume" for s in x["log"])
                and x
            ),
            what="deployment resumed",
        )
        if how == "SIGTERM":
            assert any(s["step"] == "interrupted" and "resumes at next start" in s["detail"] for s in d["log"]), d
        interrupted = [s for s in d["log"] if s["step"] == "interrupted"][-1]["detail"]
        assert "app-1 runs release 2; app-2, app-3 run release 1" in interrupted, interrupted
        assert d["status"] == "running", d
        # Held at batch 2's health gate: slots 2 and 3 keep their release-1 processes (no restart all at once).
        time.sleep(3)
        now = _slots(again)
        assert now[2] == before[2] and now[3] == before[3] and now[1][0] == 2, now
        hold.unlink()
        d = _finished(again, dep_id)
        assert d["status"] == "succeeded", d
        after = d["log"][[s["step"] for s in d["log"]].index("resume") :]
        assert [s["detail"].split(":")[0] for s in after if s["step"] == "switch"] == ["batch 1/2", "batch 2/2"], after
        assert "app-1, app-2, app-3 run release 2" in d["log"][-1]["detail"], d["log"][-1]
        now = _slots(again)
        assert {v for v, _ in now.values()} == {2} and now[2][1] != before[2][1] and now[3][1] != before[3][1]
    finally:
        assert again.stop() == 0
    kill_left_instances(again.data_dir)


def test_platform_killed_between_batches_of_a_failing_rollout_rolls_back_health_gated(
    platform: Any, tmp_path: Path
) -> None:
    start, work = platform
    srv = start()
    _serve_app(srv, work, extra="replicas: 3\n")
    _until(lambda: srv.api("GET", "/api/services/app").json()["healthy"] == 3, what="3 healthy")
    before = _slots(srv)
    hold = tmp_path / "hold-app-102"
    hold.write_text("")
    # As above, but release 2's app-103 (slot 3, the last batch) is never healthy: the resumed rollout
    # fails there and rolls the switched slots back, batch by batch.
    r = srv.api(
        "POST",
        "/api/services/app/deploy",
        json={
            "version": "v2",
            "overrides": {
                "env": {
                    "VERSION": "${version}",
                    "CONF": "conf/app.ini",
                    "HOLD_INSTANCE": "app-102",
                    "HOLD_FILE": str(hold),
                    "FAIL_INSTANCE": "app-103",
                },
                "deploy": {"drain": "0s", "health_deadline": "6s"},
            },
        },
    )
    assert r.status_code == 202, r.text
    dep_id = r.json()["deployment_id"]
    _until(lambda: list((srv.data_dir / "run" / "orch").glob("app-202.json")), what="batch 2 staged")
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait(10)
    hold.unlink()
    again = start("data", console_port=srv.console_port)
    try:
        d = _finished(again, dep_id)
        assert d["status"] == "rolled_back" and "app-3 (new) not healthy" in d["error"], d
        steps = [s["step"] for s in d["log"]]
        assert steps.index("interrupted") < steps.index("resume") < steps.index("rollback"), steps
        assert "app-1, app-2, app-3 run release 1" in d["log"][-1]["detail"], d["log"][-1]
        now = _slots(again)
        assert {v for v, _ in now.values()} == {1} and now[3] == before[3], now  # slot 3 never moved
        assert again.api("GET", "/api/services/app").json()["version"] == 1
    finally:
        assert again.stop() == 0
    kill_left_instances(again.data_dir)


def test_the_deploy_audit_record_says_what_the_overrides_changed(platform: Any) -> None:
    start, work = platform
    srv = start()
    r = srv.fsctl("service", "apply", "-f", "-", input=_spec(work))
    assert r.returncode == 0, r.stderr
    _until(lambda: srv.api("GET", "/api/services/app").json()["status"] == "running", what="app running")
    body = {
        "version": "v2",
        "overrides": {
            "env": {
                "VERSION": "${version}",
                "CONF": "conf/app.ini",
                "DB_PASS": "hunter2-very-secret",
                "API_TOKEN": "tok-9",
            },
            "healthcheck": {"http": "http://127.0.0.1:${PORT}/healthz", "interval": "0.4s", "retries": 4},
        },
    }
    assert _deploy(srv, "app", body)["status"] == "succeeded"
    entries = srv.api("GET", "/api/audit?action=service.deploy").json()
    ok = [e for e in entries if e["outcome"] == "ok"]
    assert ok, entries
    before, after = ok[0]["before"]["overrides"], ok[0]["after"]["overrides"]
    # Secrets as the release history shows them (a marker), and the audit log's own redaction on top.
    assert after["env.DB_PASS"] == "<secret set in release 2>" and before["env.DB_PASS"] is None, ok[0]
    assert after["env.API_TOKEN"] == "[redacted]", ok[0]
    assert before["spec.healthcheck.interval"] == 0.5 and after["spec.healthcheck.interval"] == 0.4, ok[0]
    assert before["spec.healthcheck.retries"] == 2 and after["spec.healthcheck.retries"] == 4, ok[0]
    assert "env.VERSION" not in after and "version" not in after, ok[0]  # unchanged, or not an override
    assert (
        ok[0]["after"]["deployment_id"] and "hunter2" not in json.dumps(entries) and "tok-9" not in json.dumps(entries)
    )
    # A deploy with no overrides records the deployment alone.
    assert _deploy(srv, "app", {"version": "v3"})["status"] == "succeeded"
    last = srv.api("GET", "/api/audit?action=service.deploy").json()[0]
    assert last["before"] is None and set(last["after"]) == {"deployment_id", "release_id", "status"}, last
