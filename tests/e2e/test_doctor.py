"""`fsctl doctor`: its rules on plain facts, and the real command against a real server, Pebble as the ACME
directory, a taken port and a data dir opened to others."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from fsctl.doctor import (
    PortFact,
    check_clock,
    check_console,
    check_data_dir_mode,
    check_disk,
    check_dns,
    check_port,
    is_public_name,
)
from tests.conftest import FSCTL, ROOT

GiB = 1024**3


@pytest.mark.parametrize(
    ("fact", "status", "words"),
    [
        (PortFact("http", 80, True, True), "ok", "served by the running platform"),
        (PortFact("http", 80, True, False), "fail", "nothing answers"),
        (PortFact("http", 8080, False, False), "ok", "can be bound"),
        (PortFact("http", 80, False, False, "permission denied"), "fail", "CAP_NET_BIND_SERVICE"),
        (
            PortFact("https", 443, False, True, "Address already in use", "nginx (pid 7)"),
            "fail",
            "taken by nginx (pid 7)",
        ),
    ],
)
def test_port_rules(fact: PortFact, status: str, words: str) -> None:
    f = check_port(fact)
    assert f.status == status and words in f.message + f.fix


def test_dns_clock_disk_mode_and_console_rules() -> None:
    assert [
        is_public_name(h)
        for h in (
            "example.com",
            "a.test",
            "x.localhost",
            "10.0.0.1",
            "*.example.com",
            "[::1]",
            "intranet",
            "Shop.Example.COM.",
        )
    ] == [True, False, False, False, False, False, False, True]
    mine = {"192.0.2.10", "127.0.0.1"}
    assert check_dns("a.example.com", "auto", ["192.0.2.10"], None, mine).status == "ok"
    far = check_dns("a.example.com", "auto", ["198.51.100.1"], None, mine)
    assert far.status == "warn" and "NAT" in far.fix
    assert check_dns("a.example.com", "auto", None, "NXDOMAIN", mine).status == "fail"
    assert check_dns("a.example.com", "off", None, "NXDOMAIN", mine).status == "warn"  # no certificate at stake
    assert check_clock(True, 2.0).status == "ok"
    assert check_clock(True, -95.0).status == "fail"
    assert check_clock(False, None).status == "warn" and check_clock(None, None).status == "skip"
    assert check_disk("data", "/", 100 * GiB, 200 * GiB).status == "ok"
    assert check_disk("data", "/", GiB, 8 * GiB).status == "warn"
    assert check_disk("data", "/", 5 * GiB, 500 * GiB).status == "fail"  # 1 %
    assert check_disk("data", "/", GiB // 10, 200 * GiB).status == "fail"
    assert check_data_dir_mode("/d", 0o40700, True, []).status == "ok"
    bad = check_data_dir_mode("/d", 0o40755, False, ["gate/fallback.key"])
    assert bad.status == "fail" and "0o755" in bad.message and "not owned" in bad.message
    assert "fallback.key" in bad.message
    assert check_data_dir_mode("/d", 0o40755, True, []).status == "warn"  # listable, but every file private
    assert check_console("127.0.0.1", 7070).status == "ok" and check_console("::1", 7070).status == "ok"
    assert check_console("0.0.0.0", 7070).status == "warn"


def _doctor(srv: Any, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *FSCTL,
            "doctor",
            "--json",
            "--data-dir",
            str(srv.data_dir),
            "--http-port",
            str(srv.http_port),
            "--https-port",
            str(srv.https_port),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**srv.env, **(env or {})},
    )


def _peers_env() -> dict[str, str]:
    path = Path(os.environ.get("PEERS_DIR", "/tmp/infracore-peers")) / "peers.env"
    if not path.exists():
        pytest.skip(f"{path} is missing: start the peers (../shared/peers/peers.sh start); the ACME check needs Pebble")
    pairs = (
        ln[len("export ") :].split("#")[0].strip().partition("=")
        for ln in path.read_text().splitlines()
        if ln.startswith("export ")
    )
    return {k: v for k, _, v in pairs}


def test_doctor_against_a_real_server(server_factory: Any) -> None:
    peers = _peers_env()
    acme, bundle = peers["ACME_DIRECTORY"], peers["ACME_CA_BUNDLE"]
    srv = server_factory()
    assert (
        srv.fsctl("route", "add", "--host", "nowhere.infracore-doctor.invalid", "--upstream", "127.0.0.1:9").returncode
        == 0
    )
    assert (
        srv.fsctl(
            "route",
            "add",
            "--host",
            "shop.doesnotexist-infracore.example.org",
            "--upstream",
            "127.0.0.1:9",
            "--tls",
            "auto",
        ).returncode
        == 0
    )
    env = {"INFRACORE_ACME_DIRECTORY": acme, "INFRACORE_ACME_CA_BUNDLE": bundle}
    out = _doctor(srv, env=env)
    found = {f["check"]: f for f in json.loads(out.stdout)}
    assert found["port.http"]["status"] == "ok" and "running platform" in found["port.http"]["message"]
    assert found["acme.directory"]["status"] == "ok"
    assert found["clock"]["status"] in ("ok", "warn")
    assert found["datadir.permissions"]["status"] in ("ok", "warn")  # (the test made the dir itself)
    dns = found["dns.shop.doesnotexist-infracore.example.org"]
    assert dns["status"] == "fail" and "certificate cannot be issued" in dns["fix"]
    assert not any(k.startswith("dns.nowhere") for k in found)  # .invalid is not a public name
    assert out.returncode == 1  # a failing check fails the command

    # stopped, its port taken by someone else, its data dir opened to others
    assert srv.stop() == 0
    os.chmod(srv.data_dir / "gate" / "fallback.key", 0o644)
    with socket.socket() as s:
        s.bind(("0.0.0.0", srv.http_port))
        s.listen()
        out = _doctor(
            srv,
            env={
                **env,
                "INFRACORE_ACME_DIRECTORY": "https://127.0.0.1:9/dir",
                "DOCKER_HOST": f"unix://{srv.data_dir}/no-docker.sock",
            },
        )
    found = {f["check"]: f for f in json.loads(out.stdout)}
    assert found["port.http"]["status"] == "fail" and "is taken" in found["port.http"]["message"]
    assert found["port.https"]["status"] == "ok"
    perms = found["datadir.permissions"]
    assert perms["status"] == "fail" and "fallback.key" in perms["message"]
    assert found["acme.directory"]["status"] == "fail"
    docker = found["runtime.docker"]
    assert docker["status"] == "warn" and "no socket at" in docker["message"] and "docker.io" in docker["fix"]
    human = subprocess.run(
        [*FSCTL, "doctor", "--data-dir", str(srv.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**srv.env, **env},
    )
    assert "fix: chmod 700" in human.stdout and "failing" in human.stdout.splitlines()[-1]
