"""CLI command of secscan: `fsctl security scan [--root DIR] [--json]`.

Without `--root` it asks the running server (`GET /api/security/scan`: host and platform); with `--root
DIR` it scans the tree under DIR right here, no server needed (host parts and the data dir's file modes;
`--root /` is this host, with `sshd -T`, `nft` and the live sockets). Exit code: 0 when no finding is
high or critical, 2 when one is, 1 when the scan could not run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from fsctl.client import Client, CliError, resolve
from fsctl.output import emit_json

SEVERITIES = ("critical", "high", "medium", "low", "info")
EXIT_FAILING = 2
SCAN_TIMEOUT_S = 120.0


def _local(args: argparse.Namespace) -> dict[str, Any]:
    from secscan.scanner import report, scan_host

    root: Path = args.root
    if not root.is_dir():
        raise CliError(
            f"--root {root} is not a directory", hint="give the directory that stands for / (e.g. a mounted image)"
        )
    sockets = args.sockets if args.sockets is not None else root.resolve() == Path("/")
    data_dir = args.data_dir
    if data_dir is None:
        default = root / "var/lib/infracore"
        data_dir = default if default.is_dir() else None
    ports = (*(args.allow_port or ()), 22, 80, 443)
    host = scan_host(root, sockets=sockets, allowed_ports=ports, data_dir=data_dir)
    return report(host.findings, scanned_at=time.time(), sources=host.sources)


def cmd_scan(args: argparse.Namespace) -> int:
    if args.root is not None:
        data = _local(args)
    else:
        if args.data_dir is not None or args.sockets is not None or args.allow_port:
            raise CliError(
                "--data-dir, --sockets and --allow-port go with --root (a local scan)",
                hint="the server scans with its own settings (the `security:` section)",
            )
        data = Client(resolve(args.server, args.token), timeout=SCAN_TIMEOUT_S).request("GET", "/api/security/scan")
    keep = SEVERITIES[: SEVERITIES.index(args.min_severity) + 1]
    shown = [f for f in data["findings"] if f["severity"] in keep]
    if args.json:
        emit_json({**data, "findings": shown})
    else:
        _print(data, shown)
    return EXIT_FAILING if data["failing"] else 0


def _print(data: dict[str, Any], findings: list[dict[str, Any]]) -> None:
    for f in findings:
        new = " (new)" if f.get("new") else ""
        print(f"{f['severity'].upper():<8} {f['title']}{new}   [{f['id']}]")
        for line in f["evidence"]:
            print(f"         evidence: {line}")
        print(f"         fix: {f['fix']}")
    counts = data["counts"]
    parts = [f"{counts[s]} {s}" for s in SEVERITIES if counts.get(s)]
    sources = ", ".join(f"{k}: {v}" for k, v in data["sources"].items())
    print(f"{sum(counts.values())} findings ({', '.join(parts) or 'none'}); {sources}")
    if data["failing"]:
        print("high or critical findings: exit code 2")


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("security", help="the host's and the platform's security baseline")
    ssub = p.add_subparsers(dest="security_command", required=True, metavar="COMMAND")
    s = ssub.add_parser(
        "scan",
        parents=[common],
        help="findings with evidence and fixes (exit 2 on high/critical)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument(
        "--root",
        type=Path,
        metavar="DIR",
        help="scan the tree under DIR locally, without the server (`/` for this host)",
    )
    s.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="with --root: the Infra-Core data dir whose file modes to check "
        "(default DIR/var/lib/infracore if present)",
    )
    s.add_argument(
        "--sockets",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with --root: read this host's live listening sockets (default: only when --root is /)",
    )
    s.add_argument(
        "--allow-port",
        type=int,
        action="append",
        metavar="N",
        help="with --root: a port expected to face outside besides 22/80/443 (repeatable)",
    )
    s.add_argument("--min-severity", choices=SEVERITIES, default="info", help="hide less severe findings")
    s.set_defaults(func=cmd_scan)
