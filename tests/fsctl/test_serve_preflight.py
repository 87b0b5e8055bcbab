"""A `fsctl serve` start that cannot succeed (bad config, a port taken) fails before it creates anything:
no data dir, no initial admin, no password printed; one precise error line and a non-zero exit."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.conftest import FSCTL, ROOT, free_port


def _serve(
    tmp_path: Path,
    data: Path,
    *args: str,
    http_port: int | None = None,
    https_port: int | None = None,
    console: str | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INFRACORE_PASSWORD_HASH_ROUNDS": "4", "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    argv = [
        *FSCTL,
        "serve",
        "--data-dir",
        str(data),
        "--console",
        console or f"127.0.0.1:{free_port()}",
        "--http-port",
        str(http_port or free_port()),
        "--https-port",
        str(https_port or free_port()),
        *args,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)


def _refused(r: subprocess.CompletedProcess[str], data: Path, *, existed: list[str] | None = None) -> str:
    """The checks every refused start passes; returns its error line."""
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout + r.stderr
    assert "Traceback" not in out
    assert "password" not in out.lower() and "admin account" not in out  # nothing was created to tell about
    if existed is None:
        assert not data.exists(), sorted(p.name for p in data.iterdir())
    else:
        assert sorted(p.name for p in data.iterdir()) == existed
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("fsctl serve: error: ")
    return last


@contextmanager
def _held(host: str) -> Iterator[int]:
    with socket.socket() as s:
        s.bind((host, 0))
        s.listen()
        yield s.getsockname()[1]


def test_bad_component_config_creates_nothing(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("gate:\n  bogus: 1\n")
    data = tmp_path / "data"
    last = _refused(_serve(tmp_path, data, "--config", str(cfg)), data)
    assert "invalid gate settings: gate.bogus: Extra inputs are not permitted" in last and "gate: section" in last


def test_missing_snap_passphrase_file_creates_nothing(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"snap:\n  encryption: aes-256-gcm\n  passphrase_file: {tmp_path}/nope\n")
    data = tmp_path / "data"
    last = _refused(_serve(tmp_path, data, "--config", str(cfg)), data)
    assert f"snap.passphrase_file {tmp_path}/nope: No such file or directory" in last


def test_http_port_taken_creates_nothing(tmp_path):
    data = tmp_path / "data"
    with _held("0.0.0.0") as port:
        last = _refused(_serve(tmp_path, data, http_port=port), data)
    assert f"the gate address 0.0.0.0:{port} is already in use" in last
    assert "--http-port" in last and f"sport = :{port}" in last


def test_https_port_taken_creates_nothing(tmp_path):
    data = tmp_path / "data"
    with _held("127.0.0.1") as port:  # a specific address of the host blocks the gate's 0.0.0.0 too
        last = _refused(_serve(tmp_path, data, https_port=port), data)
    assert f"the gate's HTTPS address 0.0.0.0:{port} is already in use" in last and "--https-port" in last


def test_console_port_taken_creates_nothing(tmp_path):
    data = tmp_path / "data"
    with _held("127.0.0.1") as port:
        last = _refused(_serve(tmp_path, data, console=f"127.0.0.1:{port}"), data)
    assert f"the console address 127.0.0.1:{port} is already in use" in last and "--console" in last


def test_two_of_our_own_listeners_on_one_port(tmp_path):
    data = tmp_path / "data"
    port = free_port()
    last = _refused(_serve(tmp_path, data, http_port=port, https_port=port), data)
    assert f"the gate's HTTPS address 0.0.0.0:{port} is already in use" in last


def test_an_existing_empty_data_dir_stays_empty(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    with _held("0.0.0.0") as port:
        _refused(_serve(tmp_path, data, http_port=port), data, existed=[])


def test_after_the_fix_the_first_start_makes_the_admin(server_factory):
    srv = server_factory()
    assert (srv.data_dir / "initial-admin-password").is_file()
    assert "an admin account 'admin' was created" in srv.log()
    assert srv.login()


def test_a_second_server_on_the_same_data_dir_and_ports_names_the_first(server, tmp_path):
    r = _serve(
        tmp_path,
        server.data_dir,
        http_port=server.http_port,
        https_port=server.https_port,
        console=f"127.0.0.1:{server.console_port}",
    )
    assert r.returncode == 1
    assert f"another Infra-Core server (pid {server.proc.pid}) is using the data dir" in r.stderr
    assert httpx.get(f"{server.url}/api/health").status_code == 200
