"""Browser tests of the console: Playwright (the Python package) driving Debian's chromium, headless,
against a real `fsctl serve` on loopback with the built UI (ui/dist). No browser is ever downloaded.

Missing pieces (no chromium, no build) skip with the reason; with INFRACORE_REQUIRE_BROWSER=1 (CI)
they fail instead. Screenshots go to tests/ui/artifacts/ (or $INFRACORE_UI_ARTIFACTS)."""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, RunningServer, kill_left_instances, start_server

CHROMIUM = os.environ.get("INFRACORE_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("INFRACORE_UI_ARTIFACTS", ROOT / "tests" / "ui" / "artifacts"))


def _missing() -> str | None:
    if not (ROOT / "ui" / "dist" / "index.html").is_file():
        return "the UI is not built (make ui)"
    if not Path(CHROMIUM).exists():
        return f"no browser at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Module scope: Playwright's sync API holds an event loop while it runs, which the asyncio tests
    # of other packages must not find when they start theirs.
    why = _missing()
    if why:
        if os.environ.get("INFRACORE_REQUIRE_BROWSER"):
            pytest.fail(f"browser tests required but {why}")
        pytest.skip(why)
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=10_000)  # a shared 2-core machine: generous, the live paths are the point

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]
        )
        yield b
        b.close()


@pytest.fixture(scope="session", autouse=True)
def _fresh_artifacts() -> None:
    if ARTIFACTS.is_dir():
        for old in ARTIFACTS.glob("*.png"):
            old.unlink()  # this run's screenshots only


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[RunningServer]:
    """One `fsctl serve` for a test module (the tests share its services and routes)."""
    srv = start_server(tmp_path_factory.mktemp("ui") / "data")
    try:
        yield srv
    finally:
        srv.stop()
        kill_left_instances(srv.data_dir)  # native services outlive the server


@pytest.fixture
def page(browser: Any, console: RunningServer, request: pytest.FixtureRequest) -> Iterator[Any]:
    ctx = browser.new_context(base_url=console.url, viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(20_000)
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        pg.screenshot(path=str(ARTIFACTS / f"FAILED-{request.node.name}.png"), full_page=True)
    ctx.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Generator[None, Any, None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


def shot(page: Any, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def login(page: Any, username: str, password: str, path: str = "/") -> None:
    page.goto(path)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


__all__ = ["ARTIFACTS", "login", "shot"]
