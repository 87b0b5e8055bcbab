"""`fsctl doctor`'s rules: what each gathered fact about the host means, as findings with a fix. Pure —
the facts are gathered by `fsctl.cli_doctor` — so every verdict is tested on plain values."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "warn", "fail", "skip"]
_RANK = {"fail": 0, "warn": 1, "skip": 2, "ok": 3}
LOW_DISK_BYTES = 2 * 1024**3
CLOCK_SKEW_S = 30.0


@dataclass(frozen=True)
class Finding:
    check: str  # stable id, e.g. "port.http"
    status: Status
    message: str
    fix: str = ""


def ordered(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: _RANK[f.status])


@dataclass(frozen=True)
class PortFact:
    name: str  # "http" | "https"
    port: int
    server_running: bool
    listening: bool  # something answers a connect on 127.0.0.1:port
    bind_error: str | None = None  # when the server is not running: why binding failed (None = bindable)
    holder: str | None = None  # the process holding it, when known


def check_port(f: PortFact) -> Finding:
    cid = f"port.{f.name}"
    if f.server_running:
        if f.listening:
            return Finding(cid, "ok", f"{f.name.upper()} port {f.port} is served by the running platform")
        return Finding(
            cid,
            "fail",
            f"the platform runs but nothing answers on port {f.port}",
            "look at `fsctl serve`'s log for a listener error",
        )
    if f.bind_error is None:
        return Finding(cid, "ok", f"{f.name.upper()} port {f.port} can be bound")
    if "ermission" in f.bind_error:
        return Finding(
            cid,
            "fail",
            f"port {f.port} cannot be bound: {f.bind_error}",
            "run as root, give the binary CAP_NET_BIND_SERVICE (`fsctl install-service` does), "
            "or choose a port above 1023",
        )
    holder = f" by {f.holder}" if f.holder else ""
    return Finding(
        cid,
        "fail",
        f"port {f.port} is taken{holder}: {f.bind_error}",
        "stop the other server (or move it behind a gate route), or choose another port",
    )


def is_public_name(host: str) -> bool:
    """Whether a route's host is a DNS name a CA could validate (not an IP, wildcard or local-only name)."""
    h = host.rstrip(".").lower()
    if not h or "*" in h or "." not in h:
        return False
    try:
        ipaddress.ip_address(h.strip("[]"))
        return False
    except ValueError:
        pass
    return not h.endswith((".localhost", ".local", ".test", ".internal", ".invalid", ".example", ".lan"))


def check_dns(host: str, tls: str, resolved: list[str] | None, error: str | None, local_addresses: set[str]) -> Finding:
    cid = f"dns.{host}"
    acme = tls == "auto"
    if resolved is None:
        return Finding(
            cid,
            "fail" if acme else "warn",
            f"{host} does not resolve ({error or 'no address'})",
            f"create an A/AAAA record for {host} pointing at this host"
            + ("; until then its certificate cannot be issued" if acme else ""),
        )
    mine = sorted(a for a in resolved if a in local_addresses)
    if mine:
        return Finding(cid, "ok", f"{host} resolves to this host ({', '.join(mine)})")
    return Finding(
        cid,
        "warn",
        f"{host} resolves to {', '.join(resolved)}, none of this host's addresses",
        "point its A/AAAA record here; behind NAT, make sure that address forwards ports 80/443 to "
        "this host (not checkable from inside)",
    )


def check_acme(url: str, status: int | None, error: str | None) -> Finding:
    if status == 200:
        return Finding("acme.directory", "ok", f"the ACME directory {url} answers")
    what = f"HTTP {status}" if status is not None else (error or "no answer")
    return Finding(
        "acme.directory",
        "fail",
        f"the ACME directory {url} is not reachable: {what}",
        "check outbound HTTPS (firewall, proxy, DNS) or the --acme-directory / --acme-ca-bundle setting",
    )


def check_clock(ntp_synced: bool | None, skew_s: float | None) -> Finding:
    if skew_s is not None and abs(skew_s) > CLOCK_SKEW_S:
        return Finding(
            "clock",
            "fail",
            f"the clock is {skew_s:+.0f} s off the ACME server's",
            "enable time sync (`timedatectl set-ntp true`, chrony or systemd-timesyncd); TLS, TOTP "
            "and certificate renewal all depend on the time",
        )
    if ntp_synced is False:
        return Finding(
            "clock",
            "warn",
            "the system clock is not synchronized (NTP)",
            "enable time sync: `timedatectl set-ntp true`",
        )
    if ntp_synced is None and skew_s is None:
        return Finding("clock", "skip", "clock sync could not be determined (no timedatectl, no ACME answer)")
    detail = f" (skew {skew_s:+.1f} s against the ACME server)" if skew_s is not None else ""
    return Finding("clock", "ok", f"the clock is synchronized{detail}")


def check_disk(what: str, path: str, free: int, total: int) -> Finding:
    cid = f"disk.{what}"
    pct = 100.0 * free / total if total else 0.0
    msg = f"{path}: {free / 1024**3:.1f} GiB free ({pct:.0f} %)"
    if free < LOW_DISK_BYTES / 4 or pct < 2:
        return Finding(cid, "fail", msg, "free space there, or move it to a larger disk")
    if free < LOW_DISK_BYTES or pct < 10:
        return Finding(cid, "warn", msg, "free space soon: logs, metrics and backups grow")
    return Finding(cid, "ok", msg)


def check_data_dir_mode(path: str, mode: int, owner_ok: bool, loose_keys: list[str]) -> Finding:
    """Keys readable by others or a data dir owned by someone else fail; a data dir others may list (its
    files are still private: the platform writes them with umask 077) is a warning."""
    problems = []
    if not owner_ok:
        problems.append("it is not owned by the user running the platform")
    if loose_keys:
        problems.append(f"keys readable by others: {', '.join(loose_keys[:5])}")
    if mode & 0o077:
        problems.append(f"the directory is {oct(mode & 0o777)} (others can list it)")
    if not problems:
        return Finding("datadir.permissions", "ok", f"{path} is private to its owner")
    return Finding(
        "datadir.permissions",
        "fail" if loose_keys or not owner_ok else "warn",
        f"{path}: " + "; ".join(problems),
        f"chmod 700 {path}; chmod 600 the keys (find {path} -name '*.key'); chown it to the platform's user",
    )


def check_console(host: str, port: int) -> Finding:
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if loopback:
        return Finding("console.exposure", "ok", f"the console listens on {host}:{port} (this host only)")
    return Finding(
        "console.exposure",
        "warn",
        f"the console listens on {host}:{port} in plain HTTP",
        f"bind it to 127.0.0.1 and publish it through a TLS route: `fsctl route add --host "
        f"console.example.com --upstream 127.0.0.1:{port} --tls auto`",
    )


def check_docker(available: bool, detail: str) -> Finding:
    if available:
        return Finding("runtime.docker", "ok", f"Docker answers ({detail})")
    return Finding(
        "runtime.docker",
        "warn",
        f"Docker is not available: {detail}",
        "install Docker (docker.io) to run image services; process services work without it",
    )


def check_systemd(available: bool) -> Finding:
    if available:
        return Finding("runtime.systemd", "ok", "systemd is PID 1: `runtime: systemd` services work")
    return Finding(
        "runtime.systemd",
        "warn",
        "systemd is not running as PID 1 here",
        "`runtime: systemd` services need it (or orch's systemd settings pointing at one elsewhere)",
    )


def check_cgroups(kind: str, enforces_memory: bool, enforces_cpu: bool, warning: str) -> Finding:
    """What orch's limit driver (`orch.cgroups.detect`) can enforce on this host."""
    if kind in ("v1", "v2") and enforces_memory and enforces_cpu:
        return Finding("cgroups", "ok", f"cgroup {kind}: service memory and CPU limits are enforced")
    fix = (
        "run the platform as root with a writable cgroup hierarchy (systemd: Delegate=yes in its unit)"
        if kind == "rlimit"
        else "enable the missing controller"
    )
    return Finding("cgroups", "warn", f"cgroup {kind}: {warning or 'not every limit is enforced'}", fix)
