"""`fsctl serve` as a user runs it: starts with no config file, stops on SIGTERM, refuses clearly."""

import os
import signal
import socket
import stat
import subprocess
import sys
import time

import httpx

from tests.conftest import FSCTL, ROOT, free_port, start_server


def test_starts_without_config_and_stops_on_sigterm(server):
    r = httpx.get(f"{server.url}/api/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    sock = server.data_dir / "console.sock"
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(server.data_dir / "initial-admin-password").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(server.data_dir / "state.db").st_mode) == 0o600
    t0 = time.monotonic()
    assert server.stop(timeout=15) == 0
    assert time.monotonic() - t0 < 15
    assert not sock.exists()
    assert '"event": "stopped"' in server.log()


def test_sigint_also_stops_cleanly(server):
    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(15) == 0


def _serve_fails(args: list[str], tmp_path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INFRACORE_PASSWORD_HASH_ROUNDS": "4"}
    return subprocess.run([*FSCTL, "serve", *args], capture_output=True, text=True, timeout=30, cwd=ROOT, env=env)


def test_port_in_use_is_one_clear_line(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = _serve_fails(
            [
                "--data-dir",
                str(tmp_path / "d"),
                "--console",
                f"127.0.0.1:{port}",
                "--http-port",
                str(free_port()),
                "--https-port",
                str(free_port()),
            ],
            tmp_path,
        )
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("fsctl serve: error: ") and f"127.0.0.1:{port} is already in use" in last
    assert "--console" in last
    assert "Traceback" not in r.stderr


def test_data_dir_not_writable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    r = _serve_fails(["--data-dir", str(blocker / "data"), "--console", f"127.0.0.1:{free_port()}"], tmp_path)
    assert r.returncode != 0
    assert f"the data dir {blocker / 'data'} is not writable" in r.stderr
    assert "--data-dir" in r.stderr and "Traceback" not in r.stderr


def test_second_instance_on_the_same_data_dir_is_refused(server, tmp_path):
    r = _serve_fails(
        [
            "--data-dir",
            str(server.data_dir),
            "--console",
            f"127.0.0.1:{free_port()}",
            "--http-port",
            str(free_port()),
            "--https-port",
            str(free_port()),
        ],
        tmp_path,
    )
    assert r.returncode != 0
    assert f"another Infra-Core server (pid {server.proc.pid})" in r.stderr
    assert httpx.get(f"{server.url}/api/health").status_code == 200  # the first one is untouched


def test_invalid_config_file_is_reported_with_its_line(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("console: 127.0.0.1:7070\nhttp_port: [80\n")
    r = _serve_fails(["--config", str(cfg), "--data-dir", str(tmp_path / "d")], tmp_path)
    assert r.returncode != 0
    assert f"{cfg}:3:1: invalid YAML" in r.stderr or f"{cfg}:2" in r.stderr


def test_config_file_and_env_are_used(tmp_path):
    port = free_port()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"console: 127.0.0.1:{free_port()}\nlog_level: debug\n")
    srv = start_server(tmp_path / "d", extra_args=["--config", str(cfg)], console_port=port, wait=False)
    try:
        srv.wait_ready()  # the --console flag beats the file
        assert httpx.get(f"http://127.0.0.1:{port}/api/health").status_code == 200
    finally:
        assert srv.stop() == 0


def test_version_flag():
    r = subprocess.run([sys.executable, "-m", "fsctl", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.startswith("fsctl ")
