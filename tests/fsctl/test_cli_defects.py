"""Defects a new user hits with the real `fsctl` against a real `fsctl serve`: `events --no-follow`
ends, `user totp enable` without a terminal, output piped into a reader that has gone."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pyotp
import pytest

from tests.conftest import FSCTL, ROOT

# --- events --no-follow ---------------------------------------------------------------------------


def test_events_no_follow_prints_what_there_is_and_exits(server):
    server.api("POST", "/api/tokens", json={"name": "seen-by-no-follow"})
    t0 = time.monotonic()
    r = server.fsctl("events", "--since", "0", "--no-follow", timeout=30)
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < 20
    lines = r.stdout.splitlines()
    assert "user.created" in lines[0] and "token.created" in lines[-1] and "seen-by-no-follow" in lines[-1]


def test_events_no_follow_without_since_prints_the_newest(server):
    for i in range(5):
        server.api("POST", "/api/tokens", json={"name": f"tok{i}"})
    r = server.fsctl("events", "--no-follow", "--last", "3", "--types", "token.created", timeout=30)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 3 and [m.group() for ln in lines if (m := re.search(r"tok\d", ln))] == ["tok2", "tok3", "tok4"]
    r = server.fsctl("events", "--no-follow", "--json", timeout=30)
    assert r.returncode == 0 and '"type": "token.created"' in r.stdout


def test_events_no_follow_against_no_server_is_an_error_not_a_wait(tmp_path):
    env = {**os.environ, "FSCTL_SERVER": "http://127.0.0.1:9", "XDG_CONFIG_HOME": str(tmp_path)}
    r = subprocess.run([*FSCTL, "events", "--no-follow"], env=env, capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert r.returncode == 1 and "cannot reach the Infra-Core server" in r.stderr


def test_events_follow_0_is_validated(server):
    r = server.api("GET", "/api/events?follow=maybe")
    assert r.status_code == 400 and "follow must be 0 or 1" in r.json()["error"]["message"]


# --- user totp enable without a terminal ----------------------------------------------------------


def test_totp_enable_without_terminal_or_code_is_a_clear_error(server):
    r = server.fsctl("user", "totp", "enable", "admin", input="")  # stdin is an empty pipe: no terminal
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and "EOFError" not in r.stderr
    assert "fsctl: error: no two-factor code: no terminal to ask for it and none on standard input" in r.stderr
    assert "fsctl user totp enable admin --code CODE" in r.stderr
    assert "secret: " in r.stdout  # the pending enrolment's secret, for the second step


def test_totp_enable_in_two_steps_with_code(server):
    r = server.fsctl("user", "totp", "enable", "admin", input="")
    found = re.search(r"secret: (\S+)", r.stdout)
    assert found, r.stdout
    secret = found.group(1)
    r = server.fsctl("user", "totp", "enable", "admin", "--code", pyotp.TOTP(secret).now())
    assert r.returncode == 0, r.stderr
    assert "two-factor login is on for admin" in r.stdout and "Recovery codes" in r.stdout
    assert server.api("GET", "/api/users").json()[0]["totp"] is True


def test_totp_enable_with_code_but_nothing_pending_says_how_to_start(server):
    r = server.fsctl("user", "totp", "enable", "admin", "--code", "123456")
    assert r.returncode == 1 and "no two-factor enrolment is pending" in r.stderr
    assert "`fsctl user totp enable admin` (it prints the secret)" in r.stderr


def test_totp_enable_reads_the_code_from_a_pipe(server):
    env = {**server.env, "FSCTL_SERVER": server.url, "FSCTL_TOKEN": server.login()}
    proc = subprocess.Popen(
        [*FSCTL, "user", "totp", "enable", "admin"],
        env=env,
        cwd=ROOT,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        secret = None
        assert proc.stdout is not None and proc.stderr is not None
        while secret is None:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            if m := re.search(r"secret: (\S+)", line):
                secret = m.group(1)
        out, err = proc.communicate(pyotp.TOTP(secret).now() + "\n", timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "two-factor login is on for admin" in out


# --- output into a closed pipe (`fsctl ... | head`) -----------------------------------------------


def _into_closed_pipe(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (head) has already gone: every write gets EPIPE
    try:
        return subprocess.run(
            [*FSCTL, *args], stdout=write_end, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT, timeout=60
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize("args", [["--help"], ["service", "--help"]])
def test_help_into_a_closed_pipe_is_quiet(args, tmp_path):
    r = _into_closed_pipe(args, {**os.environ, "XDG_CONFIG_HOME": str(tmp_path)})
    assert r.returncode in (0, 141), r.stderr  # argparse itself swallows a failed write of the help
    assert r.stderr == ""


@pytest.mark.parametrize(
    "args", [["audit", "--limit", "200"], ["events", "--since", "0", "--no-follow"], ["user", "ls", "--json"]]
)
def test_commands_into_a_closed_pipe_are_quiet(server, args):
    for i in range(30):  # enough output to need more than one write
        server.api("POST", "/api/tokens", json={"name": f"t{i}"})
    env = {**server.env, "FSCTL_SERVER": server.url, "FSCTL_TOKEN": server.login()}
    r = _into_closed_pipe(args, env)
    assert r.returncode == 141, r.stderr
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr and r.stderr == ""


# --- service start prints the state after the start -----------------------------------------------


def test_service_start_prints_the_state_after_it(server, tmp_path):
    spec = tmp_path / "sleeper.yaml"
    spec.write_text(f'name: sleeper\ncmd: ["{sys.executable}", "-c", "import time; time.sleep(300)"]\n')
    assert server.fsctl("service", "apply", "-f", str(spec), "--wait", "60").returncode == 0
    try:
        r = server.fsctl("service", "stop", "sleeper")
        assert r.returncode == 0 and r.stdout.strip() == "sleeper: stopped", r.stdout + r.stderr
        r = server.fsctl("service", "start", "sleeper")
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() in ("sleeper: starting", "sleeper: running"), r.stdout
        r = server.fsctl("service", "start", "sleeper", "--json")
        assert json.loads(r.stdout)["status"] in ("starting", "running")
    finally:
        server.fsctl("service", "rm", "sleeper")


def test_login_without_terminal_or_user_is_a_clear_error(server):
    r = server.fsctl("login", "--password-stdin", input="x\n", token=None)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "fsctl: error: no username: no terminal to ask for it (pass --user NAME" in r.stderr
