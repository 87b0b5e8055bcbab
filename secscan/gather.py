"""Gatherers: the thin I/O that turns a host (or a prepared tree under `root`) into facts for the checks.

Blocking (files, short subprocesses with timeouts, psutil): run them in a worker thread. With a root
other than `/`, only files under it are read — no command runs — except `listeners()`, which always
reads the live kernel tables and is only called when asked.
"""

from __future__ import annotations

import glob as globmod
import os
import shutil
import stat
import subprocess
from pathlib import Path

import psutil

from secscan.checks_firewall import FirewallFacts
from secscan.checks_platform import FileMode
from secscan.checks_sockets import Listener, redact_cmdline
from secscan.checks_sshd import SshdFacts
from secscan.sshd_config import dpkg_version, parse, parse_sshd_t, parse_version

COMMAND_TIMEOUT_S = 10.0
MAX_FILE_BYTES = 1 << 20
MAX_WALK = 5000


class HostFiles:
    """`ConfigFiles` over a directory tree: host path `/etc/x` is `root/etc/x`. Reads are bounded, and a
    symlink is followed only when it stays inside `root` (a prepared tree must not read the real host)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path(self, host_path: str) -> Path:
        return self.root / host_path.lstrip("/")

    def _inside(self, p: Path) -> bool:
        if self.root == Path("/"):
            return True
        try:
            p.resolve().relative_to(self.root)
            return True
        except (ValueError, OSError):
            return False

    def read(self, host_path: str) -> str | None:
        p = self.path(host_path)
        if not self._inside(p):
            return None
        try:
            with open(p, "rb") as f:
                return f.read(MAX_FILE_BYTES).decode("utf-8", errors="replace")
        except OSError:
            return None

    def exists(self, host_path: str) -> bool:
        p = self.path(host_path)
        return self._inside(p) and p.exists()

    def glob(self, pattern: str) -> list[str]:
        base = str(self.root).rstrip("/")
        hits = sorted(globmod.glob(globmod.escape(base) + "/" + pattern.lstrip("/")))
        return ["/" + h[len(base) :].lstrip("/") for h in hits if os.path.isfile(h)]


def run(argv: list[str], timeout: float = COMMAND_TIMEOUT_S) -> tuple[int, str, str] | None:
    """(exit code, stdout, stderr), or None when the program is not installed."""
    exe = shutil.which(argv[0]) or next(
        (p for p in (f"/usr/sbin/{argv[0]}", f"/sbin/{argv[0]}") if os.access(p, os.X_OK)), None
    )
    if exe is None:
        return None
    try:
        p = subprocess.run(
            [exe, *argv[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LC_ALL": "C"},
        )
    except subprocess.TimeoutExpired:
        return 124, "", f"{argv[0]} timed out after {timeout:.0f} s"
    except OSError as e:
        return 126, "", str(e)
    return p.returncode, p.stdout, p.stderr


def sshd_facts(root: Path) -> SshdFacts:
    files = HostFiles(root)
    live = files.root == Path("/")
    config = parse(files)
    version, version_source = None, "unknown"
    status = files.read("/var/lib/dpkg/status")
    dv = dpkg_version(status) if status else None
    if dv:
        version, version_source = parse_version(dv), "dpkg"
    sshd_t, sshd_t_error, installed = None, None, config.found
    if live:
        res = run(["sshd", "-T"])
        if res is not None:
            installed = True
            code, out, err = res
            if code == 0 and out.strip():
                sshd_t = parse_sshd_t(out)
            else:
                sshd_t_error = f"sshd -T exited {code}: {(err or out).strip()[:300]}"
            if version is None:
                v = run(["sshd", "-V"])
                if v is not None:
                    version = parse_version(v[1] + v[2])
                    version_source = "sshd -V" if version else version_source
    return SshdFacts(config, sshd_t, sshd_t_error, version, version_source, installed)


def _wants(files: HostFiles, unit: str) -> bool:
    return bool(files.glob(f"/etc/systemd/system/*.wants/{unit}"))


def firewall_facts(root: Path) -> FirewallFacts:
    files = HostFiles(root)
    live = files.root == Path("/")
    errors: list[str] = []
    nft, nft_source, nft_enabled = None, "", None
    ipt, ipt_source = None, ""
    fwd, fwd_source = None, ""
    if live:
        res = run(["nft", "list", "ruleset"])
        if res is not None:
            if res[0] == 0:
                nft, nft_source = res[1], "nft list ruleset"
            else:
                errors.append(f"nft list ruleset exited {res[0]}: {res[2].strip()[:200]}")
        res = run(["iptables", "-S"])
        if res is not None:
            if res[0] == 0:
                ipt, ipt_source = res[1], "iptables -S"
            else:
                errors.append(f"iptables -S exited {res[0]}: {res[2].strip()[:200]}")
        res = run(["firewall-cmd", "--state"])
        if res is not None:
            fwd, fwd_source = res[0] == 0 and res[1].strip() == "running", "firewall-cmd --state"
    if nft is None:
        text = files.read("/etc/nftables.conf")
        if text is not None:
            nft, nft_source = text, "/etc/nftables.conf"
            nft_enabled = _wants(files, "nftables.service")
    if ipt is None:
        text = files.read("/etc/iptables/rules.v4")
        if text is not None:
            ipt, ipt_source = text, "/etc/iptables/rules.v4"
    ufw, ufw_source = None, ""
    conf = files.read("/etc/ufw/ufw.conf")
    if conf is not None:
        ufw_source = "/etc/ufw/ufw.conf"
        ufw = any(
            line.strip().replace(" ", "").upper() in ("ENABLED=YES", 'ENABLED="YES"') for line in conf.splitlines()
        )
    if fwd is None and files.exists("/etc/firewalld/firewalld.conf"):
        fwd, fwd_source = _wants(files, "firewalld.service"), "firewalld.service enabled"
    return FirewallFacts(nft, nft_source, nft_enabled, ipt, ipt_source, ufw, ufw_source, fwd, fwd_source, tuple(errors))


def listeners() -> list[Listener]:
    """Live TCP listeners and bound UDP sockets with their processes (psutil; as root, every process's)."""
    out = []
    procs: dict[int, tuple[str | None, str | None]] = {}
    for c in psutil.net_connections(kind="inet"):
        tcp = c.type == 1  # SOCK_STREAM
        if tcp and c.status != psutil.CONN_LISTEN:
            continue
        if not tcp and c.raddr:
            continue
        if not c.laddr:
            continue
        name = cmd = None
        if c.pid:
            if c.pid not in procs:
                try:
                    p = psutil.Process(c.pid)
                    procs[c.pid] = (p.name(), redact_cmdline(p.cmdline()))
                except (psutil.Error, OSError):
                    procs[c.pid] = (None, None)
            name, cmd = procs[c.pid]
        out.append(Listener("tcp" if tcp else "udp", c.laddr.ip, c.laddr.port, c.pid, name, cmd))
    return out


def file_modes(data_dir: Path) -> list[FileMode]:
    """Modes of the data dir and what is under it (not following symlinks, at most MAX_WALK entries)."""
    out: list[FileMode] = []
    try:
        st = os.lstat(data_dir)
    except OSError:
        return out
    out.append(FileMode(str(data_dir), st.st_mode, st.st_uid))
    for dirpath, dirnames, filenames in os.walk(data_dir):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode):
                continue
            out.append(FileMode(p, st.st_mode, st.st_uid))
            if len(out) >= MAX_WALK:
                return out
    return out


def token_files(root: Path) -> list[FileMode]:
    """`fsctl login`'s token files of root and of the users under /home."""
    files = HostFiles(root)
    out = []
    for host in ["/root/.config/infracore/fsctl.json", *files.glob("/home/*/.config/infracore/fsctl.json")]:
        p = files.path(host)
        try:
            st = os.lstat(p)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            out.append(FileMode(str(p), st.st_mode, st.st_uid))
    return out
