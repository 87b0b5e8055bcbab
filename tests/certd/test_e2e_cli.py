"""`fsctl cert ...` against a real `fsctl serve` (with Pebble as its ACME directory): import, list,
precise import errors, failed orders, removal, and the audit log never holding a key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trustme

from fsctl.output import when
from tests.certd.conftest import unique_name


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path, Path]:
    ca = trustme.CA()
    leaf = ca.issue_cert("shop.example.com", "www.shop.example.com")
    other = ca.issue_cert("other.example.com")
    fullchain = tmp_path / "fullchain.pem"
    fullchain.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems) + ca.cert_pem.bytes())
    key = tmp_path / "key.pem"
    key.write_bytes(leaf.private_key_pem.bytes())
    wrong_key = tmp_path / "wrong-key.pem"
    wrong_key.write_bytes(other.private_key_pem.bytes())
    return fullchain, key, wrong_key


def test_cert_import_ls_rm_through_fsctl_serve(pebble, server_factory, pair, tmp_path: Path) -> None:
    fullchain, key, wrong_key = pair
    srv = server_factory(
        extra_args=[
            "--acme-directory",
            pebble.directory,
            "--acme-ca-bundle",
            str(pebble.ca_bundle),
            "--acme-email",
            "ops@example.com",
        ]
    )
    r = srv.fsctl("cert", "ls")
    assert r.returncode == 0 and "(none)" in r.stdout, r.stderr

    # Precise import errors, and nothing stored by them.
    r = srv.fsctl("cert", "import", "--cert", str(fullchain), "--key", str(wrong_key))
    assert r.returncode == 1
    assert "key_pem: the private key does not match the certificate" in r.stderr
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    r = srv.fsctl("cert", "import", "--cert", str(garbage), "--key", str(key))
    assert r.returncode == 1 and "cert_pem: no PEM certificate found" in r.stderr
    r = srv.fsctl("cert", "import", "--cert", str(tmp_path / "nope.pem"), "--key", str(key))
    assert r.returncode == 1 and "does not exist" in r.stderr
    assert srv.api("GET", "/api/certs").json() == []

    r = srv.fsctl("cert", "import", "--cert", str(fullchain), "--key", str(key))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("imported shop.example.com (shop.example.com, www.shop.example.com): valid")
    r = srv.fsctl("cert", "ls")
    assert r.returncode == 0
    row = next(line for line in r.stdout.splitlines() if line.startswith("shop.example.com"))
    assert "valid" in row and "imported" in row
    column = r.stdout.splitlines()[0].index("RENEWS")
    assert row[column:].split()[0] == "-"  # imported: never renewed by certd
    [cert] = srv.api("GET", "/api/certs").json()
    assert cert["names"] == ["shop.example.com", "www.shop.example.com"] and cert["source"] == "imported"
    assert cert["days_left"] > 300 and cert["auto_renew"] is False
    crt_file = srv.data_dir / "certs" / "shop.example.com.crt"
    key_file = srv.data_dir / "certs" / "shop.example.com.key"
    assert crt_file.read_bytes() == fullchain.read_bytes()
    assert (key_file.stat().st_mode & 0o777) == 0o600

    # An imported cert is not renewed by ACME; the refusal says what to do.
    r = srv.fsctl("cert", "renew", "shop.example.com")
    assert r.returncode == 1 and "imported certificate: certd cannot renew it" in r.stderr
    assert "fsctl cert import" in r.stderr

    # The audit log has the import, never the key.
    audit = srv.api("GET", "/api/audit").json()
    assert any(a["action"] == "cert.import" and a["target"] == "cert:shop.example.com" for a in audit)
    assert "PRIVATE KEY" not in json.dumps(audit)

    r = srv.fsctl("cert", "rm", "shop.example.com")
    assert r.returncode == 0 and "removed certificate shop.example.com" in r.stdout
    assert srv.api("GET", "/api/certs").json() == []
    assert not crt_file.exists() and not key_file.exists()
    r = srv.fsctl("cert", "rm", "shop.example.com")
    assert r.returncode == 1 and "no certificate named shop.example.com" in r.stderr


def test_cert_issue_failure_is_reported_through_the_cli(pebble, server_factory) -> None:
    """No HTTP-01 responder answers for this name on Pebble's port (the gate of this server listens on
    its own test port), so Pebble refuses: the CLI shows Pebble's reason and what is served meanwhile.
    The ACME settings come from the environment here (INFRACORE_ACME_*), the other tests pass flags."""
    srv = server_factory(
        env={
            "INFRACORE_ACME_DIRECTORY": pebble.directory,
            "INFRACORE_ACME_CA_BUNDLE": str(pebble.ca_bundle),
            "INFRACORE_ACME_EMAIL": "ops@example.com",
        }
    )
    name = unique_name("cli")
    r = srv.fsctl("cert", "issue", name, timeout=120)
    assert r.returncode == 1
    assert f"the ACME server did not issue a certificate for {name}" in r.stderr
    assert "urn:ietf:params:acme:error:" in r.stderr and "still serving the self-signed fallback" in r.stderr
    [cert] = srv.api("GET", "/api/certs").json()
    assert cert["status"] == "self-signed" and cert["failures"] == 1 and cert["last_error"]
    started = [json.loads(line) for line in srv.log().splitlines() if '"certd started"' in line]
    assert started and started[0]["directory"] == pebble.directory
    r = srv.fsctl("cert", "issue", "bad..name")
    assert r.returncode == 1 and "name: 'bad..name' is not a DNS name" in r.stderr
    r = srv.api("POST", "/api/certs", json={"name": "x.test", "extra": 1})
    assert r.status_code == 400 and "extra" in r.text


@pytest.mark.parametrize(
    ("cert", "shown"),
    [
        ({"renew_at": None, "auto_renew": True}, "-"),
        ({"renew_at": 1_800_000_000.0, "auto_renew": False}, "-"),  # imported / unwanted
        ({"renew_at": 1_800_000_000.0, "auto_renew": True, "ari": None}, when(1_800_000_000.0)),
        ({"renew_at": 1_800_000_000.0, "auto_renew": True, "ari": {"renew_at": None}}, when(1_800_000_000.0)),
        (
            {"renew_at": 1_800_000_000.0, "auto_renew": True, "ari": {"renew_at": 1_800_000_000.0}},
            when(1_800_000_000.0) + " (ARI)",
        ),
    ],
)
def test_cert_ls_renews_column(cert: dict, shown: str) -> None:
    from fsctl.cli_certd import _renews

    assert _renews(cert) == shown
