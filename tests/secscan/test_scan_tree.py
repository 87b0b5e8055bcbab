"""`fsctl security scan --root DIR` on prepared trees: each misconfiguration is found with its evidence,
a clean tree is clean, and the exit code says whether high or critical findings exist."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import FSCTL, ROOT

DEBIAN_MAIN = (
    "# This is the sshd server system-wide configuration file.\n"
    "Include /etc/ssh/sshd_config.d/*.conf\n"
    "KbdInteractiveAuthentication no\nUsePAM yes\nX11Forwarding yes\n"
    "Subsystem\tsftp\t/usr/lib/openssh/sftp-server\n"
)
NFT_DROP = (
    "#!/usr/sbin/nft -f\nflush ruleset\ntable inet filter {\n  chain input {\n"
    "    type filter hook input priority filter; policy drop;\n    iif lo accept\n"
    "    ct state established,related accept\n    tcp dport { 22, 80, 443 } accept\n  }\n}\n"
)
DPKG = "Package: openssh-server\nStatus: install ok installed\nVersion: {}\n\n"

CLEAN: dict[str, str | tuple[str, int] | None] = {
    "etc/ssh/sshd_config": DEBIAN_MAIN,
    "etc/ssh/sshd_config.d/00-infracore-hardening.conf": "PermitRootLogin no\nPasswordAuthentication no\n",
    "etc/nftables.conf": NFT_DROP,
    "etc/systemd/system/sysinit.target.wants/nftables.service": "[Unit]\n",
    "var/lib/dpkg/status": DPKG.format("1:9.2p1-2+deb12u3"),
    "var/lib/infracore/state.db": ("", 0o600),
    "var/lib/infracore/certs/example.com.key": ("KEY", 0o600),
    "root/.config/infracore/fsctl.json": ("{}", 0o600),
}


def make_tree(base: Path, files: dict) -> Path:
    for rel, spec in files.items():
        if spec is None:
            continue
        text, mode = spec if isinstance(spec, tuple) else (spec, 0o644)
        p = base / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        os.chmod(p, mode)
    data = base / "var/lib/infracore"
    if data.is_dir():
        os.chmod(data, 0o700)
    return base


def scan(root: Path, *extra: str) -> tuple[int, dict]:
    r = subprocess.run(
        [*FSCTL, "security", "scan", "--root", str(root), "--json", *extra],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert r.returncode in (0, 2), r.stderr
    return r.returncode, json.loads(r.stdout)


def test_a_clean_tree_is_clean(tmp_path):
    code, report = scan(make_tree(tmp_path, CLEAN))
    assert code == 0 and report["failing"] is False
    assert {f["severity"] for f in report["findings"]} <= {"info"}, report["findings"]
    assert {f["id"] for f in report["findings"]} == {"sshd.port", "firewall.active"}
    assert report["sources"]["openssh"] == "9.2 (dpkg)" and "sockets" not in report["sources"]


# (name, changes to the clean tree, finding id, severity, a piece of its evidence)
CASES = [
    (
        "ubuntu cloud image: passwords on in an Included file",
        {
            "etc/ssh/sshd_config.d/50-cloud-init.conf": "PasswordAuthentication yes\n",
            "etc/ssh/sshd_config.d/00-infracore-hardening.conf": "PermitRootLogin no\n",
        },
        "sshd.password_authentication",
        "high",
        "/etc/ssh/sshd_config.d/50-cloud-init.conf:1: PasswordAuthentication yes",
    ),
    (
        "first match wins: the main file's line before the Include beats the drop-in",
        {"etc/ssh/sshd_config": "PasswordAuthentication yes\n" + DEBIAN_MAIN},
        "sshd.password_authentication",
        "high",
        "/etc/ssh/sshd_config:1: PasswordAuthentication yes",
    ),
    (
        "root login with a password",
        {"etc/ssh/sshd_config.d/00-infracore-hardening.conf": "PermitRootLogin yes\n"},
        "sshd.permit_root_login",
        "critical",
        "00-infracore-hardening.conf:1: PermitRootLogin yes",
    ),
    (
        "the deprecated alias with PAM",
        {
            "etc/ssh/sshd_config": DEBIAN_MAIN.replace(
                "KbdInteractiveAuthentication no", "ChallengeResponseAuthentication yes"
            )
        },
        "sshd.kbd_interactive",
        "high",
        "/etc/ssh/sshd_config:3: ChallengeResponseAuthentication yes",
    ),
    (
        "a Match block opens passwords for some",
        {"etc/ssh/sshd_config": DEBIAN_MAIN + "Match User deploy Address 192.0.2.0/24\n  PasswordAuthentication yes\n"},
        "sshd.match.passwordauthentication.user_deploy_address_192_0_2_0_24",
        "medium",
        "/etc/ssh/sshd_config:8: PasswordAuthentication yes (inside `Match User deploy Address 192.0.2.0/24`)",
    ),
    (
        "an old OpenSSH lets root log in with a password by default",
        {
            "var/lib/dpkg/status": DPKG.format("1:6.6p1-2ubuntu2"),
            "etc/ssh/sshd_config.d/00-infracore-hardening.conf": "PasswordAuthentication no\n",
        },
        "sshd.permit_root_login",
        "medium",
        "OpenSSH 6.6 default (yes)",
    ),
    ("no firewall at all", {"etc/nftables.conf": None}, "firewall.none", "medium", "no nftables"),
    (
        "nftables as Debian ships it filters nothing",
        {
            "etc/nftables.conf": (
                "table inet filter {\n chain input {\n  type filter hook input priority filter;\n }\n}\n"
            )
        },
        "firewall.none",
        "medium",
        "nftables (/etc/nftables.conf): input chain(s) input accept everything",
    ),
    (
        "ufw installed but disabled",
        {"etc/nftables.conf": None, "etc/ufw/ufw.conf": "ENABLED=no\n"},
        "firewall.none",
        "medium",
        "ufw (/etc/ufw/ufw.conf): disabled",
    ),
    (
        "nftables rules not loaded at boot",
        {"etc/systemd/system/sysinit.target.wants/nftables.service": None},
        "firewall.nft_not_enabled",
        "medium",
        "/etc/nftables.conf filters input",
    ),
    (
        "initial admin password readable by all",
        {"var/lib/infracore/initial-admin-password": ("pw\n", 0o644)},
        "platform.mode.initial-admin-password",
        "critical",
        "mode 0644 (should be 0600)",
    ),
    (
        "a private key readable by its group",
        {"var/lib/infracore/certs/example.com.key": ("KEY", 0o640)},
        "platform.mode.certs/example.com.key",
        "high",
        "example.com.key: mode 0640",
    ),
    (
        "a token file readable by others",
        {"root/.config/infracore/fsctl.json": ("{}", 0o644)},
        "platform.mode.token_file.{root}/root/.config/infracore/fsctl.json",
        "high",
        "mode 0644",
    ),
]


@pytest.mark.parametrize(("changes", "fid", "severity", "evidence"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_misconfiguration_is_found(tmp_path, changes, fid, severity, evidence):
    root = make_tree(tmp_path / "root", {**CLEAN, **changes})
    code, report = scan(root)
    found = {f["id"]: f for f in report["findings"]}
    fid = fid.format(root=root)
    assert fid in found, sorted(found)
    f = found[fid]
    assert f["severity"] == severity
    assert any(evidence in e for e in f["evidence"]), f["evidence"]
    assert f["fix"]
    assert code == (2 if severity in ("critical", "high") else 0)


def test_first_match_wins_the_other_way_round(tmp_path):
    """The same two lines in the other order: the earlier `no` wins, nothing to report."""
    main = "PasswordAuthentication no\n" + DEBIAN_MAIN
    root = make_tree(
        tmp_path,
        {
            **CLEAN,
            "etc/ssh/sshd_config": main,
            "etc/ssh/sshd_config.d/00-infracore-hardening.conf": "PermitRootLogin no\n",
            "etc/ssh/sshd_config.d/50-cloud-init.conf": "PasswordAuthentication yes\n",
        },
    )
    code, report = scan(root)
    assert code == 0 and "sshd.password_authentication" not in {f["id"] for f in report["findings"]}


def test_other_firewalls_count(tmp_path):
    for changes in (
        {"etc/ufw/ufw.conf": "# comment\nENABLED=yes\n"},
        {"etc/iptables/rules.v4": "*filter\n:INPUT DROP [0:0]\nCOMMIT\n"},
        {
            "etc/firewalld/firewalld.conf": "DefaultZone=public\n",
            "etc/systemd/system/multi-user.target.wants/firewalld.service": "[Unit]\n",
        },
    ):
        root = make_tree(tmp_path / str(len(list(tmp_path.iterdir()))), {**CLEAN, "etc/nftables.conf": None, **changes})
        _, report = scan(root)
        ids = {f["id"] for f in report["findings"]}
        assert "firewall.active" in ids and "firewall.none" not in ids, (changes, ids)


def test_a_symlink_out_of_the_tree_is_not_followed(tmp_path):
    """A prepared tree must not make the scanner read the real host (or loop)."""
    outside = tmp_path / "outside.conf"
    outside.write_text("PasswordAuthentication yes\n")
    root = make_tree(tmp_path / "root", CLEAN)
    (root / "etc/ssh/sshd_config.d/10-evil.conf").symlink_to(outside)
    (root / "etc/ssh/sshd_config").write_text(
        "Include /etc/ssh/sshd_config ../../../../../../../../etc/shadow\n" + DEBIAN_MAIN
    )  # a loop too, and a way out by ..
    _, report = scan(root)
    found = {f["id"]: f for f in report["findings"]}
    assert "sshd.password_authentication" not in found
    assert any(
        "cannot read included file /etc/ssh/sshd_config.d/10-evil.conf" in e
        for e in found["sshd.config_problems"]["evidence"]
    )
    assert any("nested more than 16" in e for e in found["sshd.config_problems"]["evidence"])
    assert any(
        e.endswith("etc/shadow") and "cannot read included file" in e for e in found["sshd.config_problems"]["evidence"]
    )


def test_human_output_and_bad_root(tmp_path):
    root = make_tree(
        tmp_path / "root",
        {
            **CLEAN,
            "etc/ssh/sshd_config.d/50-cloud-init.conf": "PasswordAuthentication yes\n",
            "etc/ssh/sshd_config.d/00-infracore-hardening.conf": None,
        },
    )
    r = subprocess.run(
        [*FSCTL, "security", "scan", "--root", str(root)], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert r.returncode == 2
    assert "HIGH     SSH accepts passwords" in r.stdout
    assert "evidence: /etc/ssh/sshd_config.d/50-cloud-init.conf:1: PasswordAuthentication yes" in r.stdout
    assert "exit code 2" in r.stdout
    r = subprocess.run(
        [*FSCTL, "security", "scan", "--root", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert r.returncode == 1 and "is not a directory" in r.stderr
