"""`fsctl state backup` of a running server and `fsctl state restore` onto an empty data dir, through the
real CLI — users, API tokens, routes, services with their releases and certificates all come back;
altered, foreign and misplaced archives are refused and nothing is restored."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import trustme

from tests.conftest import FSCTL, ROOT


def _state(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FSCTL, "state", *args], capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_a_running_servers_state_backs_up_and_restores_onto_an_empty_dir(server_factory: Any, tmp_path: Path) -> None:
    srv = server_factory()
    r = srv.api("POST", "/api/users", json={"username": "olga", "password": "olga-pass-123", "role": "viewer"})
    assert r.status_code in (200, 201), r.text
    assert srv.fsctl("route", "add", "--host", "kept.test", "--upstream", "127.0.0.1:9").returncode == 0
    key = (srv.data_dir / "gate" / "fallback.key").read_bytes()
    token = srv.api("POST", "/api/tokens", json={"name": "ci", "role": "viewer"}).json()["token"]
    spec = "name: keeper\ncmd: [sleep, '300']\nenv: {RELEASE: one}\n"
    assert srv.fsctl("service", "apply", "-f", "-", input=spec).returncode == 0
    out = srv.fsctl("service", "apply", "-f", "-", "--wait", "60", input=spec.replace("one", "two"))  # release 2
    assert out.returncode == 0, out.stdout + out.stderr
    ca = trustme.CA()
    leaf = ca.issue_cert("shop.example.com")
    (tmp_path / "chain.pem").write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    (tmp_path / "key.pem").write_bytes(leaf.private_key_pem.bytes())
    out = srv.fsctl("cert", "import", "--cert", str(tmp_path / "chain.pem"), "--key", str(tmp_path / "key.pem"))
    assert out.returncode == 0, out.stderr

    archive = tmp_path / "state.tar.gz"
    out = _state("backup", str(archive), "--data-dir", str(srv.data_dir))  # while it runs
    assert out.returncode == 0, out.stderr
    assert "state.db" in out.stdout and archive.stat().st_mode & 0o777 == 0o600
    assert srv.stop() == 0

    restored = tmp_path / "restored"
    out = _state("restore", str(archive), "--data-dir", str(restored), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["files"] >= 3
    assert (restored / "gate" / "fallback.key").read_bytes() == key
    assert (restored / "gate" / "fallback.key").stat().st_mode & 0o777 == 0o600

    again = server_factory("restored")
    assert again.login("olga", "olga-pass-123")
    # the initial admin password file is not state: the restored server's admin is the one backed up
    admin = again.login("admin", srv.admin_password)
    assert not (restored / "initial-admin-password").exists()
    assert any(rt["host"] == "kept.test" for rt in again.api("GET", "/api/routes", token=admin).json())
    assert again.api("GET", "/api/routes", token=token).status_code == 200  # the API token still works
    releases = again.api("GET", "/api/services/keeper/releases", token=admin).json()
    assert [r["release"] for r in releases] == [2, 1]
    assert again.api("GET", "/api/services/keeper", token=admin).json()["spec"]["env"] == {"RELEASE": "two"}
    certs = again.api("GET", "/api/certs", token=admin).json()
    assert [c["name"] for c in certs] == ["shop.example.com"] and certs[0]["source"] == "imported"
    assert (restored / "certs" / "shop.example.com.key").read_bytes() == (tmp_path / "key.pem").read_bytes()


def _rewrite(src: Path, dst: Path, change: Any) -> None:
    with tarfile.open(src) as tin, tarfile.open(dst, "w:gz") as tout:
        for m in tin:
            data = tin.extractfile(m).read() if m.isfile() else b""  # type: ignore[union-attr]
            m, data = change(m, data)
            if m is not None:
                m.size = len(data)
                tout.addfile(m, io.BytesIO(data))


def test_altered_foreign_and_misplaced_archives_are_refused_and_nothing_is_restored(
    server_factory: Any, tmp_path: Path
) -> None:
    srv = server_factory()
    good = tmp_path / "good.tar.gz"
    assert _state("backup", str(good), "--data-dir", str(srv.data_dir)).returncode == 0

    def flip(m: tarfile.TarInfo, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
        if m.name.endswith("fallback.crt"):
            data = data[:100] + bytes([data[100] ^ 1]) + data[101:]
        return m, data

    def escape(m: tarfile.TarInfo, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
        if m.name.endswith("fallback.crt"):
            m.name = "data/../../escaped.crt"
        return m, data

    def link(m: tarfile.TarInfo, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
        if m.name.endswith("fallback.crt"):
            m.type, m.linkname = tarfile.SYMTYPE, "/etc/passwd"
            return m, b""
        return m, data

    cases = {"flip": (flip, "damaged"), "escape": (escape, "not in the manifest"), "link": (link, "not a plain file")}
    for name, (change, message) in cases.items():
        bad = tmp_path / f"{name}.tar.gz"
        _rewrite(good, bad, change)
        target = tmp_path / f"target-{name}"
        out = _state("restore", str(bad), "--data-dir", str(target))
        assert out.returncode == 1 and message in out.stderr, (name, out.stderr)
        assert not target.exists(), name  # nothing restored, not even a partial dir
    assert not (tmp_path / "escaped.crt").exists() and not list(tmp_path.glob(".target-*"))

    foreign = tmp_path / "foreign.tar.gz"
    with tarfile.open(foreign, "w:gz") as t:
        t.add(__file__, arcname="MANIFEST.json")
    out = _state("restore", str(foreign), "--data-dir", str(tmp_path / "t2"))
    assert out.returncode == 1 and "manifest" in out.stderr
    (tmp_path / "junk").write_bytes(b"\x00" * 100)
    out = _state("restore", str(tmp_path / "junk"), "--data-dir", str(tmp_path / "t3"))
    assert out.returncode == 1 and "not a readable state archive" in out.stderr

    out = _state("restore", str(good), "--data-dir", str(srv.data_dir))  # the live, non-empty data dir
    assert out.returncode == 1 and "is not empty" in out.stderr
    out = _state("backup", str(tmp_path / "x.tar.gz"), "--data-dir", str(tmp_path / "nothing"))
    assert out.returncode == 1 and "holds no Infra-Core state" in out.stderr
