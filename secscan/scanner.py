"""One scan: gather the host's facts (or a prepared tree's), run every check, and return a report.

`scan_host` blocks (files, short commands, psutil): call it from a worker thread. `report` is pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.platform_facts import PlatformFacts
from secscan import gather
from secscan.checks_firewall import check_firewall
from secscan.checks_platform import FileMode, check_file_modes, check_initial_password, check_platform
from secscan.checks_sockets import DEFAULT_ALLOWED, Listener, check_sockets
from secscan.checks_sshd import check_sshd, sshd_ports
from secscan.findings import Finding, counts, failing, ordered


@dataclass
class HostScan:
    findings: list[Finding]
    listeners: list[Listener] | None  # None: sockets were not read
    sources: dict[str, str] = field(default_factory=dict)


def scan_host(
    root: Path, *, sockets: bool, allowed_ports: tuple[int, ...] = DEFAULT_ALLOWED, data_dir: Path | None = None
) -> HostScan:
    """The host part: sshd, firewall, (live) listening sockets, and the data dir's file modes if given."""
    findings: list[Finding] = []
    sources: dict[str, str] = {"root": str(root)}
    sshd = gather.sshd_facts(root)
    sources["sshd"] = "sshd -T + files" if sshd.sshd_t else "files"
    if sshd.version:
        sources["openssh"] = f"{sshd.version[0]}.{sshd.version[1]} ({sshd.version_source})"
    findings += check_sshd(sshd)
    fw = gather.firewall_facts(root)
    findings += check_firewall(fw)
    found: list[Listener] | None = None
    if sockets:
        found = gather.listeners()
        sources["sockets"] = "live (psutil)"
        findings += check_sockets(found, (*allowed_ports, *sshd_ports(sshd)))
    if data_dir is not None:
        findings += data_dir_findings(data_dir)
    findings += check_file_modes("", [], gather.token_files(root))
    return HostScan(findings, found, sources)


def data_dir_findings(data_dir: Path) -> list[Finding]:
    modes: list[FileMode] = gather.file_modes(data_dir)
    password = data_dir / "initial-admin-password"
    return check_file_modes(str(data_dir), modes) + check_initial_password(str(password), password.exists())


def platform_findings(
    facts: PlatformFacts, now: float, listeners: list[Listener] | None, *, cert_warn_days: float, token_max_days: float
) -> list[Finding]:
    return check_platform(
        facts, now, cert_warn_days=cert_warn_days, token_max_days=token_max_days, listeners=listeners or ()
    )


def report(
    findings: list[Finding], *, scanned_at: float, sources: dict[str, str], new_ids: set[str] | None = None
) -> dict[str, Any]:
    items = ordered(findings)
    return {
        "scanned_at": scanned_at,
        "failing": failing(items),
        "counts": counts(items),
        "sources": sources,
        "findings": [{**f.to_dict(), "new": f.id in new_ids if new_ids is not None else None} for f in items],
    }
