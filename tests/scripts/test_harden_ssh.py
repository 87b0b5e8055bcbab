"""scripts/harden-ssh.sh on prepared trees (`--root`), validated by the real `sshd -t`/`sshd -T` of the
openssh-server package (these tests skip, saying so, where it is not installed): a diff only without
--apply; the drop-in written with --apply and the scan then clean of it; no key → password login
left on; an sshd -t failure → nothing changed; no Include → the main file edited with a backup."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "harden-ssh.sh"
SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.access("/usr/sbin/sshd", os.X_OK) else None)
DROPIN = "etc/ssh/sshd_config.d/00-infracore-hardening.conf"
CLOUD_INIT = "etc/ssh/sshd_config.d/50-cloud-init.conf"


def _sshd_usable() -> str | None:
    if SSHD is None or shutil.which("ssh-keygen") is None:
        return "openssh-server (sshd, ssh-keygen) is not installed: apt-get install openssh-server"
    if not os.path.isdir("/run/sshd"):
        # sshd -t insists on its privilege separation directory; systemd creates it when ssh.service runs.
        if os.geteuid() != 0:
            return "/run/sshd is missing and only root may create it"
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    return None


pytestmark = pytest.mark.skipif(_sshd_usable() is not None, reason=str(_sshd_usable()))


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


@pytest.fixture
def tree(tmp_path) -> Path:
    """An Ubuntu-cloud-like host: the main file Includes sshd_config.d, cloud-init turned passwords on,
    alice has a key."""
    root = tmp_path / "root"
    (root / "etc/ssh/sshd_config.d").mkdir(parents=True)
    hostkey = keygen(tmp_path / "hostkey")
    (root / "etc/ssh/sshd_config").write_text(
        "Include /etc/ssh/sshd_config.d/*.conf\nKbdInteractiveAuthentication no\nUsePAM yes\n"
        f"HostKey {hostkey}\nSubsystem sftp /usr/lib/openssh/sftp-server\n"
    )
    (root / CLOUD_INIT).write_text("PasswordAuthentication yes\n")
    (root / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n"
        "bob:x:1001:1001::/home/bob:/bin/bash\n"
    )
    for user in ("alice", "bob"):
        (root / "home" / user / ".ssh").mkdir(parents=True, mode=0o700)
        os.chmod(root / "home" / user, 0o755)
    (root / "root").mkdir(mode=0o700)
    userkey = keygen(tmp_path / "alice_key")
    (root / "home/alice/.ssh/authorized_keys").write_text(Path(f"{userkey}.pub").read_text())
    os.chmod(root / "home/alice/.ssh/authorized_keys", 0o600)
    return root


def run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SSHD": SSHD or "sshd"},
    )


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mode) for p in root.rglob("*") if p.is_file()}


def scan_ids(root: Path) -> set[str]:
    import json
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "fsctl", "security", "scan", "--root", str(root), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    return {f["id"] for f in json.loads(r.stdout)["findings"]}


def test_without_apply_it_shows_the_diff_and_changes_nothing(tree):
    before = snapshot(tree)
    r = run(tree, "--user", "alice")
    assert r.returncode == 0, r.stderr
    assert f"--- /{DROPIN} (now)" in r.stdout and f"+++ /{DROPIN} (new)" in r.stdout
    for line in ("+PermitRootLogin no", "+PasswordAuthentication no", "+KbdInteractiveAuthentication no"):
        assert line in r.stdout
    assert "sshd -t accepts the result" in r.stdout and "dry run: nothing changed" in r.stdout
    assert snapshot(tree) == before


def test_apply_writes_the_drop_in_that_wins_over_cloud_init(tree):
    assert "sshd.password_authentication" in scan_ids(tree)
    r = run(tree, "--user", "alice", "--apply")
    assert r.returncode == 0, r.stderr
    dropin = tree / DROPIN
    assert dropin.stat().st_mode & 0o777 == 0o644
    body = [ln for ln in dropin.read_text().splitlines() if not ln.startswith("#")]
    assert body == ["PermitRootLogin no", "PasswordAuthentication no", "KbdInteractiveAuthentication no"]
    assert (tree / CLOUD_INIT).read_text() == "PasswordAuthentication yes\n"  # untouched: ours is read first
    assert (tree / "etc/ssh/sshd_config").read_text().startswith("Include ")
    assert "--root: not reloading" in r.stdout
    ids = scan_ids(tree)
    assert not ids & {"sshd.password_authentication", "sshd.permit_root_login", "sshd.kbd_interactive"}, ids
    again = run(tree, "--user", "alice", "--apply")
    assert again.returncode == 0 and "nothing to change" in again.stdout


def test_no_key_means_no_password_change(tree):
    r = run(tree, "--user", "bob", "--apply")
    assert r.returncode == 3
    assert "no authorized key for 'bob'" in r.stderr and "ssh-copy-id bob@" in r.stderr
    assert "PasswordAuthentication" not in r.stdout
    body = (tree / DROPIN).read_text()
    assert "PermitRootLogin no" in body and "PasswordAuthentication" not in body  # root login off is safe
    assert "sshd.password_authentication" in scan_ids(tree)


def test_root_without_a_key_refuses_everything(tree):
    before = snapshot(tree)
    r = run(tree, "--user", "root", "--apply")
    assert r.returncode == 3 and "refusing" in r.stderr
    assert snapshot(tree) == before


def test_root_with_a_key_keeps_key_only_root_login(tree, tmp_path):
    (tree / "root/.ssh").mkdir(mode=0o700)
    (tree / "root/.ssh/authorized_keys").write_text(Path(f"{keygen(tmp_path / 'rk')}.pub").read_text())
    r = run(tree, "--user", "root", "--apply")
    assert r.returncode == 0, r.stderr
    assert "PermitRootLogin prohibit-password" in (tree / DROPIN).read_text()


def test_a_key_sshd_would_ignore_does_not_count(tree):
    os.chmod(tree / "home/alice/.ssh", 0o777)  # StrictModes: sshd refuses keys in a writable directory
    r = run(tree, "--user", "alice")
    assert r.returncode == 3 and "writable by others" in r.stderr
    assert "+PasswordAuthentication no" not in r.stdout


def test_sshd_t_failure_changes_nothing(tree):
    """A configuration sshd rejects (here a bad Port elsewhere in it): refused before any write."""
    (tree / "etc/ssh/sshd_config.d/60-typo.conf").write_text("Port twenty-two\n")
    before = snapshot(tree)
    r = run(tree, "--user", "alice", "--apply")
    assert r.returncode == 1
    assert "sshd -t rejects the resulting configuration" in r.stderr and "nothing changed" in r.stderr
    assert snapshot(tree) == before


def test_without_an_include_the_main_file_is_edited_with_a_backup(tree):
    main = tree / "etc/ssh/sshd_config"
    original = main.read_text().replace("Include /etc/ssh/sshd_config.d/*.conf\n", "") + "PasswordAuthentication yes\n"
    main.write_text(original)
    r = run(tree, "--user", "alice", "--apply")
    assert r.returncode == 0, r.stderr
    text = main.read_text()
    assert text.startswith("# BEGIN infracore hardening")
    assert text.index("PasswordAuthentication no") < text.index("PasswordAuthentication yes")
    backups = list(main.parent.glob("sshd_config.infracore-bak-*"))
    assert len(backups) == 1 and backups[0].read_text() == original
    assert not (tree / DROPIN).exists()
    assert "sshd.password_authentication" not in scan_ids(tree)
    # Run again: the block is replaced, not stacked.
    assert run(tree, "--user", "alice", "--apply").returncode == 0
    assert main.read_text().count("# BEGIN infracore hardening") == 1


def test_a_setting_before_the_include_makes_it_edit_the_main_file(tree):
    main = tree / "etc/ssh/sshd_config"
    main.write_text("PasswordAuthentication yes\n" + main.read_text())
    r = run(tree, "--user", "alice", "--apply")
    assert r.returncode == 0, r.stderr
    assert "sets passwordauthentication before any Include" in r.stdout
    assert main.read_text().startswith("# BEGIN infracore hardening")
    assert "sshd.password_authentication" not in scan_ids(tree)


def test_bad_arguments(tree, tmp_path):
    assert run(tree, "--user", "nobody-here").returncode == 1
    assert run(tmp_path / "missing").returncode == 1
    r = run(tree, "--frobnicate")
    assert r.returncode == 1 and "unknown argument" in r.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_clean():
    r = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_when_an_earlier_file_would_win_sshd_T_catches_it_and_the_main_file_is_edited(tree):
    """The pre-check reads only the main file and sshd_config.d; an Include of another file before it is
    caught by `sshd -T` on the staged result, and the script falls back to the main file's top."""
    main = tree / "etc/ssh/sshd_config"
    main.write_text("Include /etc/ssh/legacy.conf\n" + main.read_text())
    (tree / "etc/ssh/legacy.conf").write_text("PasswordAuthentication yes\n")
    r = run(tree, "--user", "alice", "--apply")
    assert r.returncode == 0, r.stderr
    assert "a file read earlier wins" in r.stdout and "passwordauthentication yes" in r.stdout
    assert main.read_text().startswith("# BEGIN infracore hardening") and not (tree / DROPIN).exists()
    assert "sshd.password_authentication" not in scan_ids(tree)
