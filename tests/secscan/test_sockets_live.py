"""The live socket gatherer: a socket this test opens on 0.0.0.0 is reported with this process's PID;
one on 127.0.0.1 is not."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from secscan import gather
from secscan.checks_sockets import check_sockets
from tests.conftest import FSCTL, ROOT
from tests.secscan.test_scan_tree import CLEAN, make_tree, scan


def _listen(host: str) -> socket.socket:
    s = socket.socket()
    s.bind((host, 0))
    s.listen()
    return s


def test_a_socket_on_all_interfaces_is_reported_with_its_pid():
    public, private = _listen("0.0.0.0"), _listen("127.0.0.1")
    try:
        port, lo_port = public.getsockname()[1], private.getsockname()[1]
        found = gather.listeners()
        mine = [s for s in found if s.port == port]
        assert [(s.proto, s.address, s.pid) for s in mine] == [("tcp", "0.0.0.0", os.getpid())]
        assert mine[0].process and mine[0].cmdline and "python" in mine[0].cmdline
        findings = {f.id: f for f in check_sockets(found, (22, 80, 443))}
        f = findings[f"sockets.tcp.{port}"]
        assert f.details["pids"] == [os.getpid()] and f.severity == "medium"
        assert f"pid {os.getpid()}" in f.evidence[0] and f"`kill {os.getpid()}`" in f.fix
        assert f"sockets.tcp.{lo_port}" not in findings
    finally:
        public.close()
        private.close()


def test_the_cli_reports_it_under_root_with_sockets(tmp_path):
    public = _listen("0.0.0.0")
    try:
        port = public.getsockname()[1]
        _, report = scan(make_tree(tmp_path, CLEAN), "--sockets")
        f = {f["id"]: f for f in report["findings"]}[f"sockets.tcp.{port}"]
        assert f["details"]["pids"] == [os.getpid()]
        assert report["sources"]["sockets"] == "live (psutil)"
        # allowed explicitly: not reported
        _, report = scan(make_tree(tmp_path, CLEAN), "--sockets", "--allow-port", str(port))
        assert f"sockets.tcp.{port}" not in {f["id"] for f in report["findings"]}
    finally:
        public.close()


def test_a_secret_on_a_listeners_command_line_is_masked(tmp_path):
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket,sys,time; s=socket.socket(); s.bind(('0.0.0.0',0)); s.listen(); "
            "print(s.getsockname()[1], flush=True); time.sleep(60)",
            "--password",
            "hunter2",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        r = subprocess.run(
            [*FSCTL, "security", "scan", "--root", str(make_tree(tmp_path, CLEAN)), "--sockets", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert f'"sockets.tcp.{port}"' in r.stdout and f"pid {child.pid} " in r.stdout
        assert "hunter2" not in r.stdout and "--password ***" in r.stdout
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
