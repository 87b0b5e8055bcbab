"""The generated references (docs/reference/) match the code, and a stale one is named; the API reference is
served as a script-free HTML page at /api/docs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import ROOT


def _check(out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fsctl.refdocs", "--check", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_the_committed_references_match_the_code_and_a_stale_one_is_named(tmp_path: Path) -> None:
    done = _check(ROOT / "docs" / "reference")
    assert done.returncode == 0, f"{done.stderr}\nrun `make docs` and commit docs/reference/"
    copy = tmp_path / "reference"
    shutil.copytree(ROOT / "docs" / "reference", copy)
    cli = copy / "cli.md"
    cli.write_text(cli.read_text().replace("### `fsctl route add`", "### `fsctl route plus`"))
    done = _check(copy)
    assert done.returncode == 1 and "cli.md" in done.stderr and "make docs" in done.stderr
    assert "config.md" not in done.stderr


def test_the_references_cover_settings_commands_and_routes() -> None:
    ref = ROOT / "docs" / "reference"
    config, cli, api = ((ref / n).read_text() for n in ("config.md", "cli.md", "api.md"))
    assert "| `gate.max_header_bytes` |" in config and "| `snap.job_cpus` |" in config
    assert "### `fsctl route add`" in cli and "### `fsctl state backup`" in cli and "### `fsctl doctor`" in cli
    assert "| `POST` | `/api/routes` |" in api and "| `GET` | `/api/docs` |" in api


def test_api_docs_page(server: Any) -> None:
    r = httpx.get(f"{server.url}/api/docs", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert "<code>/api/routes</code>" in r.text and "<script" not in r.text.lower()
