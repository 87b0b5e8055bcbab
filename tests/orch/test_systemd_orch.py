"""Orch's supervisor with systemd units, against a real systemd booted as PID 1 in a container (reached with
`docker exec`; skipped with the reason when the image or dockerd is missing): the unit file as written,
a unit killed from outside restarted by orch's policy, a platform stop leaving the unit running and the
next start adopting it by name and invocation, removal deleting the unit file."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from orch.service import OrchService
from tests.orch.dockerenv import in_container, systemd_container
from tests.orch.test_supervisor import Harness, until


@pytest.fixture
def box() -> str:
    name, why = systemd_container()
    if name is None:
        pytest.skip(f"systemd runtime: {why}")
    return name


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path)
    await harness.open()
    yield harness
    await harness.close()


async def _orch(h: Harness, box: str, prefix: str) -> OrchService:
    return await h.orch(
        systemd_command_prefix=["docker", "exec", "-i", box],
        systemd_poll_s=0.3,
        systemd_unit_prefix=prefix,
        docker=False,
        stop_services_on_exit=False,
    )


def _running(o: OrchService, name: str) -> dict[str, Any]:
    insts = [i for i in o.describe(name)["instances"] if i["phase"] == "running"]
    return insts[0] if insts and o.describe(name)["status"] == "running" else {}


SPEC = """\
name: ticker
runtime: systemd
cmd: [sh, -c, "echo started $GREETING; while :; do sleep 1; done"]
env: { GREETING: "hi there" }
workdir: /var/tmp
resources: { memory: 64Mi, cpu: 0.5 }
restart_policy: always
stop_timeout: 2s
"""


async def test_unit_written_restarted_after_outside_kill_left_running_adopted_and_removed(h: Harness, box: str) -> None:
    prefix = f"infracore-t{secrets.token_hex(3)}"
    unit = f"{prefix}-ticker-1.service"
    o = await _orch(h, box, prefix)
    await o.apply(SPEC, "ticker.yaml")
    await until(lambda: _running(o, "ticker"), 60)
    first = _running(o, "ticker")
    assert first["runtime"] == "systemd" and first["unit"] == unit
    rc, text = in_container(box, ["cat", f"/etc/systemd/system/{unit}"])
    assert rc == 0
    for line in (
        'ExecStart=/usr/bin/sh -c "echo started $$GREETING; while :; do sleep 1; done"',
        'Environment="GREETING=hi there"',
        "WorkingDirectory=/var/tmp",
        f"MemoryMax={64 << 20}",
        "CPUQuota=50%",
        "Restart=no",
        "TimeoutStopSec=2",
    ):
        assert line in text, text
    out = h.tmp / "data" / "logs" / "ticker"
    await until(lambda: out.exists() and "started hi there" in "".join(p.read_text() for p in out.glob("*.log")))
    # Killed from outside: orch's policy (always) starts it again.
    assert in_container(box, ["systemctl", "kill", "--signal=KILL", unit])[0] == 0
    await until(lambda: (i := _running(o, "ticker")) and i["started_at"] != first["started_at"], 60)
    d = o.describe("ticker")
    assert d["restarts"] == 1 and d["last_exit"]["detail"] == "killed by SIGKILL"
    # A platform stop leaves units running; the next start adopts the same invocation.
    pid = _running(o, "ticker")["pid"]
    await o.stop(10)
    assert in_container(box, ["systemctl", "is-active", unit])[0] == 0
    second = await _orch(h, box, prefix)
    await until(lambda: _running(second, "ticker"), 30)
    adopted = _running(second, "ticker")
    assert adopted["adopted"] and adopted["pid"] == pid and second.describe("ticker")["restarts"] == 1
    await second.delete("ticker")
    assert in_container(box, ["test", "-e", f"/etc/systemd/system/{unit}"])[0] != 0
    assert in_container(box, ["systemctl", "is-active", unit])[0] != 0


async def test_failing_health_check_restarts_the_unit(h: Harness, box: str, tmp_path: Path) -> None:
    prefix = f"infracore-t{secrets.token_hex(3)}"
    flag = tmp_path / "healthy"
    flag.write_text("1")
    o = await _orch(h, box, prefix)
    await o.apply(
        SPEC + f"healthcheck: {{ exec: [test, -f, '{flag}'], interval: 0.3s, timeout: 2s, retries: 2 }}\n",
        "ticker.yaml",
    )
    await until(lambda: (i := _running(o, "ticker")) and i["healthy"], 60)
    first = _running(o, "ticker")
    flag.unlink()
    await until(lambda: o.describe("ticker")["restarts"] >= 1, 60)
    flag.write_text("1")
    await until(lambda: (i := _running(o, "ticker")) and i["healthy"] and i["pid"] != first["pid"], 60)
    exits = [e for e in await h.events("service.instance.exited") if e["service"] == "ticker"]
    assert "health check failed 2 time(s): exit code 1" in exits[0]["reason"], exits
    await o.delete("ticker")
