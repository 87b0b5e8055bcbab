"""`.venv/bin/python scripts/docs_screenshots.py`: the console screenshots of docs/quickstart.md, taken from a
real `fsctl serve` (temporary data dir, loopback ports) running the hello service behind a route, with
Playwright driving Debian's chromium (`/usr/bin/chromium`; never downloaded). Writes docs/images/*.png."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "images"
FSCTL = [sys.executable, "-m", "fsctl"]
PAGES = [
    ("overview", "/"),
    ("services", "/services"),
    ("service-hello", "/services/hello"),
    ("gateway", "/gateway"),
    ("logs", "/logs?service=hello"),
    ("metrics", "/monitoring"),
]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="infracore-shots-") as tmp:
        data, console = Path(tmp) / "data", _port()
        url = f"http://127.0.0.1:{console}"
        env = {**os.environ, "XDG_CONFIG_HOME": f"{tmp}/xdg", "FSCTL_SERVER": url}
        env.pop("FSCTL_TOKEN", None)
        srv = subprocess.Popen(
            [
                *FSCTL,
                "serve",
                "--data-dir",
                str(data),
                "--console",
                f"127.0.0.1:{console}",
                "--http-port",
                str(_port()),
                "--https-port",
                str(_port()),
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            password = (data / "initial-admin-password").read_text().strip()
            subprocess.run(
                [*FSCTL, "login", "--user", "admin", "--password-stdin"],
                input=password.encode(),
                env=env,
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
            subprocess.run(
                [*FSCTL, "service", "apply", "-f", "examples/hello/hello.yaml", "--wait", "60"],
                env=env,
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
            subprocess.run(
                [*FSCTL, "route", "add", "--host", "hello.localhost", "--upstream", "service:hello"],
                env=env,
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
            time.sleep(8)  # a few seconds of metrics for the charts
            with sync_playwright() as p:
                browser = p.chromium.launch(
                    executable_path="/usr/bin/chromium",
                    headless=True,
                    args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
                )
                page = browser.new_page(base_url=url, viewport={"width": 1280, "height": 800})
                page.goto("/")
                page.get_by_label("Username").fill("admin")
                page.get_by_label("Password").fill(password)
                page.get_by_role("button", name="Log in").click()
                page.wait_for_load_state("networkidle")
                for name, path in PAGES:
                    page.goto(path)
                    page.wait_for_load_state("networkidle")
                    page.wait_for_timeout(1500)  # charts draw after their data
                    page.screenshot(path=str(OUT / f"console-{name}.png"))
                    print(f"docs/images/console-{name}.png")
                browser.close()
        finally:
            subprocess.run([*FSCTL, "service", "rm", "hello"], env=env, cwd=ROOT, capture_output=True)
            srv.send_signal(signal.SIGTERM)
            srv.wait(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
