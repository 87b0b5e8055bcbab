"""A rolling deploy of a container service against the real dockerd (skipped without one): requests
resolved through the endpoint board (what the gate's `service:NAME` reads) never fail, the answers switch
to the new release's file, and the release records the image's digest."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.orch.dockerenv import docker_problem
from tests.orch.test_docker_orch import SITE, _orch, h  # noqa: F401  (h: the fixture with container cleanup)
from tests.orch.test_supervisor import Harness, until

pytestmark = pytest.mark.skipif(bool(docker_problem()), reason=f"docker runtime: {docker_problem()}")

SPEC = (
    SITE + 'config_files: [{ path: /www/index.html, content: "release ${version}\\n" }]\n'
    "deploy: { drain: 1s, health_deadline: 60s }\n"
)


async def test_rolling_deploy_of_a_container_without_a_failed_request(h: Harness) -> None:  # noqa: F811
    o = await _orch(h)
    await o.apply(SPEC, "site.yaml")
    await until(lambda: o.describe("site")["status"] == "running", 60)
    answers: list[str] = []
    failures: list[str] = []
    stop = asyncio.Event()

    async def traffic() -> None:
        async with httpx.AsyncClient(timeout=5) as c:
            while not stop.is_set():
                eps = h.endpoints.get("site")
                if not eps:
                    failures.append("no endpoint")
                else:
                    try:
                        r = await c.get(f"http://{eps[0].host}:{eps[0].port}/")
                        answers.append(r.text.strip()) if r.status_code == 200 else failures.append(str(r.status_code))
                    except httpx.HTTPError as e:
                        failures.append(repr(e))
                await asyncio.sleep(0.01)

    task = asyncio.create_task(traffic())
    try:
        await asyncio.sleep(0.5)
        started = await o.deploy("site", version="v2", actor="ci")
        t0 = time.monotonic()

        async def done() -> bool:
            return (await o.deployment(started["deployment_id"]))["status"] != "running" and (
                await o.deployment(started["deployment_id"])
            )["status"] != "pending"

        await until(done, 90)
        d = await o.deployment(started["deployment_id"])
        assert d["status"] == "succeeded", d
        await asyncio.sleep(0.5)
        assert time.monotonic() - t0 < 90
    finally:
        stop.set()
        await task
    assert not failures, failures[:5]
    assert answers[0] == "release 1" and answers[-1] == "release v2"
    rel = (await o.releases("site"))[0]
    assert rel["version"] == "v2" and rel["image"]
    doc = (await o.diff("site"))["release"]
    assert doc["image_digest"] and doc["image_digest"].split("@")[-1].startswith("sha256:")
