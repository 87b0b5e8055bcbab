"""`fsctl install-service` / `uninstall-service`: the unit's text, and the real install against a real systemd
booted as PID 1 in a container (`make systemd-image`; skipped with the reason without it), reached with
`--via "docker exec -i BOX"`. Inside, a two-line shell script stands in for the fsctl executable (the
container has no Python): it records its user and arguments in the data dir and sleeps, so systemd's
handling of the unit is what is tested."""

from __future__ import annotations

import secrets
import subprocess
import time
from pathlib import Path

import pytest

from fsctl.host_unit import HostUnit, render
from tests.conftest import FSCTL, ROOT
from tests.orch.dockerenv import in_container, systemd_container


def test_the_unit_keeps_services_alive_and_gives_a_dedicated_user_only_port_binding() -> None:
    root = render(HostUnit(Path("/opt/infracore/.venv/bin/fsctl"), Path("/var/lib/infracore")))
    assert "ExecStart=/opt/infracore/.venv/bin/fsctl serve --data-dir /var/lib/infracore\n" in root
    for line in (
        "KillMode=process",
        "Delegate=yes",
        "Restart=always",
        "LimitNOFILE=1048576",
        "WantedBy=multi-user.target",
    ):
        assert f"\n{line}\n" in root
    assert "User=" not in root and "AmbientCapabilities" not in root
    user = render(HostUnit(Path("/opt/x/fsctl"), Path("/srv/my data"), Path("/etc/infracore/config.yaml"), "infracore"))
    assert 'ExecStart=/opt/x/fsctl serve --data-dir "/srv/my data" --config /etc/infracore/config.yaml' in user
    for line in (
        "User=infracore",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        'ReadWritePaths="/srv/my data"',
    ):
        assert f"\n{line}\n" in user
    hostile = render(HostUnit(Path("/opt/x/fsctl"), Path('/srv/$HOME%n"\nExecStartPre=/bin/evil')))
    assert "\nExecStartPre" not in hostile and "$$HOME%%n" in hostile


def _fsctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FSCTL, *args], capture_output=True, text=True, timeout=180, cwd=ROOT)


def test_dry_run_prints_the_unit_and_refusals_are_precise(tmp_path: Path) -> None:
    out = _fsctl("install-service", "--dry-run", "--data-dir", str(tmp_path / "d"), "--unit-dir", str(tmp_path))
    assert out.returncode == 0 and f"# {tmp_path}/infracore.service" in out.stdout and "KillMode=process" in out.stdout
    assert not (tmp_path / "infracore.service").exists()
    if not Path("/run/systemd/system").is_dir():
        out = _fsctl("install-service", "--unit-dir", str(tmp_path))
        assert out.returncode == 1 and "systemd is not running" in out.stderr
    out = _fsctl("install-service", "--user", f"nobody-{secrets.token_hex(3)}", "--unit-dir", str(tmp_path))
    assert out.returncode == 1 and "useradd --system" in out.stderr


@pytest.fixture
def box() -> str:
    name, why = systemd_container()
    if name is None:
        pytest.skip(f"systemd: {why}")
    return name


def test_install_start_and_uninstall_on_a_real_systemd(box: str) -> None:
    unit = f"infracore-t{secrets.token_hex(3)}"
    stub = "/usr/local/bin/fsctl-stub"
    rc, out = in_container(
        box,
        [
            "sh",
            "-c",
            f'printf \'#!/bin/sh\\necho "$(id -un) $*" > $3/args\\n'
            f"exec sleep 1000\\n' > {stub} && chmod 755 {stub} && "
            "(id infracore || useradd --system infracore)",
        ],
    )
    assert rc == 0, out
    via = f"docker exec -i {box}"
    res = _fsctl(
        "install-service",
        "--via",
        via,
        "--name",
        unit,
        "--fsctl",
        stub,
        "--user",
        "infracore",
        "--data-dir",
        "/var/lib/infracore-test",
    )
    assert res.returncode == 0, res.stderr
    assert f"wrote /etc/systemd/system/{unit}.service" in res.stdout and "undo: fsctl uninstall-service" in res.stdout
    rc, active = in_container(box, ["systemctl", "is-active", unit])
    assert active.strip() == "active", active + in_container(box, ["systemctl", "status", unit])[1]
    for _ in range(100):  # (Type=simple: active at fork, before the stub has written its file)
        rc, args = in_container(box, ["cat", "/var/lib/infracore-test/args"])
        if args.strip():
            break
        time.sleep(0.05)
    assert args.strip() == "infracore serve --data-dir /var/lib/infracore-test"
    rc, show = in_container(
        box,
        [
            "systemctl",
            "show",
            unit,
            "-p",
            "KillMode",
            "-p",
            "Delegate",
            "-p",
            "LimitNOFILE",
            "-p",
            "UnitFileState",
            "-p",
            "AmbientCapabilities",
        ],
    )
    for want in (
        "KillMode=process",
        "Delegate=yes",
        "LimitNOFILE=1048576",
        "UnitFileState=enabled",
        "AmbientCapabilities=cap_net_bind_service",
    ):
        assert want in show, show
    rc, verify = in_container(box, ["systemd-analyze", "verify", f"/etc/systemd/system/{unit}.service"])
    assert "Unknown" not in verify and "ignoring" not in verify.lower(), verify

    again = _fsctl("install-service", "--via", via, "--name", unit, "--fsctl", stub, "--data-dir", "/var/lib/x2")
    assert again.returncode == 0 and "replaced" in again.stdout and ".previous" in again.stdout

    res = _fsctl("uninstall-service", "--via", via, "--name", unit)
    assert res.returncode == 0, res.stderr
    assert in_container(box, ["systemctl", "is-active", unit])[1].strip() in ("inactive", "unknown")
    assert in_container(box, ["test", "-e", f"/etc/systemd/system/{unit}.service"])[0] != 0
    res = _fsctl("uninstall-service", "--via", via, "--name", unit)
    assert res.returncode == 1 and "nothing to uninstall" in res.stderr
