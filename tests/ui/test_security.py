"""The Security page in a real browser against a real `fsctl serve`: two-factor enrolment from the page
shows 10 recovery codes once (copy, download), a recovery code logs in exactly once, new codes void the
old ones; the host scan lists findings by severity with their fixes and takes new ones live from the
`security.finding` event; a viewer sees neither the scan nor any mutating control."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pyotp
import pytest

from tests.conftest import RunningServer
from tests.ui.conftest import login, shot

pytest.importorskip("playwright")
from playwright.sync_api import expect

CODE = re.compile(r"^[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}$")


def _api_login(console: RunningServer, username: str, password: str, otp: str) -> int:
    return httpx.post(f"{console.url}/api/auth/login", timeout=10,
                      json={"username": username, "password": password, "otp": otp}).status_code


def _log_out(page: Any) -> None:
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()


def _otp_login(page: Any, username: str, password: str, otp: str) -> None:
    login(page, username, password, "/security")
    page.get_by_label("Two-factor code").fill(otp)
    page.get_by_role("button", name="Verify").click()


def test_enrol_totp_see_recovery_codes_log_in_with_one_once_and_regenerate(
        page: Any, console: RunningServer) -> None:
    pw = "rita-pass-123"
    assert console.api("POST", "/api/users", json={"username": "rita", "password": pw,
                                                   "role": "admin"}).status_code == 200
    page.on("dialog", lambda d: d.accept())
    login(page, "rita", pw, "/security")
    page.get_by_role("button", name="Set up two-factor login").click()
    secret = page.get_by_test_id("totp-secret").input_value()
    page.get_by_label("Code from the app").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Confirm").click()

    codes_box = page.get_by_test_id("recovery-codes")
    expect(codes_box).to_contain_text("Shown once")
    items = page.get_by_test_id("recovery-code")
    expect(items).to_have_count(10)
    codes = items.all_inner_texts()
    expect(page.get_by_test_id("codes-left")).to_have_text("10 recovery codes left")  # the user list, live (user.updated)
    assert all(CODE.match(c) for c in codes) and len(set(codes)) == 10, codes
    shot(page, "security-recovery-codes")
    with page.expect_download() as dl:
        page.get_by_role("button", name="Download as text").click()
    saved = open(dl.value.path()).read()
    assert all(c in saved for c in codes) and "rita" in saved
    page.get_by_role("button", name="I have saved them").click()
    expect(codes_box).to_have_count(0)  # shown once: gone for good
    expect(page.get_by_test_id("my-codes-left")).to_contain_text("10 of 10")

    # The login page says a recovery code works, and one does — once.
    _log_out(page)
    login(page, "rita", pw, "/security")
    expect(page.get_by_text("one of your recovery codes")).to_be_visible()
    shot(page, "security-login-recovery-hint")
    page.get_by_label("Two-factor code").fill(codes[0].upper())  # typed from paper: case does not matter
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_test_id("my-codes-left")).to_contain_text("9 of 10")
    _log_out(page)
    _otp_login(page, "rita", pw, codes[0])
    expect(page.get_by_text("wrong or already used recovery code")).to_be_visible()
    expect(page.get_by_test_id("whoami")).to_have_count(0)

    # Regenerate (confirmed in a dialog): ten new codes, and the old ones stop working.
    page.get_by_role("button", name="Back").click()
    _otp_login(page, "rita", pw, codes[1])
    expect(page.get_by_test_id("my-codes-left")).to_contain_text("8 of 10")
    expect(page.get_by_test_id("codes-left")).to_have_text("8 recovery codes left")  # the user list says it too
    page.get_by_test_id("my-codes-left").locator("..").get_by_role("button", name="New recovery codes").click()
    expect(items).to_have_count(10)
    fresh = items.all_inner_texts()
    assert not set(fresh) & set(codes)
    shot(page, "security-new-recovery-codes")
    assert _api_login(console, "rita", pw, codes[2]) == 401
    assert _api_login(console, "rita", pw, fresh[0]) == 200
    page.get_by_role("button", name="I have saved them").click()
    page.reload()
    expect(page.get_by_test_id("my-codes-left")).to_contain_text("9 of 10")


def test_the_scan_shows_findings_with_fixes_and_takes_new_ones_live(page: Any, console: RunningServer) -> None:
    login(page, "admin", console.admin_password, "/security")
    scan = page.get_by_test_id("scan")
    mine = scan.locator('[data-id="platform.admin_no_2fa.admin"]')
    expect(mine).to_contain_text("Admin 'admin' logs in without two-factor authentication")
    expect(mine.get_by_test_id("fix")).to_have_text("fsctl user totp enable admin")
    expect(page.get_by_test_id("scan-summary")).to_contain_text("Scanned")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    mine.get_by_role("button", name="Copy fix").click()
    expect(mine.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == "fsctl user totp enable admin"  # the command alone
    # Grouped by severity, most severe first.
    order = ["critical", "high", "medium", "low", "info"]
    shown = [s for s in scan.locator("h3 [data-severity]").evaluate_all("els => els.map(e => e.dataset.severity)")]
    assert shown and shown == sorted(shown, key=order.index), shown
    expect(scan.get_by_role("region", name="medium findings").locator('[data-id="platform.admin_no_2fa.admin"]'))\
        .to_be_visible()

    page.get_by_role("button", name="Scan now").click()
    expect(page.get_by_role("button", name="Scan now")).to_be_enabled()
    expect(mine).to_be_visible()

    # A new problem found by a scan the page did not ask for arrives through the event stream.
    assert console.api("POST", "/api/users", json={"username": "late-admin", "password": "late-pass-123",
                                                   "role": "admin"}).status_code == 200
    t0 = time.monotonic()
    assert console.api("GET", "/api/security/scan").status_code == 200
    late = scan.locator('[data-id="platform.admin_no_2fa.late-admin"]')
    expect(late).to_contain_text("late-admin")
    expect(late).to_contain_text("new")
    expect(late.get_by_test_id("fix")).to_have_text("fsctl user totp enable late-admin")
    assert time.monotonic() - t0 < 15
    scan.scroll_into_view_if_needed()
    shot(page, "security-scan")
    # On a phone, long evidence and fixes wrap instead of widening the page.
    page.set_viewport_size({"width": 390, "height": 844})
    expect(late).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 400
    shot(page, "security-scan-phone")


def test_a_viewer_sees_no_scan_and_no_mutating_controls(page: Any, console: RunningServer) -> None:
    assert console.api("POST", "/api/users", json={"username": "vic", "password": "viewer-pass-9",
                                                   "role": "viewer"}).status_code == 200
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    login(page, "vic", "viewer-pass-9", "/security")
    expect(page.get_by_test_id("whoami")).to_contain_text("viewer")
    expect(page.get_by_test_id("scan-admin-only")).to_be_visible()
    expect(page.get_by_role("cell", name="vic", exact=True)).to_be_visible()  # the user list did load
    for name in ("Scan now", "Reset password", "Remove", "New recovery codes", "Add user", "Create token",
                 "Revoke", "Copy fix"):
        expect(page.get_by_role("button", name=name)).to_have_count(0)
    expect(page.get_by_test_id("finding")).to_have_count(0)
    assert not [u for u in asked if "/api/security/scan" in u]
    shot(page, "security-viewer")
