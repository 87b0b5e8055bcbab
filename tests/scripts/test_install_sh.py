"""scripts/install.sh: shellcheck-clean, its plan with --dry-run on this Debian host, and precise refusals
(another OS, a relative prefix, an unknown option). The real run needs a fresh host as root; its last step,
`fsctl install-service`, is tested against a real systemd in tests/e2e/test_install_service.py."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "install.sh"


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )


def test_shellcheck_clean() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck; .ci/run does)")
    out = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout


def test_dry_run_plans_every_step(tmp_path: Path) -> None:
    osr = tmp_path / "os-release"
    osr.write_text('ID=ubuntu\nID_LIKE=debian\nVERSION_ID="24.04"\n')
    out = _run("--dry-run", "--user", "infracore", "--prefix", "/opt/ic", env={"INFRACORE_OS_RELEASE": str(osr)})
    assert out.returncode == 0, out.stderr
    text = out.stdout
    steps = [ln for ln in text.splitlines() if ln.startswith("==> ")]
    assert steps[0].startswith("==> packages (ubuntu 24.04)") and "nodejs npm" in steps[0]
    assert "make -C /opt/ic install UI=1" in text
    assert "/opt/ic/.venv/bin/fsctl install-service --user infracore" in text
    assert "fsctl doctor" in text
    no_ui = _run("--dry-run", "--no-ui", env={"INFRACORE_OS_RELEASE": str(osr)})
    assert "nodejs" not in no_ui.stdout and "UI=0" in no_ui.stdout and "install-service\n" in no_ui.stdout


def test_refusals_are_precise(tmp_path: Path) -> None:
    osr = tmp_path / "os-release"
    osr.write_text("ID=fedora\n")
    out = _run("--dry-run", env={"INFRACORE_OS_RELEASE": str(osr)})
    assert out.returncode == 1 and "for Debian and Ubuntu, not 'fedora'" in out.stderr
    assert _run("--prefix", "rel/dir").stderr.strip().endswith("must be an absolute path, not rel/dir")
    assert "unknown option --frobnicate" in _run("--frobnicate").stderr
    out = _run("--dry-run", env={"INFRACORE_OS_RELEASE": str(tmp_path / "missing")})
    assert out.returncode == 1 and "cannot read" in out.stderr
