"""examples/demo.sh, the first hour in one run, against Pebble: every step ends [ok] and the script exits 0
(it fails loudly at the first step that does not work, with the platform's last log lines)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT


def test_the_demo_runs_end_to_end() -> None:
    peers = Path(os.environ.get("PEERS_DIR", "/tmp/infracore-peers")) / "peers.env"
    if not peers.exists():
        pytest.skip(f"{peers} is missing: the demo needs Pebble (../shared/peers/peers.sh start)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FSCTL_", "INFRACORE_"))}
    env["INFRACORE_PASSWORD_HASH_ROUNDS"] = "4"
    done = subprocess.run(
        ["bash", str(ROOT / "examples" / "demo.sh")], capture_output=True, text=True, timeout=600, cwd=ROOT, env=env
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    steps = [ln for ln in done.stdout.splitlines() if ln.startswith(("[ok]", "[FAIL]"))]
    assert len(steps) == 12 and all(s.startswith("[ok]") for s in steps), out[-6000:]
    for what in ("verified certificate chain", "redirects to HTTPS", "roll back", "shadow instance"):
        assert any(what in s for s in steps), what
    assert "done in" in done.stdout
