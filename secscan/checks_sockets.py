"""Listening sockets reachable from outside: anything bound to a non-loopback address on a port other
than the expected ones (22, 80, 443, sshd's own and the gate's), with the process that holds it.

Pure: `Listener`s in, findings out. Command lines are shown with secret-looking values masked.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from secscan.findings import Finding, Severity

DEFAULT_ALLOWED = (22, 80, 443)
# Ports whose services are dangerous to expose (usually no or weak authentication by default).
RISKY: dict[int, tuple[Severity, str]] = {
    2375: ("critical", "Docker API without TLS (root on the host to anyone who connects)"),
    2376: ("high", "Docker API"),
    2379: ("high", "etcd"),
    3306: ("high", "MySQL/MariaDB"),
    5432: ("high", "PostgreSQL"),
    5984: ("high", "CouchDB"),
    6379: ("high", "Redis"),
    7070: ("high", "Infra-Core console API"),
    9200: ("high", "Elasticsearch"),
    10250: ("high", "kubelet"),
    11211: ("high", "memcached"),
    27017: ("high", "MongoDB"),
}


@dataclass(frozen=True)
class Listener:
    proto: str  # "tcp" | "udp"
    address: str
    port: int
    pid: int | None = None
    process: str | None = None
    cmdline: str | None = None


def is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address in ("localhost",)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


_SECRET_WORD = re.compile(r"pass|secret|token|key|auth|cred", re.I)


def redact_cmdline(args: Iterable[str], limit: int = 200) -> str:
    """The command line with values of secret-looking options masked (`--password=***`, `-p ***`)."""
    out: list[str] = []
    mask_next = False
    for arg in args:
        if mask_next:
            out.append("***")
            mask_next = False
            continue
        if "=" in arg and _SECRET_WORD.search(arg.split("=", 1)[0]):
            out.append(arg.split("=", 1)[0] + "=***")
        elif arg.startswith("-") and _SECRET_WORD.search(arg):
            out.append(arg)
            mask_next = True
        elif re.match(r"^[a-z][a-z0-9+.-]*://[^/@\s]+:[^/@\s]+@", arg, re.I):  # user:password@ in a URL
            out.append(re.sub(r"://([^/:@\s]+):[^/@\s]+@", r"://\1:***@", arg))
        else:
            out.append(arg)
    text = " ".join(out)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# UDP has no "listening" state: an unconnected client socket (a resolver's, DHCP's) looks like a server's.
# Skip the DHCP client ports and Linux's ephemeral range, where client sockets come and go between scans.
UDP_CLIENT_PORTS = frozenset({68, 546})
EPHEMERAL = range(32768, 61000)


def exposed(listeners: Iterable[Listener], allowed_ports: Iterable[int]) -> list[Listener]:
    allowed = set(allowed_ports)
    return [
        s
        for s in listeners
        if not is_loopback(s.address)
        and s.port not in allowed
        and not (s.proto == "udp" and (s.port in UDP_CLIENT_PORTS or s.port in EPHEMERAL))
    ]


def check_sockets(listeners: Iterable[Listener], allowed_ports: Iterable[int]) -> list[Finding]:
    groups: dict[tuple[str, int], list[Listener]] = {}
    for s in exposed(listeners, allowed_ports):
        groups.setdefault((s.proto, s.port), []).append(s)
    out = []
    for (proto, port), socks in sorted(groups.items()):
        risky = RISKY.get(port) if proto == "tcp" else None
        severity: Severity = risky[0] if risky else ("medium" if proto == "tcp" else "low")
        procs = sorted({s.process or "?" for s in socks})
        what = f" ({risky[1]})" if risky else ""
        evidence = tuple(
            f"{proto} {_addr(s.address)}:{s.port} pid {s.pid if s.pid is not None else '?'} "
            f"{s.process or '?'}: {s.cmdline or '(command line not readable)'}"
            for s in socks
        )
        pids = sorted({s.pid for s in socks if s.pid is not None})
        stop = f"`kill {pids[0]}`" if pids else "`ss -ltnup` shows who holds it"
        addrs = ", ".join(sorted({_addr(s.address) for s in socks}))
        out.append(
            Finding(
                f"sockets.{proto}.{port}",
                "sockets",
                severity,
                f"{'/'.join(procs)} listens on {proto}/{port}{what} on {addrs}",
                evidence,
                f"make it listen on 127.0.0.1 only (and reach it through a gate route or an SSH tunnel), or stop it "
                f"({stop} / `systemctl disable --now <unit>`); if it must be public, limit who can reach it: "
                f"`ufw allow from 203.0.113.0/24 to any port {port} proto {proto}`",
                {
                    "proto": proto,
                    "port": port,
                    "pids": pids,
                    "processes": procs,
                    "addresses": sorted({s.address for s in socks}),
                },
            )
        )
    return out


def _addr(address: str) -> str:
    return f"[{address}]" if ":" in address else address
