"""Containers through a real `fsctl serve` and the real dockerd: the example site applied with the CLI,
reached through the gate at `service:NAME`, shown by `fsctl service status`; `fsctl serve` stopped with
SIGTERM leaves the container running and the next start adopts it (same container id, no restart)."""

from __future__ import annotations

import hashlib
import json
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.orch.dockerenv import BASE_IMAGE, api, docker_problem
from tests.orch.test_e2e_orch import EXAMPLES, _status, _until

pytestmark = pytest.mark.skipif(bool(docker_problem()), reason=f"docker runtime: {docker_problem()}")


def _container(srv: Any, name: str) -> dict[str, Any] | None:
    d = _status(srv, name)
    running = [i for i in d["instances"] if i["phase"] == "running" and i["healthy"]]
    return running[0] if d["status"] == "running" and running else None


def _remove_owned(data_dir: Path) -> None:
    owner = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
    filters = json.dumps({"label": [f"infracore.owner={owner}"]})
    for c in api("GET", f"/containers/json?all=1&filters={quote(filters)}")[1] or []:
        api("DELETE", f"/containers/{c['Id']}?force=1")


def test_site_container_routed_stopped_with_the_platform_left_running_and_adopted(
    server_factory: Any, tmp_path: Path
) -> None:
    prefix = f"infracore-e{secrets.token_hex(3)}"
    env = {"INFRACORE_ORCH": json.dumps({"docker_name_prefix": prefix})}
    spec = tmp_path / "site.yaml"
    spec.write_text(
        (EXAMPLES / "site-container" / "site.yaml")
        .read_text()
        .replace("busybox:1.36", BASE_IMAGE)
        .replace("interval: 5s", "interval: 0.5s")
        .replace("${SPEC_DIR}", str(EXAMPLES / "site-container"))
    )
    srv = server_factory("data", env=env)
    try:
        r = srv.fsctl("service", "apply", "-f", str(spec), "--wait", "60")
        assert r.returncode == 0 and "applied site (version 1)" in r.stdout, r.stdout + r.stderr
        inst = _until(lambda: _container(srv, "site"), 60, "site running and healthy")
        cid = inst["container_id"]
        assert inst["runtime"] == "docker" and inst["container"] == f"{prefix}-site-1"
        st = srv.fsctl("service", "status", "site")
        assert st.returncode == 0 and f"runtime docker  image {BASE_IMAGE}" in st.stdout, st.stdout
        assert cid[:12] in st.stdout and f"http={inst['ports']['http']}->80" in st.stdout
        assert "docker" in srv.fsctl("service", "ls").stdout

        r = srv.fsctl("route", "add", "--host", "site.localhost", "--upstream", "service:site")
        assert r.returncode == 0, r.stderr
        url = f"http://127.0.0.1:{srv.http_port}/"
        _until(lambda: httpx.get(url, headers={"Host": "site.localhost"}).status_code == 200, 30, "gate -> site")
        assert "Served from a container" in httpx.get(url, headers={"Host": "site.localhost"}).text
    finally:
        assert srv.stop() == 0
    try:
        status, info = api("GET", f"/containers/{cid}/json")
        assert status == 200 and info["State"]["Running"], "a platform stop is not an outage"
        again = server_factory("data", env=env, console_port=srv.console_port)
        try:
            adopted = _until(lambda: _container(again, "site"), 60, "site adopted")
            assert adopted["container_id"] == cid and adopted["adopted"] and _status(again, "site")["restarts"] == 0
            assert api("GET", f"/containers/{cid}/json")[1]["State"]["StartedAt"] == info["State"]["StartedAt"]
            url = f"http://127.0.0.1:{again.http_port}/"
            _until(lambda: httpx.get(url, headers={"Host": "site.localhost"}).status_code == 200, 30, "gate again")
            r = again.fsctl("service", "rm", "site")
            assert r.returncode == 0 and "removed site" in r.stdout, r.stderr
            assert api("GET", f"/containers/{cid}/json")[0] == 404
        finally:
            assert again.stop() == 0
    finally:
        _remove_owned(tmp_path / "data")
