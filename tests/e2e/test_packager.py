"""The packager flow through the CLI against a real `fsctl serve`: `fsctl client add|list|remove`,
`fsctl artifact upload` and `fsctl deploy` with client credentials from the environment, and the whole
upload → deploy → poll-to-succeeded flow (that part needs orch's deploys)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import httpx

from tests.conftest import ROOT
from tests.orch import tarfiles

APP = (ROOT / "examples" / "hello" / "app.py").read_text()


def _release(tmp_path: Path, version: str) -> Path:
    """A tar.gz of the example app whose greeting names its version."""
    code = APP.replace("os.environ.get('GREETING', 'hello')", repr(f"release {version}"))
    assert code != APP
    path = tmp_path / f"app-{version}.tgz"
    path.write_bytes(tarfiles.build([("./", "dir"), ("./app.py", "file", code.encode(), 0o755)]))
    return path


def _add_client(server, *extra: str) -> dict[str, str]:
    r = server.fsctl("client", "add", "--name", "ci", "--service", "web", "--allow-ip", "127.0.0.1/32", *extra)
    assert r.returncode == 0, r.stderr
    env = dict(line.strip().split("=", 1) for line in r.stdout.splitlines() if line.strip().startswith("INFRACORE_"))
    assert set(env) == {"INFRACORE_CLIENT_ID", "INFRACORE_CLIENT_SECRET"}
    assert "shown only now" in r.stderr
    return env


def _as_client(server, env: dict[str, str], *args: str, timeout: float = 120):
    import subprocess

    from tests.conftest import FSCTL

    return subprocess.run(
        [*FSCTL, *args],
        env={**server.env, **env, "FSCTL_SERVER": server.url},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def test_client_cli_and_upload_with_client_credentials(server, tmp_path):
    creds = _add_client(server)
    listed = json.loads(server.fsctl("client", "list", "--json").stdout)
    assert [c["name"] for c in listed] == ["ci"] and "client_secret" not in listed[0]
    assert "127.0.0.1/32" in server.fsctl("client", "list").stdout

    art = _release(tmp_path, "1.0.0")
    r = _as_client(server, creds, "artifact", "upload", str(art), "--service", "web")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == hashlib.sha256(art.read_bytes()).hexdigest()
    # A service the client was not granted: the upload is refused and the CLI exits non-zero.
    r = _as_client(server, creds, "deploy", "--service", "other", "--artifact", str(art), "--version", "1")
    assert r.returncode == 1 and "may not act on service 'other'" in r.stderr
    # Wrong secret: a clear error, non-zero.
    r = _as_client(
        server, {**creds, "INFRACORE_CLIENT_SECRET": "ics_wrong"}, "artifact", "upload", str(art), "--service", "web"
    )
    assert r.returncode == 1 and "wrong client id or secret" in r.stderr
    r = _as_client(server, {"INFRACORE_CLIENT_ID": creds["INFRACORE_CLIENT_ID"]}, "artifact", "ls")
    assert r.returncode == 1 and "set both" in r.stderr
    listing = server.fsctl("artifact", "ls").stdout
    assert "app-1.0.0.tgz" in listing and "tar.gz" in listing and "web" in listing

    client_id = creds["INFRACORE_CLIENT_ID"]
    assert server.fsctl("client", "remove", client_id).returncode == 0
    r = _as_client(server, creds, "artifact", "upload", str(art), "--service", "web")
    assert r.returncode == 1


def test_deploy_needs_its_flags(server):
    r = server.fsctl("deploy", "--service", "web")
    assert r.returncode == 1 and "--artifact, --version" in r.stderr


def test_packager_flow_end_to_end(server, tmp_path):
    """Upload a tar.gz, deploy it, poll to `succeeded` — with client credentials only — then deploy v2
    over it; the release dir is `${installPath}` and the service answers from the new code."""
    spec = {
        "name": "web",
        "cmd": ["python3", "${installPath}/app.py", "${PORT}"],
        "ports": [{"name": "http", "internal": "auto"}],
        "healthcheck": {"http": "http://127.0.0.1:${PORT}/healthz", "interval": "1s", "timeout": "2s", "retries": 3},
    }
    creds = _add_client(server)
    for version in ("1.0.0", "2.0.0"):
        if version == "1.0.0":
            # The service exists before its first deploy (an admin applies its spec).
            r = server.api("POST", "/api/services", json=spec)
            assert r.status_code == 200, r.text
        art = _release(tmp_path, version)
        r = _as_client(
            server,
            creds,
            "deploy",
            "--service",
            "web",
            "--artifact",
            str(art),
            "--version",
            version,
            "--wait",
            "--timeout",
            "120",
            timeout=180,
        )
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert f"web {version} deployed" in r.stdout
        assert (server.data_dir / "releases" / "web" / version / "app.py").exists()
        deadline = time.monotonic() + 30
        while True:
            endpoints = server.api("GET", "/api/services/web/status").json()["endpoints"]
            body = httpx.get(f"http://{endpoints[0]}/", timeout=5).text if endpoints else ""
            if f"release {version}" in body:
                break
            assert time.monotonic() < deadline, (endpoints, body)
            time.sleep(0.2)
    # The deployments are readable with the client's token; another service's are not.
    tok = httpx.post(
        f"{server.url}/api/auth/client-token",
        json={"client_id": creds["INFRACORE_CLIENT_ID"], "client_secret": creds["INFRACORE_CLIENT_SECRET"]},
    ).json()["token"]
    r = _as_client(server, creds, "deploy", "--service", "web", "--artifact", str(art), "--version", "3.0.0", "--json")
    assert r.returncode == 0, r.stderr
    dep_id = json.loads(r.stdout)["deployment_id"]
    assert server.api("GET", f"/api/deployments/{dep_id}", token=tok).status_code == 200
    assert (
        server.api(
            "POST",
            "/api/services/other/deploy",
            token=tok,
            json={"version": "1", "artifact_id": json.loads(r.stdout)["artifact"]["id"]},
        ).status_code
        == 403
    )
    # Nor may it change the spec an admin applied (a new cmd would run what no admin approved), nor run an
    # artifact uploaded for another service under this one's name.
    before = [d["id"] for d in server.api("GET", "/api/deployments?service=web").json()]
    r = server.api(
        "POST",
        "/api/services/web/deploy",
        token=tok,
        json={"version": "4.0.0", "overrides": {"cmd": ["sh", "-c", "id > /tmp/pwned"]}},
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "client_scope", r.text
    other = server.api(
        "POST", "/api/artifacts?service=other&filename=x.tgz", content=_release(tmp_path, "9.9.9").read_bytes()
    )
    assert other.status_code in (200, 201), other.text
    r = server.api(
        "POST", "/api/services/web/deploy", token=tok, json={"version": "9.9.9", "artifact_id": other.json()["id"]}
    )
    assert r.status_code == 403 and "was not uploaded for 'web'" in r.text, r.text
    r = server.api("POST", "/api/services/web/deploy", token=tok, json={"version": "9.9.8", "artifact_id": "0" * 64})
    assert r.status_code == 403, r.text
    assert [d["id"] for d in server.api("GET", "/api/deployments?service=web").json()] == before  # none started
