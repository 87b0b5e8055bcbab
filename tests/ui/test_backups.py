"""The Backups page in a real browser against a real `fsctl serve` (snap in it): a plan added from the
page on a temp dir, run from the page with its progress, the snapshot appearing with its sizes, restored
through the wizard into a new directory whose file has the same bytes; a viewer sees no mutating control."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

import httpx

from tests.conftest import ROOT, RunningServer
from tests.ui.conftest import login, shot

pytest.importorskip("playwright")
from playwright.sync_api import expect


def test_plan_run_snapshot_and_restore_through_the_wizard(page: Any, console: RunningServer,
                                                           tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    payload = os.urandom(300_000) + "héllo\n".encode() * 5000  # incompressible + compressible parts
    (src / "data.bin").write_bytes(payload)
    login(page, "admin", console.admin_password, "/backups")
    expect(page.get_by_role("heading", name="Backups", exact=True)).to_be_visible()
    expect(page.get_by_text("No backup plans yet.")).to_be_visible()

    # A bad path: the API's precise message and the request id, nothing added.
    form = page.get_by_role("form", name="Add plan")
    form.get_by_label("Name").fill("ui-files")
    form.get_by_label("Paths").fill("relative/dir")
    form.get_by_role("button", name="Add plan").click()
    expect(form.get_by_role("alert")).to_contain_text("absolute path")
    expect(form.get_by_role("alert")).to_contain_text("request id")

    form.get_by_label("Paths").fill(str(src))
    form.get_by_label("Cron").fill("0 3 * * *")
    form.get_by_label("keep-last").fill("5")
    form.get_by_role("button", name="Add plan").click()
    row = page.locator("tr[data-plan=ui-files]")
    expect(row).to_contain_text(str(src))
    expect(row).to_contain_text("0 3 * * *")
    expect(row).to_contain_text("last 5 · daily 7 · weekly 4 · monthly 3")
    expect(row.get_by_test_id("next-runs").locator("div")).to_have_count(3)

    row.get_by_role("button", name="Run now").click()
    run = page.get_by_test_id("run-ui-files")
    expect(run).to_have_attribute("data-state", "done", timeout=60_000)
    expect(run).to_contain_text("snapshot")
    snap = page.locator("tr[data-snapshot]")
    expect(snap).to_have_count(1)
    expect(snap).to_contain_text("ui-files")
    expect(snap.get_by_test_id("size")).to_have_text("327 KiB")  # 300 000 + 35 000 bytes
    expect(snap.get_by_test_id("size")).to_have_attribute("title", f"{len(payload)} bytes")
    stored = int(snap.get_by_test_id("stored").get_attribute("title").split()[0])
    assert 300_000 <= stored < len(payload), stored  # the random part does not compress, the text does
    expect(snap.get_by_test_id("dedup")).to_have_text(re.compile(r"^\d+(\.\d)?×$"))
    shot(page, "backups")

    # Restore it through the wizard into a directory that does not exist yet.
    target = tmp_path / "restored"
    snap.get_by_role("button", name="Restore…").click()
    wizard = page.get_by_role("region", name="Restore wizard")
    expect(wizard).to_contain_text("1. Snapshot")
    wizard.get_by_label("A new directory").check()
    wizard.get_by_label("Target directory").fill(str(target))
    wizard.get_by_role("button", name="Next").click()
    expect(wizard).to_contain_text(f"into {target}")
    wizard.get_by_role("button", name="Restore", exact=True).click()
    result = page.get_by_test_id("restore-run")
    expect(result).to_have_attribute("data-state", "done", timeout=60_000)
    expect(result).to_contain_text("restored")
    expect(page.get_by_test_id("restore-target")).to_have_text(str(target))
    shot(page, "backups-restored")
    restored = list(target.rglob("data.bin"))
    assert len(restored) == 1, list(target.rglob("*"))
    assert restored[0].read_bytes() == payload

    # Run again: the button is back, the unchanged file is reused (almost nothing stored), and removing
    # the plan keeps its snapshots.
    run_now = row.get_by_role("button", name="Run now")
    expect(run_now).to_be_enabled()
    run_now.click()
    expect(page.locator("tr[data-snapshot]")).to_have_count(2, timeout=60_000)
    second = int(page.locator("tr[data-snapshot]").first.get_by_test_id("stored").get_attribute("title").split()[0])
    assert second < stored // 10, (second, stored)
    page.once("dialog", lambda d: d.accept())
    row.get_by_role("button", name="Remove").click()
    expect(row).to_have_count(0)
    expect(page.locator("tr[data-snapshot]")).to_have_count(2)


def test_a_viewer_sees_no_mutating_controls_on_backups(page: Any, console: RunningServer,
                                                        tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    r = console.api("POST", "/api/snap/plans", json={"name": "viewer-seen", "paths": [str(tmp_path)]})
    assert r.status_code == 200, r.text
    job = console.api("POST", "/api/snap/plans/viewer-seen/run").json()
    assert console.api("POST", "/api/users", json={"username": "vic", "password": "viewer-pass-1",
                                                   "role": "viewer"}).status_code == 200
    login(page, "vic", "viewer-pass-1", "/backups")
    expect(page.get_by_test_id("whoami")).to_contain_text("viewer")
    expect(page.locator("tr[data-plan=viewer-seen]")).to_be_visible()
    for _ in range(600):
        if console.api("GET", f"/api/snap/jobs/{job['id']}").json()["state"] != "running":
            break
        page.wait_for_timeout(100)
    page.reload()
    expect(page.locator("tr[data-snapshot]").first).to_be_visible()
    page.wait_for_load_state("networkidle")
    mutating = re.compile(r"^(Run now|Remove|Add plan|Restore.*)$")
    assert page.get_by_role("button", name=mutating).count() == 0
    assert page.get_by_role("form", name="Add plan").count() == 0
    shot(page, "viewer-backups")


def test_run_now_shows_live_progress(page: Any, console: RunningServer, tmp_path: Path) -> None:
    # A rate-limited plan (1 MB/s over 4 MB) runs long enough for the page to show its progress.
    (tmp_path / "big.bin").write_bytes(os.urandom(4_000_000))
    r = console.api("POST", "/api/snap/plans", json={"name": "slow", "paths": [str(tmp_path)],
                                                      "rate_limit_mb_s": 1})
    assert r.status_code == 200, r.text
    login(page, "admin", console.admin_password, "/backups")
    row = page.locator("tr[data-plan=slow]")
    row.get_by_role("button", name="Run now").click()
    run = page.get_by_test_id("run-slow")
    expect(run).to_have_attribute("data-state", "running")
    expect(run.get_by_role("progressbar", name="Backup progress")).to_be_visible()
    expect(run).to_contain_text(re.compile(r"Backing up slow: \d+ files · [\d.]+ [KM]i?B read"))
    expect(row.get_by_role("button", name="Run now")).to_be_disabled()
    shot(page, "backups-running")
    expect(run).to_have_attribute("data-state", "done", timeout=60_000)
    expect(row.get_by_role("button", name="Run now")).to_be_enabled()
    expect(page.locator("tr[data-snapshot]").filter(has_text="slow")).to_have_count(1)


def test_restore_wizard_starts_a_shadow_instance(page: Any, console: RunningServer, tmp_path: Path) -> None:
    data = tmp_path / "notes"
    data.mkdir()
    (data / "notes.txt").write_text("notes v1\nbuy milk\n")
    app = ROOT / "examples" / "snap" / "notes_app.py"
    spec = tmp_path / "notes.yaml"
    spec.write_text(f"name: notes\ncmd: [python3, {app}, '${{PORT}}', {data}]\n"
                    "ports: [{name: http, internal: auto}]\n"
                    "healthcheck: {http: 'http://127.0.0.1:${PORT}/healthz', interval: 1s, timeout: 1s, retries: 2}\n")
    out = console.fsctl("service", "apply", "-f", str(spec), "--wait", "60", timeout=90)
    assert out.returncode == 0, out.stdout + out.stderr
    r = console.api("POST", "/api/snap/plans", json={"name": "notes-daily", "paths": [str(data)], "service": "notes"})
    assert r.status_code == 200, r.text
    login(page, "admin", console.admin_password, "/backups")
    row = page.locator("tr[data-plan=notes-daily]")
    expect(row).to_contain_text("service notes")
    row.get_by_role("button", name="Run now").click()
    expect(page.get_by_test_id("run-notes-daily")).to_have_attribute("data-state", "done", timeout=60_000)
    (data / "notes.txt").write_text("notes v1\nbuy milk\nbuy eggs (after the backup)\n")

    target = tmp_path / "restore" / "notes-check"
    page.locator("tr[data-snapshot]").filter(has_text="notes-daily").get_by_role("button", name="Restore…").click()
    wizard = page.get_by_role("region", name="Restore wizard")
    wizard.get_by_label("A new directory").check()
    wizard.get_by_label("Target directory").fill(str(target))
    wizard.get_by_label(re.compile("Start a shadow instance of notes")).check()
    wizard.get_by_role("button", name="Next").click()
    expect(wizard).to_contain_text("and start a shadow instance of notes")
    wizard.get_by_role("button", name="Restore", exact=True).click()
    expect(page.get_by_test_id("restore-run")).to_have_attribute("data-state", "done", timeout=150_000)
    shadow = page.get_by_test_id("shadow")
    expect(shadow).to_contain_text("notes-shadow")
    expect(shadow).to_contain_text("healthy")
    url = shadow.get_by_role("link").get_attribute("href")
    assert url and url.startswith("http://127.0.0.1:")
    body = httpx.get(url, timeout=5).text
    assert "buy milk" in body and "eggs" not in body  # what was backed up, not the live data
    shot(page, "backups-shadow")
    page.once("dialog", lambda d: d.accept())
    shadow.get_by_role("button", name="Stop shadow").click()
    expect(shadow).to_contain_text("stopped")
    assert console.api("GET", "/api/snap/shadows").json() == []
    assert console.fsctl("service", "rm", "notes").returncode == 0
