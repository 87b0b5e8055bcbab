"""The Deploys page and a service's Releases tab, in a browser against a real `fsctl serve` running a real
Python app (tests/orch/deployapp): two applies make releases 1 and 2, the tab lists both (the serving one
marked), the diff shows the env change and the config file's text diff, an admin rolls back from the UI
and the Deploys page (open in another tab) shows that deployment reach `succeeded` live, its detail has the
phases and the step log; a viewer sees the releases but no rollback button."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, RunningServer
from tests.ui.conftest import login, shot

APP = ROOT / "tests" / "orch" / "deployapp" / "app.py"
NAME = "deployweb"


def _spec(workdir: Path, version: str, conf: str, slow: str) -> dict[str, Any]:
    return {"name": NAME, "cmd": ["python3", "app.py", "${PORT}"], "workdir": str(workdir),
            "env": {"VERSION": version, "CONF": "app.ini", "SLOW_START": slow},
            "config_files": [{"path": "app.ini", "content": conf}],
            "ports": [{"name": "http", "internal": "auto"}],
            "healthcheck": {"http": "http://127.0.0.1:${PORT}/healthz", "interval": "1s", "timeout": "2s",
                            "retries": 3, "start_period": "20s"}}


def _settled(console: RunningServer, timeout: float = 90) -> list[dict[str, Any]]:
    """The service's deployments once none is pending or running and an instance answers healthy."""
    deadline = time.monotonic() + timeout
    while True:
        deps = console.api("GET", "/api/deployments", params={"service": NAME}).json()
        svc = console.api("GET", f"/api/services/{NAME}").json()
        healthy = any(i["healthy"] for i in svc.get("instances", []))
        if healthy and all(d["status"] not in ("pending", "running") for d in deps):
            return deps
        assert time.monotonic() < deadline, (deps, svc)
        time.sleep(0.3)


def _answer(console: RunningServer) -> str:
    endpoints = console.api("GET", f"/api/services/{NAME}/status").json()["endpoints"]
    return httpx.get(f"http://{endpoints[0]}/", timeout=5).text if endpoints else ""


@pytest.fixture(scope="module")
def two_releases(console: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Release 1 (v1, a slow start so its re-deploy is seen running) and release 2 (v2, other config)."""
    work = tmp_path_factory.mktemp("deployweb")
    shutil.copy(APP, work / "app.py")
    r = console.api("POST", "/api/services", json=_spec(work, "v1", "mode=one\nport=auto\n", "3"))
    assert r.status_code == 200, r.text
    _settled(console)
    r = console.api("POST", "/api/services", json=_spec(work, "v2", "mode=two\nport=auto\n", "0"))
    assert r.status_code == 200, r.text
    deps = _settled(console)
    releases = console.api("GET", f"/api/services/{NAME}/releases").json()
    got = [(x["release"], x["current"]) for x in sorted(releases, key=lambda x: x["release"])]
    assert got == [(1, False), (2, True)], (releases, deps)
    assert _answer(console).startswith("v2 mode=two")
    return releases


def test_releases_diff_and_a_rollback_followed_live_on_the_deploys_page(
        page: Any, console: RunningServer, two_releases: list[dict[str, Any]]) -> None:
    from playwright.sync_api import expect

    login(page, "admin", console.admin_password, f"/services/{NAME}")
    page.get_by_role("tab", name="Releases").click()
    rows = page.get_by_role("table", name="Releases")
    expect(rows.locator("tr[data-release]")).to_have_count(2)
    expect(rows.locator("tr[data-release='2']")).to_contain_text("current")
    expect(rows.locator("tr[data-release='1']")).not_to_contain_text("current")
    expect(rows.locator("tr[data-release='2']")).to_contain_text("admin")

    # The diff 1 → 2 (the default): the env values side by side, the config file as a text diff.
    diff = page.get_by_role("table", name="Release diff")
    api_diff = console.api("GET", f"/api/services/{NAME}/diff", params={"from": "1", "to": "2"}).json()
    fields = {c["field"]: c for c in api_diff["changes"]}
    env_field = next(f for f in fields if f.endswith("VERSION"))
    conf_field = next(f for f in fields if "app.ini" in f and fields[f]["diff"])
    env_row = diff.locator(f"tr[data-field='{env_field}']")
    expect(env_row).to_contain_text("v1")
    expect(env_row).to_contain_text("v2")
    text = diff.get_by_label(f"Changes of {conf_field}")
    expect(text).to_contain_text("- mode=one")
    expect(text).to_contain_text("+ mode=two")
    expect(text).to_contain_text("port=auto")
    shot(page, "releases-diff")

    # The Deploys page in another tab, live, before the rollback starts.
    deploys = page.context.new_page()
    deploys.goto("/deploys")
    expect(deploys.locator("[data-live='open']")).to_be_visible()
    listed = deploys.get_by_role("table", name="Deployments").locator("tr[data-deployment]")
    before = len(console.api("GET", "/api/deployments").json())
    expect(listed).to_have_count(before)

    # Every status the Deploys tab ever shows for a deployment row, as it changes (it is never reloaded).
    deploys.evaluate("""() => {
        window.__seen = [];
        const note = () => document.querySelectorAll("tr[data-deployment]").forEach((tr) => {
            const s = `${tr.dataset.deployment}:${tr.querySelector("[data-testid=status]").textContent}`;
            if (!window.__seen.includes(s)) window.__seen.push(s);
        });
        new MutationObserver(note).observe(document.body, {subtree: true, childList: true, characterData: true});
    }""")

    # Roll back to release 1 from the Releases tab, confirmed.
    page.once("dialog", lambda d: d.accept())
    rows.locator("tr[data-release='1']").get_by_role("button", name="Roll back to this release").click()
    progress = page.get_by_test_id("rollback-progress")
    expect(progress).to_contain_text("Rolling back to release 1")
    dep_id = int(progress.get_by_role("link").inner_text().split("#")[1])

    # Without a reload, the Deploys tab gets the new row and sees it running, then succeeded.
    row = deploys.locator(f"tr[data-deployment='{dep_id}']")
    expect(row).to_be_visible()
    expect(row).to_contain_text("rollback")
    shot(deploys, "deploys-running")
    expect(row.get_by_test_id("status")).to_contain_text("succeeded", timeout=90_000)
    expect(progress).to_contain_text("succeeded", timeout=30_000)
    expect(progress).to_contain_text("last step: done")
    expect(listed).to_have_count(before + 1)
    assert deploys.evaluate("performance.getEntriesByType('navigation').length") == 1  # never reloaded
    seen = deploys.evaluate("window.__seen")
    assert f"{dep_id}:running" in seen and f"{dep_id}:succeeded" in seen, seen
    shot(deploys, "deploys-list")
    dep = console.api("GET", f"/api/deployments/{dep_id}").json()
    assert dep["kind"] == "rollback" and dep["status"] == "succeeded" and dep["actor"] == "admin"
    expect(row.get_by_test_id("releases")).to_have_text(f"{dep['from_release']} → {dep['release']}")
    assert _answer(console).startswith("v1 mode=one")

    # The Releases tab now marks the release serving after the rollback.
    current = [x["release"] for x in console.api("GET", f"/api/services/{NAME}/releases").json() if x["current"]]
    expect(rows.locator(f"tr[data-release='{current[0]}']")).to_contain_text("current")
    shot(page, "releases-after-rollback")

    # The deployment's detail: phases and the step log with the gate switch.
    row.get_by_role("link", name=f"#{dep_id}").click()
    expect(deploys.get_by_test_id("deployment-status")).to_contain_text("succeeded")
    phases = deploys.get_by_role("table", name="Phases")
    for phase in dep["phases"]:
        expect(phases.locator(f"tr[data-phase='{phase}']")).to_be_visible()
    assert {"running", "switched", "finished"} <= set(dep["phases"]), dep["phases"]
    log = deploys.get_by_role("table", name="Step log")
    expect(log.locator("tr[data-step]")).to_have_count(len(dep["log"]))
    expect(log.locator("tr[data-step='switch']")).to_be_visible()
    shot(deploys, "deployment-detail")


def test_a_deployment_detail_follows_a_running_deploy_live(
        page: Any, console: RunningServer, two_releases: list[dict[str, Any]]) -> None:
    """Open on a deployment while it runs (release 1 starts slowly): it turns succeeded without a reload."""
    from playwright.sync_api import expect

    _settled(console)
    serving = next(x for x in console.api("GET", f"/api/services/{NAME}/releases").json() if x["current"])
    target = 2 if serving["release"] != 2 else 1
    login(page, "admin", console.admin_password, "/deploys")
    expect(page.locator("[data-live='open']")).to_be_visible()
    r = console.api("POST", f"/api/services/{NAME}/rollback", json={"to": target})
    assert r.status_code == 202, r.text
    dep_id = r.json()["deployment_id"]
    page.goto(f"/deploys/{dep_id}")
    expect(page.locator("[data-live='open']")).to_be_visible()
    status = page.get_by_test_id("deployment-status")
    expect(status).to_contain_text("succeeded", timeout=90_000)
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    expect(page.get_by_role("table", name="Step log").locator("tr[data-step='done']")).to_be_visible()


def test_a_viewer_sees_releases_and_deploys_but_no_rollback(
        page: Any, console: RunningServer, two_releases: list[dict[str, Any]]) -> None:
    from playwright.sync_api import expect

    assert console.api("POST", "/api/users", json={"username": "dora", "password": "viewer-pass-1",
                                                   "role": "viewer"}).status_code == 200
    login(page, "dora", "viewer-pass-1", f"/services/{NAME}")
    expect(page.get_by_test_id("whoami")).to_contain_text("viewer")
    page.get_by_role("tab", name="Releases").click()
    rows = page.get_by_role("table", name="Releases").locator("tr[data-release]")
    expect(rows.first).to_be_visible()
    assert rows.count() >= 2
    expect(page.get_by_role("table", name="Release diff")).to_be_visible()
    expect(page.get_by_role("button", name="Roll back to this release")).to_have_count(0)
    shot(page, "viewer-releases")
    page.get_by_role("link", name="Deploys", exact=True).click()
    listed = page.get_by_role("table", name="Deployments").locator("tr[data-deployment]")
    expect(listed.first).to_be_visible()
    assert page.get_by_role("button", name=re.compile("Roll back")).count() == 0
    # The service filter: only that service's deployments (and the URL says which).
    page.get_by_label("Service").select_option(NAME)
    expect(page).to_have_url(re.compile(f"/deploys\\?service={NAME}$"))
    expect(listed).to_have_count(len(console.api("GET", "/api/deployments", params={"service": NAME}).json()))
    # The API refuses a viewer's rollback too (the button's absence is not the only guard).
    tok = console.login("dora", "viewer-pass-1")
    assert console.api("POST", f"/api/services/{NAME}/rollback", token=tok, json={"to": 1}).status_code == 403
