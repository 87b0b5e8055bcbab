"""TOTP recovery codes through the real API and CLI, with one-time codes computed by `oathtool`
(Debian package `oathtool`, an independent RFC 6238 implementation)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import httpx
import pytest

from tests.conftest import FSCTL, ROOT

pytestmark = pytest.mark.skipif(shutil.which("oathtool") is None, reason="needs oathtool (apt-get install oathtool)")

CODE_RE = re.compile(r"\b[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}\b")


def oathtool(secret: str, when: str = "now") -> str:
    out = subprocess.run(
        ["oathtool", "--totp", "-b", "-N", when, secret], capture_output=True, text=True, check=True, timeout=10
    )
    return out.stdout.strip()


def _login(server, otp: str | None, password: str = "tess-password") -> httpx.Response:
    body = {"username": "tess", "password": password, **({"otp": otp} if otp else {})}
    return httpx.post(f"{server.url}/api/auth/login", json=body, timeout=30)


@pytest.fixture
def tess(server):
    r = server.fsctl("user", "add", "tess", "--role", "viewer", "--password-stdin", input="tess-password\n")
    assert r.returncode == 0, r.stderr
    return server.login("tess", "tess-password")


def test_enrol_with_oathtool_then_codes_work_once(server, tess):
    enrol = server.api("POST", "/api/users/tess/totp", token=tess).json()
    secret = enrol["secret"]
    # The previous step's code (one step of drift is accepted), so the current step stays unused.
    previous = oathtool(secret, "30 seconds ago")
    r = server.api("POST", "/api/users/tess/totp/confirm", token=tess, json={"code": previous})
    assert r.status_code == 200, r.text
    codes = r.json()["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10 and all(CODE_RE.fullmatch(c) for c in codes)

    otp = oathtool(secret)
    assert _login(server, otp).status_code == 200
    r = _login(server, otp)  # the same one-time code again
    assert r.status_code == 401 and r.json()["error"]["code"] == "otp_invalid"

    assert _login(server, codes[0]).status_code == 200
    r = _login(server, codes[0])
    assert r.status_code == 401 and r.json()["error"]["code"] == "otp_invalid", r.text
    # Typed differently (upper case, no dashes) it is the same code: a second use still fails.
    assert _login(server, codes[1].upper().replace("-", "")).status_code == 200
    assert _login(server, codes[1]).status_code == 401
    assert _login(server, "abcd-efgh-jkmn-pqrs").status_code == 401
    # A recovery code never stands in for the password.
    assert _login(server, codes[2], password="wrong-password").status_code == 401

    users = server.api("GET", "/api/users").json()
    assert next(u for u in users if u["username"] == "tess")["recovery_codes_left"] == 8
    stored = json.dumps(server.api("GET", "/api/audit?limit=1000").json())
    assert not any(c in stored for c in codes) and secret not in stored


def test_cli_enrolment_shows_codes_once_and_regenerates(server, tess):
    env = {**server.env, "FSCTL_SERVER": server.url, "FSCTL_TOKEN": tess}
    with subprocess.Popen(  # `with` closes the three pipes however the test ends
        [*FSCTL, "user", "totp", "enable", "tess"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    ) as proc:
        assert proc.stdout is not None and proc.stdin is not None and proc.stderr is not None
        secret = None
        for line in proc.stdout:
            if line.strip().startswith("secret:"):
                secret = line.split(":", 1)[1].strip()
                break
        assert secret, proc.stderr.read()
        proc.stdin.write(oathtool(secret, "30 seconds ago") + "\n")
        proc.stdin.close()
        rest = proc.stdout.read()
        assert proc.wait(60) == 0, proc.stderr.read()
    first = CODE_RE.findall(rest)
    assert len(first) == 10 and "shown only now" in rest

    r = server.fsctl("user", "totp", "recovery-codes", "tess", token=tess)
    assert r.returncode == 0, r.stderr
    second = CODE_RE.findall(r.stdout)
    assert len(second) == 10 and not set(first) & set(second)
    assert _login(server, first[0]).status_code == 401  # the old codes stopped working
    assert _login(server, second[0]).status_code == 200
    r = server.fsctl(
        "login", "--user", "tess", "--password-stdin", "--otp", oathtool(secret), input="tess-password\n", token=None
    )
    assert r.returncode == 0, r.stderr
    # Turning 2FA off drops the codes; asking for new ones then says why not.
    assert server.fsctl("user", "totp", "disable", "tess", token=tess).returncode == 0
    r = server.fsctl("user", "totp", "recovery-codes", "tess", token=tess)
    assert r.returncode == 1 and "two-factor login is off" in r.stderr
