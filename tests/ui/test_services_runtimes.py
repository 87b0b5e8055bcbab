"""The Services pages with container runtimes, in a browser against a real `fsctl serve` and the real
dockerd (skipped with the reason without one): an image service created from the New service form turns
healthy with its runtime, container and host→container ports shown, answers 200 through a gate route
`service:NAME`; a hostile volume (`/:/host`) shows the API's refusal under the volumes field; a viewer
sees no New service button. Containers made here are removed (by the service label) at the end."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import RunningServer, kill_left_instances, start_server
from tests.orch.dockerenv import BASE_IMAGE, api, docker_problem
from tests.ui.conftest import login, shot

pytestmark = pytest.mark.skipif(bool(docker_problem()), reason=f"docker runtime: {docker_problem()}")

NAME = f"uisite{secrets.token_hex(3)}"


def _remove_containers(service: str) -> None:
    label = quote('{"label":["infracore.service=%s"]}' % service, safe="")
    status, found = api("GET", f"/containers/json?all=1&filters={label}")
    for c in found if status == 200 else []:
        api("DELETE", f"/containers/{c['Id']}?force=1")


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[RunningServer]:
    """A server of its own: it runs containers, removed with it whatever the test's outcome."""
    srv = start_server(tmp_path_factory.mktemp("uisvc") / "data")
    try:
        yield srv
    finally:
        try:
            srv.api("DELETE", f"/api/services/{NAME}", params={"volumes": "1"})
        except httpx.HTTPError:
            pass
        srv.stop()
        kill_left_instances(srv.data_dir)  # native services outlive the server
        _remove_containers(NAME)


def _fill(form: Any, name: str, volumes: str = "") -> None:
    form.locator("[name=name]").fill(name)
    form.locator("[name=image]").fill(BASE_IMAGE)
    form.get_by_label("Port 1 name").fill("http")
    form.get_by_label("Port 1 internal").fill("80")
    form.locator("[name=env]").fill("GREETING=hello from the form")
    form.locator("[name=volumes]").fill(volumes)
    form.locator("[name=memory]").fill("64Mi")
    form.locator("[name=cpu]").fill("0.5")
    form.locator("[name=health]").fill("/")


def test_an_image_service_created_from_the_form_runs_healthy_and_answers_through_the_gate(
        page: Any, console: RunningServer) -> None:
    from playwright.sync_api import expect

    login(page, "admin", console.admin_password, "/services")
    page.get_by_role("button", name="New service").click()
    form = page.get_by_role("form", name="New service")

    # A hostile bind mount: refused by the API, its message shown under the volumes field, nothing made.
    _fill(form, NAME, volumes="/:/host")
    form.get_by_role("button", name="Create service").click()
    refusal = form.locator(".field-problem[data-field='volumes']")
    expect(refusal).to_contain_text("refused")
    expect(refusal).to_contain_text("allow_host_mounts")
    expect(form.locator("[name=volumes]")).to_have_attribute("aria-invalid", "true")
    shot(page, "services-form-hostile-volume")
    assert console.api("GET", f"/api/services/{NAME}").status_code == 404

    # A named volume instead: created, the page goes to the service, which turns healthy.
    form.locator("[name=volumes]").fill("data:/data")
    form.get_by_role("button", name="Create service").click()
    expect(page).to_have_url(re.compile(f"/services/{NAME}$"))
    expect(page.get_by_test_id("service-status")).to_contain_text("running", timeout=90_000)
    expect(page.get_by_test_id("service-runtime")).to_have_text("docker")
    row = page.locator("tr[data-instance]").first
    expect(row.get_by_text("healthy", exact=True)).to_be_visible(timeout=60_000)
    inst = console.api("GET", f"/api/services/{NAME}").json()["instances"][0]
    assert inst["runtime"] == "docker" and inst["image"] == BASE_IMAGE and inst["container_ports"] == {"http": 80}
    host_port = inst["ports"]["http"]
    expect(row.get_by_test_id("container")).to_contain_text(inst["container"])
    expect(row.get_by_test_id("container")).to_contain_text(inst["container_id"][:12])
    expect(row.get_by_test_id("image")).to_have_text(BASE_IMAGE)
    expect(row.get_by_test_id("ports")).to_have_text(f"http {host_port}\u219280")
    spec = console.api("GET", f"/api/services/{NAME}").json()["spec"]
    assert spec["env"] == {"GREETING": "hello from the form"} and spec.get("replicas", 1) == 1
    assert spec["volumes"] == ["data:/data"] and spec["healthcheck"]["http"].endswith("${PORT}/")
    status, info = api("GET", f"/containers/{inst['container_id']}/json")
    assert status == 200 and info["HostConfig"]["Memory"] == 64 * 2**20 and info["HostConfig"]["NanoCpus"] == 5 * 10**8
    assert "GREETING=hello from the form" in info["Config"]["Env"]
    shot(page, "service-detail-docker")

    # Through the gate: a route to service:NAME answers with the container's page.
    r = console.api("POST", "/api/routes", json={"host": f"{NAME}.localhost", "upstreams": [f"service:{NAME}"]})
    assert r.status_code == 200, r.text
    got = httpx.get(f"http://127.0.0.1:{console.http_port}/", headers={"Host": f"{NAME}.localhost"}, timeout=10)
    assert got.status_code == 200, got.text
    direct = httpx.get(f"http://127.0.0.1:{host_port}/", timeout=10)
    assert direct.status_code == 200 and direct.text == got.text

    # The list shows the runtime, image, container and ports too.
    page.get_by_role("link", name="Services", exact=True).first.click()
    cell = page.locator(f"tr[data-service='{NAME}'] [data-testid='runtime']")
    expect(cell).to_contain_text("docker")
    expect(cell).to_contain_text(BASE_IMAGE)
    expect(cell).to_contain_text(inst["container_id"][:12])
    expect(cell).to_contain_text(f"http {host_port}\u219280")
    shot(page, "services-list-docker")


def test_the_form_switches_to_the_yaml_editor_with_the_spec(page: Any, console: RunningServer) -> None:
    from playwright.sync_api import expect

    login(page, "admin", console.admin_password, "/services")
    page.get_by_role("button", name="New service").click()
    form = page.get_by_role("form", name="New service")
    form.locator("[name=name]").fill("yamlish")
    form.locator("[name=image]").fill(BASE_IMAGE)
    form.locator("[name=env]").fill("A=1\nnot a pair")
    form.get_by_role("button", name="Create service").click()
    expect(form.locator(".field-problem[data-field='env']")).to_contain_text("is not KEY=VALUE")
    form.locator("[name=env]").fill("A=1")
    form.get_by_role("button", name="Edit as YAML").click()
    editor = page.get_by_label("Spec YAML")
    expect(editor).to_have_value(re.compile(r"name: yamlish\nimage: infracore-test/busybox:1\n"))
    expect(editor).to_have_value(re.compile(r"env:\n  A: \"1\""))
    assert console.api("GET", "/api/services/yamlish").status_code == 404


def test_a_viewer_sees_no_new_service_button(page: Any, console: RunningServer) -> None:
    from playwright.sync_api import expect

    assert console.api("POST", "/api/users", json={"username": "vic", "password": "viewer-pass-1",
                                                   "role": "viewer"}).status_code == 200
    login(page, "vic", "viewer-pass-1", "/services")
    expect(page.get_by_test_id("whoami")).to_contain_text("viewer")
    expect(page.get_by_role("heading", name="Services")).to_be_visible()
    expect(page.locator("table[aria-label='Services'], .empty").first).to_be_visible()
    assert page.get_by_role("button", name="New service").count() == 0
    assert page.get_by_role("form", name="New service").count() == 0
