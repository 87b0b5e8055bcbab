"""The live stream survives a server restart: the page shows "reconnecting", comes back on its own,
resumes after the last event it saw, and keeps updating without a reload."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ROOT, RunningServer, start_server
from tests.ui.conftest import login, shot

pytest.importorskip("playwright")
from playwright.sync_api import expect


def test_the_page_reconnects_after_a_restart_and_stays_live(page: Any, console: RunningServer) -> None:
    login(page, "admin", console.admin_password, "/services")
    live = page.locator("[data-live]")
    expect(live).to_have_attribute("data-live", "open")
    console.stop()
    expect(live).to_have_attribute("data-live", "reconnecting")
    shot(page, "reconnecting")
    again = start_server(console.data_dir, console_port=console.console_port)
    try:
        expect(live).to_have_attribute("data-live", "open", timeout=30_000)
        # Same data dir: the session cookie is still good, and events after the restart arrive.
        assert again.fsctl("service", "apply", "-f", str(ROOT / "examples/hello/hello.yaml")).returncode == 0
        expect(page.locator("tr[data-service=hello]")).to_be_visible()
        assert page.url.endswith("/services")
    finally:
        again.stop()
