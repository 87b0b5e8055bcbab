"""Orch's supervisor with containers, against the real dockerd (skipped with the reason without one):
an image service healthy and published, `docker kill` from outside restarted by orch's policy, exec
health checks inside the container, refused specs with precise errors, leaving containers running over a
platform stop and adopting the same container at the next start, removal (volumes stay)."""

from __future__ import annotations

import gc
import json
import secrets
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orch.service import OrchService
from orch.spec import SpecError
from tests.orch.dockerenv import FULL_IMAGE, api, docker_problem, remove_owned
from tests.orch.test_supervisor import Harness, until

pytestmark = pytest.mark.skipif(bool(docker_problem()), reason=f"docker runtime: {docker_problem()}")

SITE = f"""\
name: site
image: {FULL_IMAGE}
cmd: [httpd, -f, -p, "80", -h, /www]
ports: [{{ name: http, internal: 80 }}]
healthcheck: {{ http: "http://127.0.0.1:${{PORT}}/", interval: 0.3s, timeout: 2s, retries: 2 }}
restart_policy: always
stop_timeout: 2s
"""


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path)
    await harness.open()
    yield harness
    owners = {
        o.runtime.runtimes["docker"].owner: o.runtime.runtimes["docker"] for o in harness.orchs if o.runtime is not None
    }
    try:
        await harness.close()
    finally:
        from orch.docker import DockerRuntime

        for owner in owners:
            cleaner = DockerRuntime(None, owner=owner)  # type: ignore[arg-type]
            await remove_owned(cleaner, owner)
            await cleaner.close()


async def _orch(h: Harness, **kw: Any) -> OrchService:
    # A prefix per test: test runs sharing this dockerd never meet on a container name.
    prefix = getattr(h, "prefix", None) or f"infracore-t{secrets.token_hex(3)}"
    h.prefix = prefix  # type: ignore[attr-defined]
    return await h.orch(docker_name_prefix=prefix, **kw)


def _inst(o: OrchService, name: str) -> dict[str, Any]:
    running = [i for i in o.describe(name)["instances"] if i["phase"] == "running" and i["healthy"]]
    return running[0] if running else {}


async def test_image_service_runs_healthy_published_on_loopback_and_restarted_after_docker_kill(h: Harness) -> None:
    o = await _orch(h)
    await o.apply(SITE, "site.yaml", actor="admin")
    await until(lambda: o.describe("site")["status"] == "running", 60)
    inst = _inst(o, "site")
    assert inst["runtime"] == "docker" and inst["image"] == FULL_IMAGE and inst["container_ports"] == {"http": 80}
    (ep,) = h.endpoints.get("site")
    assert ep.host == "127.0.0.1" and ep.port == inst["ports"]["http"] != 80
    async with httpx.AsyncClient() as c:
        r = await c.get(f"http://127.0.0.1:{ep.port}/")
    assert r.status_code == 200 and "hello from busybox" in r.text
    status, info = api("GET", f"/containers/{inst['container_id']}/json")
    assert status == 200 and info["Name"] == f"/{h.prefix}-site-1"  # type: ignore[attr-defined]
    assert info["HostConfig"]["RestartPolicy"]["Name"] == "no" and info["HostConfig"]["Init"] is True
    assert info["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(ep.port)}]}
    labels = info["Config"]["Labels"]
    assert (labels["infracore.service"], labels["infracore.instance"], labels["infracore.release"]) == (
        "site",
        "site-1",
        "1",
    )
    (inv,) = o.instances()
    assert (inv.runtime, inv.container_id, inv.cgroup) == ("docker", inst["container_id"], None)
    # Killed from outside: orch's policy (always) brings a new container up under the same name.
    assert api("POST", f"/containers/{inst['container_id']}/kill")[0] == 204
    await until(lambda: (i := _inst(o, "site")) and i["container_id"] != inst["container_id"], 60)
    d = o.describe("site")
    assert d["restarts"] == 1 and d["last_exit"]["detail"] == "killed by SIGKILL"
    assert api("GET", f"/containers/{inst['container_id']}/json")[0] == 404  # the dead one was removed


async def test_exec_health_check_runs_inside_the_container(h: Harness) -> None:
    o = await _orch(h)
    spec = SITE.replace('{ http: "http://127.0.0.1:${PORT}/",', "{ exec: [test, -f, /tmp/ok],").replace(
        'cmd: [httpd, -f, -p, "80", -h, /www]', 'cmd: [sh, -c, "touch /tmp/ok; httpd -f -p 80 -h /www; echo end"]'
    )
    await o.apply(spec, "site.yaml")
    await until(lambda: o.describe("site")["status"] == "running", 60)
    inst = _inst(o, "site")
    assert inst["health"][-1]["ok"] and inst["health"][-1]["detail"] == "exit code 0"
    assert not Path("/tmp/ok").exists()  # the file exists only inside the container: the check ran in there
    status, ex = api("POST", f"/containers/{inst['container_id']}/exec", {"Cmd": ["rm", "/tmp/ok"]})
    assert status == 201
    assert api("POST", f"/exec/{ex['Id']}/start", {"Detach": True})[0] == 200
    await until(lambda: (i := _inst(o, "site")) and i["container_id"] != inst["container_id"], 60)
    exits = [e for e in await h.events("service.instance.exited") if e["service"] == "site"]
    assert "health check failed 2 time(s): exit code 1" in exits[0]["reason"], exits


async def test_hostile_specs_are_refused_with_the_field_named(h: Harness, tmp_path: Path) -> None:
    o = await _orch(h)
    cases = [
        ("volumes:\n  - /:/host\n", "x.yaml:9 volumes[0]: '/:/host' is refused: mounting / gives the container"),
        ("volumes: ['/var/run/docker.sock:/var/run/docker.sock']\n", "the Docker socket, i.e. root on the host"),
        (
            f"volumes: ['{tmp_path}/nope:/data']\n",
            f"x.yaml:8 volumes[0]: bind mount source {tmp_path}/nope does not exist on this host",
        ),
        (f"volumes: ['{h.tmp / 'data'}:/data']\n", "the platform's data dir"),  # the platform's own data dir
    ]
    for extra, expected in cases:
        with pytest.raises(SpecError) as ei:
            await o.apply(SITE + extra, "x.yaml")
        assert expected in str(ei.value), str(ei.value)
    link = tmp_path / "innocent"
    link.symlink_to("/etc")
    with pytest.raises(SpecError, match="a link to /etc"):
        await o.apply(SITE + f"volumes: ['{link}:/data']\n", "x.yaml")
    assert o.list() == []


async def test_unknown_image_fails_to_start_with_the_pull_error(h: Harness) -> None:
    o = await _orch(h)
    await o.apply("name: ghost\nimage: infracore-test/no-such-image:1\nrestart_policy: 'on-failure:1'\n", "g.yaml")
    await until(lambda: o.describe("ghost")["status"] == "failed", 60)
    reason = o.describe("ghost")["reason"]
    assert "image infracore-test/no-such-image:1 is not on this machine and pulling it failed" in reason, reason
    pulls = await h.events("service.image.pull")
    assert [p["status"] for p in pulls][:1] == ["started"] and pulls[-1]["status"] == "failed"


async def test_allowed_host_mount_is_audited_and_works(h: Harness, tmp_path: Path) -> None:
    o = await _orch(h)
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("from the host\n")
    spec = SITE + f"volumes: ['{site}:/www:ro', 'cache:/cache']\n"
    await o.apply(spec, "site.yaml", actor="ann")
    await until(lambda: o.describe("site")["status"] == "running", 60)
    async with httpx.AsyncClient() as c:
        assert (await c.get(f"http://127.0.0.1:{_inst(o, 'site')['ports']['http']}/")).text == "from the host\n"
    rows = await h.store.fetchall("SELECT actor, action, target, after FROM audit")
    assert rows == []  # an ordinary bind mount is not an audit matter
    risky = SITE + "allow_host_mounts: true\nvolumes: ['/etc/hostname:/www/hostname.txt:ro']\n"
    await o.apply(risky, "site.yaml", actor="ann")
    rows = await h.store.fetchall("SELECT actor, action, target, after FROM audit")
    assert [(r["actor"], r["action"], r["target"]) for r in rows] == [("ann", "service.host_mounts.allowed", "site")]
    assert "/etc/hostname:/www/hostname.txt:ro" in json.loads(rows[0]["after"])["mounts"][0]


async def test_platform_stop_leaves_the_container_and_the_next_start_adopts_it(h: Harness) -> None:
    o = await _orch(h, stop_services_on_exit=False)  # the default
    await o.apply(SITE + "volumes: ['data:/data']\n", "site.yaml")
    await until(lambda: o.describe("site")["status"] == "running", 60)
    cid = _inst(o, "site")["container_id"]
    port = _inst(o, "site")["ports"]["http"]
    await o.stop(10)
    status, info = api("GET", f"/containers/{cid}/json")
    assert status == 200 and info["State"]["Running"], "the container stopped with the platform"
    second = await _orch(h)
    await until(lambda: second.describe("site")["status"] == "running", 60)
    inst = _inst(second, "site")
    assert inst["container_id"] == cid and inst["adopted"] and inst["ports"]["http"] == port
    assert api("GET", f"/containers/{cid}/json")[1]["RestartCount"] == 0
    (ep,) = h.endpoints.get("site")
    assert ep.port == port
    # Removal removes the container, and only it: the named volume stays.
    await second.delete("site")
    assert api("GET", f"/containers/{cid}/json")[0] == 404
    vols = api("GET", "/volumes")[1]["Volumes"] or []
    assert any(v["Name"] == f"{h.prefix}-site-data" for v in vols)  # type: ignore[attr-defined]


async def test_a_container_whose_record_was_lost_is_adopted_by_its_labels(h: Harness) -> None:
    o = await _orch(h, stop_services_on_exit=False)  # the default
    await o.apply(SITE, "site.yaml")
    await until(lambda: o.describe("site")["status"] == "running", 60)
    cid = _inst(o, "site")["container_id"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await o.stop(10)  # its log stream ends with it (the container runs on)
        gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaks, leaks  # the log stream's response was once left open
    for f in (h.tmp / "data" / "run" / "orch").glob("*.json"):
        f.unlink()  # the pidfile record is gone: only the container's labels are left
    second = await _orch(h)
    await until(lambda: second.describe("site")["status"] == "running", 60)
    inst = _inst(second, "site")
    assert inst["container_id"] == cid and inst["adopted"] and inst["container_ports"] == {"http": 80}
    (ep,) = h.endpoints.get("site")
    async with httpx.AsyncClient() as c:
        assert (await c.get(f"http://127.0.0.1:{ep.port}/")).status_code == 200


async def test_remove_with_volumes_removes_the_named_volumes_of_that_service_only(h: Harness) -> None:
    o = await _orch(h)
    await o.apply(SITE + "volumes: ['data:/data']\n", "site.yaml")
    await o.apply(SITE.replace("name: site", "name: other") + "volumes: ['data:/data']\n", "other.yaml")
    await until(lambda: o.describe("site")["status"] == "running" and o.describe("other")["status"] == "running", 60)
    gone = await o.delete("site", volumes=True)
    names = {v["Name"] for v in api("GET", "/volumes")[1]["Volumes"] or []}
    assert gone["volumes_removed"] == [f"{h.prefix}-site-data"]  # type: ignore[attr-defined]
    assert f"{h.prefix}-site-data" not in names and f"{h.prefix}-other-data" in names  # type: ignore[attr-defined]


async def test_user_entrypoint_env_and_config_files_reach_the_container(h: Harness) -> None:
    o = await _orch(h)
    await o.apply(
        f"name: who\nimage: {FULL_IMAGE}\nentrypoint: [/bin/sh, -c]\n"
        "cmd: ['echo uid=$(id -u) port=$PORT greeting=$GREETING; cat /etc/who.conf; sleep 60; true']\n"
        "user: '1234:1234'\nenv: {GREETING: hi}\nports: [{name: http, internal: 8080}]\n"
        'config_files: [{path: /etc/who.conf, content: "conf ${INSTANCE}\\n"}]\n',
        "who.yaml",
    )
    logs = h.tmp / "data" / "logs" / "who"
    await until(lambda: logs.exists() and "conf who-1" in "".join(p.read_text() for p in logs.glob("*.log")), 20)
    text = "".join(p.read_text() for p in logs.glob("*.log"))
    assert "who-1 stdout uid=1234 port=8080 greeting=hi" in text, text
