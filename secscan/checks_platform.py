"""Checks of Infra-Core itself: private files under the data dir, admins without two-factor login,
long-lived API tokens, TLS routes without the HTTPS redirect, expiring certificates, risky static
roots, services and the console listening beyond loopback.

Pure: `PlatformFacts`, file modes and listeners in, findings out, `now` passed in.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath

from core.platform_facts import PlatformFacts
from secscan.checks_sockets import Listener, is_loopback
from secscan.findings import Finding, Severity

DAY = 86400.0

# Never serve these (or anything inside them) as a static root; `/` and the data dir's ancestors neither.
SYSTEM_DIRS = (
    "/etc",
    "/root",
    "/proc",
    "/sys",
    "/boot",
    "/dev",
    "/run",
    "/var/lib",
    "/var/log",
    "/var/backups",
    "/var/spool",
    "/var/mail",
    "/usr/lib",
    "/lib",
    "/bin",
    "/sbin",
    "/usr/bin",
    "/usr/sbin",
)
BROAD_DIRS = ("/", "/var", "/usr", "/home", "/tmp", "/srv", "/opt", "/mnt", "/media")


@dataclass(frozen=True)
class FileMode:
    path: str
    mode: int  # st_mode
    uid: int = 0


def _sensitive(rel: str) -> str | None:
    """What kind of secret a data-dir file holds, by its path relative to the data dir, or None."""
    name = PurePosixPath(rel).name
    if name == "initial-admin-password":
        return "the initial admin password"
    if name.startswith(("state.db", "metrics.db")):
        return "the platform's database (users, tokens, audit)"
    if name.endswith(".key") or name.endswith("key.pem") or (rel.startswith("certs/") and "key" in name):
        return "a private key"
    if name == "fsctl.json":
        return "an API session token"
    if name == "console.sock":
        return "the admin socket (root-equivalent)"
    return None


def check_file_modes(data_dir: str, modes: Iterable[FileMode], token_files: Iterable[FileMode] = ()) -> list[Finding]:
    out = []
    for fm in modes:
        perm = stat.S_IMODE(fm.mode)
        rel = fm.path[len(data_dir) :].lstrip("/") if fm.path.startswith(data_dir) else fm.path
        if fm.path.rstrip("/") == data_dir.rstrip("/"):
            if perm & 0o077:
                out.append(
                    _mode_finding("platform.mode.data_dir", "high", fm, "0700", "The data dir is open to other users")
                )
            continue
        if stat.S_ISDIR(fm.mode):
            if perm & 0o002:
                out.append(
                    _mode_finding(
                        f"platform.mode.{rel}", "high", fm, "0700", f"{rel}/ under the data dir is writable by everyone"
                    )
                )
            continue
        kind = _sensitive(rel)
        if kind is None or not perm & 0o077:
            continue
        severity: Severity = (
            "critical" if perm & 0o004 and kind in ("a private key", "the initial admin password") else "high"
        )
        who = "everyone" if perm & 0o004 else "its group"
        title = f"{rel} holds {kind} and is open to {who}"
        out.append(_mode_finding(f"platform.mode.{rel}", severity, fm, "0600", title))
    for fm in token_files:
        if stat.S_IMODE(fm.mode) & 0o077:
            out.append(
                _mode_finding(
                    f"platform.mode.token_file.{fm.path}",
                    "high",
                    fm,
                    "0600",
                    "An fsctl token file is readable by other users",
                )
            )
    return out


def _mode_finding(fid: str, severity: Severity, fm: FileMode, want: str, title: str) -> Finding:
    perm = stat.S_IMODE(fm.mode)
    return Finding(
        fid,
        "platform",
        severity,
        title,
        (f"{fm.path}: mode {perm:04o} (should be {want})",),
        f"`chmod {want} {fm.path}`",
        {"path": fm.path, "mode": f"{perm:04o}"},
    )


def static_root_risk(static_dir: str, data_dir: str) -> tuple[Severity, str] | None:
    p = PurePosixPath(static_dir)
    d = PurePosixPath(data_dir)
    if p == d or d in p.parents:
        return "critical", "it is the data dir or inside it (state.db, keys, the admin password)"
    if p in d.parents:
        return "critical", f"it contains the data dir {data_dir} (state.db, keys, the admin password)"
    if str(p) == "/":
        return "critical", "it is the whole file system"
    for s in SYSTEM_DIRS:
        sp = PurePosixPath(s)
        if p == sp or sp in p.parents:
            return "critical", f"it is a system directory ({s})"
    if str(p) in BROAD_DIRS or (p.parent == PurePosixPath("/home")):
        return "high", "it is a broad directory that holds other files (home dirs hold .ssh/)"
    return None


def check_platform(
    facts: PlatformFacts,
    now: float,
    *,
    cert_warn_days: float = 14.0,
    token_max_days: float = 365.0,
    listeners: Iterable[Listener] = (),
) -> list[Finding]:
    out: list[Finding] = []
    for u in facts.users:
        if u.role == "admin" and not u.totp and not u.disabled:
            out.append(
                Finding(
                    f"platform.admin_no_2fa.{u.username}",
                    "platform",
                    "medium",
                    f"Admin {u.username!r} logs in without two-factor authentication",
                    (f"user {u.username}: role admin, totp off",),
                    f"`fsctl user totp enable {u.username}`",
                    {"user": u.username},
                )
            )
    for t in facts.tokens:
        left_days = (t.expires_at - now) / DAY
        if left_days > token_max_days:
            out.append(
                Finding(
                    f"platform.token_long_lived.{t.id}",
                    "platform",
                    "medium" if t.role == "admin" else "low",
                    f"API token {t.name!r} ({t.role}) is valid for {left_days:.0f} more days",
                    (f"token {t.id} {t.name!r} of {t.owner}: role {t.role}, expires in {left_days:.0f} days",),
                    f"`fsctl token revoke {t.id}` and create one that expires sooner: "
                    f"`fsctl token create --name {t.name} --role {t.role} --expires 90d`",
                    {"token_id": t.id, "days_left": round(left_days)},
                )
            )
    for r in facts.routes:
        if r.tls != "off" and not r.redirect_https:
            out.append(
                Finding(
                    f"platform.route_no_redirect.{r.id}",
                    "platform",
                    "medium",
                    f"Route {r.name} has TLS but still answers plain HTTP (no HTTPS redirect)",
                    (f"route {r.id} {r.name}: tls {r.tls}, redirect_https false",),
                    f"`fsctl route edit {r.id} --redirect-https` (and `--hsts 31536000` once HTTPS works)",
                    {"route_id": r.id},
                )
            )
        if r.static_dir:
            risk = static_root_risk(r.static_dir, str(facts.data_dir))
            if risk:
                out.append(
                    Finding(
                        f"platform.static_root.{r.id}",
                        "platform",
                        risk[0],
                        f"Route {r.name} serves files from {r.static_dir}: {risk[1]}",
                        (f"route {r.id} {r.name}: static_dir {r.static_dir}",),
                        f"`fsctl route rm {r.id}` and serve a directory holding only the site's files "
                        f"(e.g. /srv/www/{r.name.split('/')[0]})",
                        {"route_id": r.id, "static_dir": r.static_dir},
                    )
                )
    for c in facts.certs:
        left = (c.not_after - now) / DAY
        name = c.names[0] if c.names else "?"
        if left < cert_warn_days:
            sev: Severity = "critical" if left <= 0 else ("high" if left < 7 else "medium")
            state = "expired" if left <= 0 else f"expires in {left:.1f} days"
            out.append(
                Finding(
                    f"platform.cert_expiring.{name}",
                    "platform",
                    sev,
                    f"Certificate for {name} {state}",
                    (f"{c.cert_path or name}: not after {c.not_after:.0f} (source {c.source})",),
                    f"`fsctl cert renew {name}` (imported certificates: `fsctl cert import` a new pair)",
                    {"name": name, "days_left": round(left, 1)},
                )
            )
    if not is_loopback(facts.console_host):
        out.append(
            Finding(
                "platform.console_exposed",
                "platform",
                "high",
                f"The console API listens on {facts.console_host}:{facts.console_port}, beyond loopback",
                (f"console = {facts.console_host}:{facts.console_port}",),
                f"`--console 127.0.0.1:{facts.console_port}` and reach it through a gate route with TLS",
                {"host": facts.console_host},
            )
        )
    pids = {i.pid: i for i in facts.instances if i.pid}
    for s in listeners:
        inst = pids.get(s.pid) if s.pid else None
        if inst is None or is_loopback(s.address):
            continue
        out.append(
            Finding(
                f"platform.service_exposed.{inst.service}.{s.proto}.{s.port}",
                "platform",
                "high",
                f"Service {inst.service} listens on {s.address}:{s.port}, around the gate",
                (f"{inst.instance} pid {s.pid}: {s.proto} {s.address}:{s.port}",),
                f"make {inst.service} bind 127.0.0.1 (use ${{PORT}} with host 127.0.0.1 in its spec) and route to it: "
                f"`fsctl route add --host NAME --upstream service:{inst.service}`",
                {"service": inst.service, "pid": s.pid, "port": s.port},
            )
        )
    return out


def check_initial_password(path: str, exists: bool) -> list[Finding]:
    if not exists:
        return []
    return [
        Finding(
            "platform.initial_password_file",
            "platform",
            "low",
            "The first-start admin password is still on disk",
            (f"{path} exists",),
            f"`fsctl user passwd admin` then `rm {path}`",
            {"path": path},
        )
    ]
