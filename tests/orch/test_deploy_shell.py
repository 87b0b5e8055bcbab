"""Deploys in the supervisor shell with real processes and a real store: the `deploy` contract, the
artifact port, recreate, what an admin-API attacker could do with config file paths, immutable releases."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from core.errors import BadRequest, Conflict
from orch.spec import SpecError
from tests.orch.test_supervisor import Harness, until, web_spec


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path)
    await harness.open()
    yield harness
    await harness.close()


async def _finished(o: Any, dep_id: int) -> dict[str, Any]:
    async def done() -> Any:
        d = await o.deployment(dep_id)
        return d if d["status"] in ("succeeded", "failed", "rolled_back") else None

    return await until(done, 30)


class Artifacts:
    """The artifact store's port as fsctl wires it: `install(artifact_id, service, version) -> Path`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.calls: list[tuple[str, str, str]] = []

    def install(self, artifact_id: str, service: str, version: str) -> Path:
        self.calls.append((artifact_id, service, version))
        path = self.root / service / version
        path.mkdir(parents=True, exist_ok=True)
        (path / "app.tmpl").write_text(f"built={artifact_id} at=${{installPath}}\n")
        return path


async def test_deploy_contract_artifact_install_path_and_template(h: Harness, tmp_path: Path) -> None:
    o = await h.orch()
    await o.apply(web_spec(), "web.yaml")
    await until(lambda: o.describe("web")["status"] == "running")
    with pytest.raises(BadRequest, match="artifact uploads are not available"):
        await o.deploy("web", version="v2", artifact_id="abc", actor="ci")
    o.artifacts = Artifacts(tmp_path / "data" / "releases")
    started = await o.deploy(
        "web",
        version="v2",
        artifact_id="abc",
        actor="ci",
        overrides={"workdir": "${installPath}", "config_files": [{"path": "app.ini", "template": "app.tmpl"}]},
    )
    assert set(started) == {"deployment_id", "release_id", "status"} and started["status"] == "pending"
    with pytest.raises(Conflict, match="being deployed"):
        await o.deploy("web", version="v3", actor="ci")
    d = await _finished(o, started["deployment_id"])
    assert d["status"] == "succeeded" and d["actor"] == "ci", d
    install = tmp_path / "data" / "releases" / "web" / "v2"
    assert o.artifacts.calls == [("abc", "web", "v2")]
    assert (install / "app.ini").read_text() == f"built=abc at={install}\n"
    rel = (await o.releases("web"))[0]
    assert rel["version"] == "v2" and rel["artifact"]["id"] == "abc" and rel["current"]
    # Events go out through the bus's queue: wait for them rather than race the publisher.
    finished = await until(lambda: h.events("deploy.finished"))
    assert [e["status"] for e in finished] == ["succeeded"]
    assert {e["step"] for e in await until(lambda: h.events("deploy.progress"))} >= {"created", "switch"}


async def test_install_path_into_a_system_dir_is_refused_and_the_old_release_serves(h: Harness, tmp_path: Path) -> None:
    o = await h.orch()
    await o.apply(web_spec(), "web.yaml")
    await until(lambda: o.describe("web")["status"] == "running")
    pid = o.describe("web")["instances"][0]["pid"]

    class Evil(Artifacts):
        def install(self, artifact_id: str, service: str, version: str) -> Path:
            return Path("/etc")  # a compromised or buggy store: orch still refuses to write there

    o.artifacts = Evil(tmp_path)
    started = await o.deploy(
        "web",
        version="v2",
        artifact_id="x",
        actor="ci",
        overrides={
            "workdir": "${installPath}",
            "config_files": [{"path": "cron.d/evil", "content": "* * * * * root id\n"}],
        },
    )
    d = await _finished(o, started["deployment_id"])
    assert d["status"] in ("failed", "rolled_back") and "system directory" in d["error"], d
    assert not Path("/etc/cron.d/evil").exists()
    assert o.describe("web")["instances"][0]["pid"] == pid and o.describe("web")["version"] == 1


@pytest.mark.parametrize("how", ["plain", "link", "dotdot"])
async def test_config_files_in_system_dirs_refused_at_apply(h: Harness, tmp_path: Path, how: str) -> None:
    o = await h.orch()
    workdir = {"plain": "/etc", "link": str(tmp_path / "link"), "dotdot": "/srv/../etc"}[how]
    (tmp_path / "link").symlink_to("/etc")
    spec = f"name: evil\ncmd: [sleep, '60']\nworkdir: {workdir}\nconfig_files: [{{path: cron.d/x, content: boom}}]\n"
    with pytest.raises(SpecError, match="system directory"):
        await o.apply(spec, "evil.yaml")
    # Allowed only when the spec says so (and then audited); replicas 0 so nothing is written here.
    r = await o.apply(spec + "allow_system_paths: true\nreplicas: 0\n", "evil.yaml")
    assert r["changed"]


async def test_recreate_says_so_and_releases_are_immutable(h: Harness) -> None:
    o = await h.orch()
    await o.apply(web_spec(extra="deploy: {strategy: recreate, drain: 0s}\n"), "web.yaml")
    await until(lambda: o.describe("web")["status"] == "running")
    started = await o.deploy("web", version="v2", actor="admin")
    d = await _finished(o, started["deployment_id"])
    assert d["status"] == "succeeded" and d["strategy"] == "recreate"
    assert any("recreate" in s["detail"] for s in d["log"]) and any(s["step"] == "stop old" for s in d["log"])
    with pytest.raises(sqlite3.IntegrityError, match="immutable"):
        await o.repo.store.execute("UPDATE orch_releases SET label = 'x' WHERE name = 'web'")
    # Rollback goes through the same path and points the service back at release 1.
    back = await o.rollback("web", actor="admin")
    assert back["release_id"] == 1
    d = await _finished(o, back["deployment_id"])
    assert d["status"] == "succeeded" and d["kind"] == "rollback"
    await until(lambda: o.describe("web")["version"] == 1 and o.describe("web")["status"] == "running")
    await asyncio.sleep(0)


async def test_bad_version_label_and_a_fixed_port_rolling_deploy(h: Harness) -> None:
    from tests.conftest import free_port
    from tests.orch.conftest import PY

    o = await h.orch()
    port = free_port()
    await o.apply(
        f"name: fixed\ncmd: ['{PY}', -m, http.server, --bind, 127.0.0.1, '{port}']\n"
        f"ports: [{{name: http, internal: {port}}}]\n"
        "healthcheck: {tcp: '127.0.0.1:${PORT}', interval: 0.3s}\n",
        "fixed.yaml",
    )
    await until(lambda: o.describe("fixed")["status"] == "running")
    for bad in ("../../etc", "/abs", "a b", "", "x" * 200):
        with pytest.raises(BadRequest, match="not a version label"):
            await o.deploy("fixed", version=bad, actor="ci")
    pid = o.describe("fixed")["instances"][0]["pid"]
    started = await o.deploy("fixed", version="v2", actor="ci")
    d = await _finished(o, started["deployment_id"])
    assert d["status"] == "rolled_back" and "strategy: recreate" in d["error"], d
    assert o.describe("fixed")["instances"][0]["pid"] == pid and o.describe("fixed")["status"] == "running"
    started = await o.deploy("fixed", version="v3", actor="ci", overrides={"deploy": {"strategy": "recreate"}})
    d = await _finished(o, started["deployment_id"])
    assert d["status"] == "succeeded", d
    await until(lambda: o.describe("fixed")["status"] == "running" and o.describe("fixed")["version"] == 3)


async def test_old_releases_are_pruned_but_never_the_serving_or_previous(h: Harness) -> None:
    from core.errors import NotFound

    o = await h.orch(release_keep=2)
    await o.apply(web_spec(extra="deploy: {drain: 0s}\n"), "web.yaml")
    await until(lambda: o.describe("web")["status"] == "running")
    for v in ("v2", "v3", "v4"):
        d = await _finished(o, (await o.deploy("web", version=v, actor="ci"))["deployment_id"])
        assert d["status"] == "succeeded", d
    assert [r["release"] for r in await o.releases("web")] == [4, 3]
    with pytest.raises(NotFound, match="no release 1"):
        await o.rollback("web", to=1, actor="admin")
    d = await _finished(o, (await o.rollback("web", actor="admin"))["deployment_id"])
    assert d["status"] == "succeeded" and d["release"] == 3
    assert [r["release"] for r in await o.releases("web")] == [4, 3]  # 4 is newer than the serving 3: kept


async def test_a_later_batch_failing_rolls_the_switched_ones_back(h: Harness, tmp_path: Path) -> None:
    import shutil

    from tests.orch.conftest import PY

    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(Path(__file__).parent / "deployapp" / "app.py", work / "app.py")
    o = await h.orch()
    await o.apply(
        f"name: app\ncmd: ['{PY}', app.py, '${{PORT}}']\nworkdir: {work}\nreplicas: 2\n"
        "env: {VERSION: '${version}'}\nports: [{name: http}]\n"
        "healthcheck: {http: 'http://127.0.0.1:${PORT}/healthz', interval: 0.3s}\n"
        "deploy: {drain: 0s, health_deadline: 3s}\n",
        "app.yaml",
    )
    await until(lambda: o.describe("app")["healthy"] == 2)
    # Batch 1 (slot 1) turns healthy and switches; batch 2's instance (app-102) never does.
    started = await o.deploy(
        "app", version="v2", actor="ci", overrides={"env": {"VERSION": "${version}", "FAIL_INSTANCE": "app-102"}}
    )
    d = await _finished(o, started["deployment_id"])
    assert d["status"] == "rolled_back", d
    steps = [s["step"] for s in d["log"]]
    assert steps.count("switch") == 2 and "rollback" in steps, steps  # slot 1 went to v2, then back
    assert "app-2 (new) not healthy" in d["error"], d["error"]
    await until(lambda: o.describe("app")["healthy"] == 2)
    st = o.describe("app")
    assert st["version"] == 1 and {i["version"] for i in st["instances"]} == {1}, st
    async with __import__("httpx").AsyncClient() as c:
        for ep in h.endpoints.get("app"):
            assert (await c.get(f"http://{ep.host}:{ep.port}/")).text.startswith("1 ")


async def test_two_deploys_at_once_start_one_deployment(h: Harness) -> None:
    # The check and the launch are awaits apart (admission, the store): two calls must not both pass it.
    o = await h.orch()
    await o.apply(web_spec(extra="deploy: {drain: 0s}\n"), "web.yaml")
    await until(lambda: o.describe("web")["status"] == "running")
    got = await asyncio.gather(
        o.deploy("web", version="a", actor="ci"),
        o.deploy("web", version="b", actor="ci"),
        o.rollback("web", to=1, actor="admin"),
        return_exceptions=True,
    )
    started = [g for g in got if isinstance(g, dict)]
    assert len(started) == 1 and all(isinstance(g, Conflict) for g in got if not isinstance(g, dict)), got
    d = await _finished(o, started[0]["deployment_id"])
    assert d["status"] == "succeeded", d


async def test_pruning_keeps_the_dirs_of_every_kept_release(h: Harness, tmp_path: Path) -> None:
    class Store(Artifacts):
        """Prunes like the real store: release dirs are named and kept by version label."""

        def __init__(self, root: Path) -> None:
            super().__init__(root)
            self.kept: list[set[str]] = []

        def prune(self, service: str, keep: set[str]) -> None:
            self.kept.append(set(keep))
            for d in (self.root / service).iterdir():
                if d.name not in keep:
                    shutil.rmtree(d)

    o = await h.orch(release_keep=2)
    o.artifacts = Store(tmp_path / "releases")
    await o.apply(web_spec(extra="deploy: {drain: 0s}\n"), "web.yaml")
    await until(lambda: o.describe("web")["status"] == "running")
    for v in ("v2", "v3", "v4"):
        d = await _finished(o, (await o.deploy("web", version=v, artifact_id=f"art-{v}", actor="ci"))["deployment_id"])
        assert d["status"] == "succeeded", d
    assert o.artifacts.kept[-1] == {"v3", "v4"}
    assert sorted(p.name for p in (tmp_path / "releases" / "web").iterdir()) == ["v3", "v4"]


async def test_risky_overrides_of_a_deploy_are_audited_as_on_apply(h: Harness, tmp_path: Path) -> None:
    import json

    o = await h.orch()
    await o.apply(web_spec(extra="deploy: {drain: 0s}\n"), "web.yaml")
    await until(lambda: o.describe("web")["status"] == "running")
    inside = tmp_path / "data" / "state-of-web"  # inside the platform's data dir: allowed only when said so
    inside.mkdir(parents=True)
    risky = {"workdir": str(inside), "config_files": [{"path": "app.ini", "content": "x=1\n"}]}
    with pytest.raises(SpecError, match="data dir"):
        await o.deploy("web", version="v2", overrides=risky, actor="ann")
    started = await o.deploy("web", version="v2", overrides={**risky, "allow_system_paths": True}, actor="ann")
    d = await _finished(o, started["deployment_id"])
    assert d["status"] == "succeeded", d
    rows = await h.store.fetchall("SELECT actor, action, target, after FROM audit")
    assert [(r["actor"], r["action"], r["target"]) for r in rows] == [("ann", "service.host_mounts.allowed", "web")]
    after = json.loads(rows[0]["after"])
    assert after["version"] == started["release_id"] and "data dir" in after["mounts"][0], after
    # An apply of a running service (also a deployment) audits it once, not twice.
    spec = web_spec(
        extra=f"deploy: {{drain: 0s}}\nworkdir: {inside}\nallow_system_paths: true\n"
        "config_files: [{path: app.ini, content: 'x=2'}]\n"
    )
    r = await o.apply(spec, "web.yaml", actor="bob")
    assert (await _finished(o, r["deployment_id"]))["status"] == "succeeded"
    rows = await h.store.fetchall("SELECT actor FROM audit")
    assert [r["actor"] for r in rows] == ["ann", "bob"]


def _many_files_tgz(n: int) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tf:
        for i in range(n):
            body = f"file {i}\n".encode() * 40
            ti = tarfile.TarInfo(f"app/f{i:05d}.txt")
            ti.size = len(body)
            tf.addfile(ti, io.BytesIO(body))
    return buf.getvalue()


async def _artifact_store(h: Harness, tmp_path: Path) -> Any:
    from orch._tarcheck import TarLimits
    from orch.artifacts import ArtifactStore

    arts = ArtifactStore(
        tmp_path / "data",
        h.store,
        max_bytes=64 * 1024 * 1024,
        limits=TarLimits(max_members=100_000, max_unpacked_bytes=256 * 1024 * 1024),
    )
    await arts.start()
    return arts


async def _upload(arts: Any, data: bytes) -> str:
    async def chunks() -> AsyncIterator[bytes]:
        yield data

    return str((await arts.receive(chunks(), filename="app.tar.gz", service="web"))["id"])


async def test_a_deploy_cancelled_mid_install_can_be_deployed_again(h: Harness, tmp_path: Path) -> None:
    o = await h.orch()
    arts = o.artifacts = await _artifact_store(h, tmp_path)
    try:
        await o.apply(web_spec(extra="deploy: {drain: 0s}\n"), "web.yaml")
        await until(lambda: o.describe("web")["status"] == "running")
        art = await _upload(arts, _many_files_tgz(4000))
        web = tmp_path / "data" / "releases" / "web"
        # The client goes away while the artifact is being unpacked: the request's task is cancelled.
        req = asyncio.ensure_future(o.deploy("web", version="v2", artifact_id=art, actor="ci"))
        await until(lambda: web.is_dir() and any(p.name.startswith(".staging-") for p in web.iterdir()), 30)
        req.cancel()
        with pytest.raises(asyncio.CancelledError):
            await req
        assert o.describe("web")["version"] == 1  # no deployment started
        # The unpack already running in its worker thread ends (a thread cannot be interrupted) ...
        await until(lambda: not any(p.name.startswith(".staging-") for p in web.iterdir()), 60)
        # ... and the same deploy again finds the version installed whole (not a dir without its record).
        started = await o.deploy("web", version="v2", artifact_id=art, actor="ci")
        d = await _finished(o, started["deployment_id"])
        assert d["status"] == "succeeded", d
        assert len(list((web / "v2" / "app").iterdir())) == 4000
        assert [i["version"] for i in await arts.installs("web")] == ["v2"]
    finally:
        await arts.stop(5)


async def test_a_half_installed_release_dir_is_cleaned_and_installed_again(h: Harness, tmp_path: Path) -> None:
    o = await h.orch()
    arts = o.artifacts = await _artifact_store(h, tmp_path)
    try:
        await o.apply(web_spec(extra="deploy: {drain: 0s}\n"), "web.yaml")
        await until(lambda: o.describe("web")["status"] == "running")
        art = await _upload(arts, _many_files_tgz(3))
        left = tmp_path / "data" / "releases" / "web" / "v2"  # what an interrupted install left: no record
        (left / "app").mkdir(parents=True)
        (left / "app" / "f00000.txt").write_text("half")
        (left / "junk").write_text("x")
        d = await _finished(o, (await o.deploy("web", version="v2", artifact_id=art, actor="ci"))["deployment_id"])
        assert d["status"] == "succeeded", d
        assert sorted(p.name for p in (left / "app").iterdir()) == ["f00000.txt", "f00001.txt", "f00002.txt"]
        assert (left / "app" / "f00000.txt").read_text().startswith("file 0") and not (left / "junk").exists()
    finally:
        await arts.stop(5)


async def test_a_refused_deploy_installs_nothing(h: Harness, tmp_path: Path) -> None:
    o = await h.orch()
    arts = o.artifacts = await _artifact_store(h, tmp_path)
    try:
        await o.apply(web_spec(extra="deploy: {drain: 0s, health_deadline: 20s}\n"), "web.yaml")
        await until(lambda: o.describe("web")["status"] == "running")
        art = await _upload(arts, _many_files_tgz(3))
        with pytest.raises(SpecError, match="no-such-user-d17"):  # refused by admission
            await o.deploy("web", version="v4", artifact_id=art, actor="ci", overrides={"user": "no-such-user-d17"})
        running = await o.deploy("web", version="slow", actor="ci", overrides={"cmd": ["sleep", "60"]})
        with pytest.raises(Conflict, match="being deployed"):
            await o.deploy("web", version="v3", artifact_id=art, actor="ci")
        assert not (tmp_path / "data" / "releases" / "web" / "v3").exists()
        assert not (tmp_path / "data" / "releases" / "web" / "v4").exists()
        assert await arts.installs("web") == []
        await _finished(o, running["deployment_id"])
    finally:
        await arts.stop(5)
