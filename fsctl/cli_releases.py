"""CLI of releases: `fsctl service releases NAME`, `fsctl service diff NAME [N] [M]`,
`fsctl service rollback NAME [--to N] [--wait]` (`fsctl deploy` itself is in `fsctl.cli_deploy`)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from fsctl.client import Client, resolve
from fsctl.output import emit_json, table, when

_DONE = ("succeeded", "failed", "rolled_back")


def _client(args: argparse.Namespace) -> Client:
    return Client(resolve(args.server, args.token), timeout=120)


def cmd_releases(args: argparse.Namespace) -> int:
    data = _client(args).request("GET", f"/api/services/{args.name}/releases")
    if args.json:
        emit_json(data)
        return 0
    rows = [
        {
            **r,
            "cur": "*" if r["current"] else "",
            "at": when(r["created_at"]),
            "by": r["created_by"] or "-",
            "changes": r["changes"] or "-",
        }
        for r in data
    ]
    table(
        rows,
        [
            ("cur", ""),
            ("release", "RELEASE"),
            ("version", "VERSION"),
            ("at", "CREATED"),
            ("by", "BY"),
            ("changes", "CHANGES"),
        ],
    )
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    q = "&".join(f"{k}={v}" for k, v in (("from", args.n), ("to", args.m)) if v is not None)
    data = _client(args).request("GET", f"/api/services/{args.name}/diff" + (f"?{q}" if q else ""))
    if args.json:
        emit_json(data)
        return 0
    print(f"{data['service']}: release {data['from'] if data['from'] is not None else '(none)'} -> {data['to']}")
    if not data["changes"]:
        print("  no differences")
    for c in data["changes"]:
        if c.get("diff"):
            print(f"  {c['field']}:")
            for line in c["diff"].splitlines():
                print(f"    {line}")
        else:
            print(f"  {c['field']}: {c['from']!r} -> {c['to']!r}")
    return 0


def follow(args: argparse.Namespace, dep_id: int, timeout_s: float) -> int:
    client = _client(args)
    deadline = time.monotonic() + timeout_s
    shown = 0
    while True:
        d = client.request("GET", f"/api/deployments/{dep_id}")
        for step in d["log"][shown:]:
            print(f"  {step['step']:<10} {step['outcome']:<7} {step['detail']}")
        shown = len(d["log"])
        if d["status"] in _DONE:
            print(f"deployment {dep_id}: {d['status']}" + (f" ({d['error']})" if d.get("error") else ""))
            return 0 if d["status"] == "succeeded" else 1
        if time.monotonic() > deadline:
            print(f"deployment {dep_id} still {d['status']} after {timeout_s:g}s", file=sys.stderr)
            return 1
        time.sleep(0.5)


def cmd_rollback(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"to": args.to} if args.to is not None else {}
    data = _client(args).request("POST", f"/api/services/{args.name}/rollback", body)
    if args.json:
        emit_json(data)
        return 0
    print(f"rolling {args.name} back to release {data['release_id']} (deployment {data['deployment_id']})")
    return follow(args, data["deployment_id"], args.wait) if args.wait else 0


def add_service_commands(svc_sub: Any, common: argparse.ArgumentParser) -> None:
    p = svc_sub.add_parser("releases", parents=[common], help="a service's releases (* is the serving one)")
    p.add_argument("name")
    p.set_defaults(func=cmd_releases)
    p = svc_sub.add_parser(
        "diff",
        parents=[common],
        help="what changed between releases N and M (default: the serving one and the one before)",
    )
    p.add_argument("name")
    p.add_argument("n", nargs="?", type=int)
    p.add_argument("m", nargs="?", type=int)
    p.set_defaults(func=cmd_diff)
    p = svc_sub.add_parser("rollback", parents=[common], help="re-apply an earlier release (rolling)")
    p.add_argument("name")
    p.add_argument("--to", type=int, metavar="N", help="the release (default: the one before the serving one)")
    p.add_argument(
        "--wait",
        type=float,
        nargs="?",
        const=300.0,
        default=None,
        metavar="SECONDS",
        help="follow the deployment until it ends (default 300 s)",
    )
    p.set_defaults(func=cmd_rollback)
