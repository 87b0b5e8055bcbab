"""CLI for CI scripts and packagers: `fsctl deploy --service NAME --artifact FILE --version V [--wait]`
(upload, deploy, poll), `fsctl deploy status ID`, `fsctl artifact upload|ls`, and the admin's
`fsctl client add|list|remove`.

Credentials: `INFRACORE_CLIENT_ID` + `INFRACORE_CLIENT_SECRET` in the environment are exchanged for a
short-lived client token; without them the normal login (`--token`, `FSCTL_TOKEN`, `fsctl login`) is used.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlencode

from fsctl.cli_state import sha256_file
from fsctl.client import Client, CliError, Target, resolve
from fsctl.output import emit_json, table, when
from fsctl.output import size as size_text

TERMINAL = ("succeeded", "failed", "rolled_back")


def _client(args: argparse.Namespace, timeout: float = 120) -> Client:
    """A client with the CI credentials from the environment when set, else the normal login."""
    target = resolve(args.server, args.token)
    cid, secret = os.environ.get("INFRACORE_CLIENT_ID"), os.environ.get("INFRACORE_CLIENT_SECRET")
    if (cid or secret) and not args.token:
        if not (cid and secret):
            raise CliError("set both INFRACORE_CLIENT_ID and INFRACORE_CLIENT_SECRET (or neither)")
        got = Client(Target(target.server, None), timeout=timeout).request(
            "POST", "/api/auth/client-token", {"client_id": cid, "client_secret": secret}
        )
        target = Target(target.server, got["token"])
    return Client(target, timeout=timeout)


class _Progress:
    """A file reader that draws an upload bar on a terminal (CI logs get start and end lines only)."""

    def __init__(self, f: IO[bytes], total: int, show: bool) -> None:
        self.f, self.total, self.show, self.done = f, total, show, 0
        self.started = time.monotonic()

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.done += len(data)
        if self.show:
            frac = self.done / self.total if self.total else 1.0
            rate = self.done / max(time.monotonic() - self.started, 0.001)
            bar = "#" * int(frac * 30)
            sys.stderr.write(
                f"\r  [{bar:.<30}] {frac * 100:5.1f}%  {size_text(self.done)} of {size_text(self.total)}, "
                f"{size_text(rate)}/s"
            )
            sys.stderr.flush()
        return data


def upload(client: Client, path: Path, service: str | None, *, quiet: bool = False) -> dict[str, Any]:
    """Stream `path` to `POST /api/artifacts` with its SHA-256 (the server checks it); the artifact."""
    try:
        size = path.stat().st_size
        digest = sha256_file(path)
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror}") from e
    name = re.sub(r"[^A-Za-z0-9._+-]", "_", path.name).lstrip("._+-") or "artifact"
    query = {"filename": name[:128], **({"service": service} if service else {})}
    show = not quiet and sys.stderr.isatty()
    if not quiet:
        print(f"uploading {path.name} ({size_text(size)}, sha256 {digest[:12]})", file=sys.stderr)
    with open(path, "rb") as f:
        art = client.upload(
            f"/api/artifacts?{urlencode(query)}", _Progress(f, size, show), size, {"X-Content-SHA256": digest}
        )
    if show:
        sys.stderr.write("\n")
    if not quiet:
        note = " (already stored)" if art.get("deduplicated") else ""
        print(f"artifact {art['id'][:12]}: {art['kind']}, {size_text(art['size'])}{note}", file=sys.stderr)
    return art


def _step_lines(dep: dict[str, Any]) -> list[str]:
    """The deployment's log as lines (entries are dicts like {at, step|what, outcome|message} or text)."""
    out = []
    for entry in dep.get("log") or dep.get("steps") or []:
        if isinstance(entry, dict):
            what = entry.get("step") or entry.get("what") or entry.get("message") or ""
            outcome = entry.get("outcome") or entry.get("status") or ""
            detail = entry.get("detail") or entry.get("error") or ""
            out.append(" ".join(str(x) for x in (what, outcome, detail) if x))
        else:
            out.append(str(entry))
    return out


def wait_deployment(
    client: Client, dep_id: Any, timeout_s: float, *, quiet: bool = False, interval_s: float = 1.0
) -> dict[str, Any]:
    """Poll `GET /api/deployments/{id}` until it ends (or `timeout_s`), printing status changes and new
    log steps; the last record."""
    deadline = time.monotonic() + timeout_s
    status, seen = "", 0
    while True:
        dep = client.request("GET", f"/api/deployments/{quote(str(dep_id))}")
        if not quiet:
            if dep["status"] != status:
                print(f"  deployment {dep_id}: {dep['status']}", file=sys.stderr)
                status = dep["status"]
            lines = _step_lines(dep)
            for line in lines[seen:]:
                print(f"    {line}", file=sys.stderr)
            seen = len(lines)
        if dep["status"] in TERMINAL:
            return dep
        if time.monotonic() >= deadline:
            raise CliError(
                f"deployment {dep_id} is still {dep['status']} after {timeout_s:g} s",
                hint=f"follow it with `fsctl deploy status {dep_id}`",
            )
        time.sleep(interval_s)


def cmd_deploy(args: argparse.Namespace) -> int:
    if args.action == "status":
        if not args.deployment_id:
            raise CliError("usage: fsctl deploy status DEPLOYMENT_ID")
        client = _client(args)
        dep = (
            wait_deployment(client, args.deployment_id, args.timeout, quiet=args.json)
            if args.wait
            else client.request("GET", f"/api/deployments/{quote(args.deployment_id)}")
        )
        if args.json:
            emit_json(dep)
        else:
            print(f"deployment {args.deployment_id}: {dep['status']}")
            for line in _step_lines(dep):
                print(f"  {line}")
        return 0 if dep["status"] not in ("failed", "rolled_back") else 1
    missing = [f"--{n}" for n in ("service", "artifact", "version") if not getattr(args, n)]
    if missing:
        raise CliError(
            f"fsctl deploy needs {', '.join(missing)}",
            hint="fsctl deploy --service NAME --artifact FILE --version V [--wait]",
        )
    client = _client(args, timeout=max(120.0, args.timeout))
    art = upload(client, Path(args.artifact), args.service, quiet=args.json)
    started = client.request(
        "POST", f"/api/services/{quote(args.service)}/deploy", {"version": args.version, "artifact_id": art["id"]}
    )
    dep_id = started["deployment_id"]
    if not args.json:
        print(
            f"deploying {args.service} {args.version}: deployment {dep_id}, release {started.get('release_id')}",
            file=sys.stderr,
        )
    if not args.wait:
        if args.json:
            emit_json({"artifact": art, **started})
        else:
            print(dep_id)
        return 0
    dep = wait_deployment(client, dep_id, args.timeout, quiet=args.json)
    if args.json:
        emit_json({"artifact": art, **started, "deployment": dep})
    if dep["status"] == "succeeded":
        if not args.json:
            print(f"{args.service} {args.version} deployed (deployment {dep_id})")
        return 0
    err = dep.get("error") or dep.get("error_message") or ""
    print(f"fsctl: deployment {dep_id} {dep['status']}" + (f": {err}" if err else ""), file=sys.stderr)
    return 1


def cmd_artifact_upload(args: argparse.Namespace) -> int:
    art = upload(_client(args, timeout=600), Path(args.file), args.service, quiet=args.json)
    if args.json:
        emit_json(art)
    else:
        print(art["id"])
    return 0


def cmd_artifact_ls(args: argparse.Namespace) -> int:
    path = "/api/artifacts" + (f"?{urlencode({'service': args.service})}" if args.service else "")
    rows = _client(args).request("GET", path)
    if args.json:
        emit_json(rows)
        return 0
    table(
        [
            {
                **r,
                "id": r["id"][:12],
                "size": size_text(r["size"]),
                "services": ",".join(r["services"]) or "-",
                "created": when(r["created_at"]),
            }
            for r in rows
        ],
        [
            ("id", "ID"),
            ("kind", "KIND"),
            ("size", "SIZE"),
            ("filename", "FILE"),
            ("services", "SERVICES"),
            ("created", "CREATED"),
        ],
    )
    return 0


def cmd_client_add(args: argparse.Namespace) -> int:
    c = _client(args).request(
        "POST", "/api/clients", {"name": args.name, "services": args.service, "ip_allowlist": args.allow_ip}
    )
    if args.json:
        emit_json(c)
        return 0
    print(f"client {c['name']} created for {', '.join(c['services'])} from {', '.join(c['ip_allowlist'])}")
    print(f"  INFRACORE_CLIENT_ID={c['client_id']}")
    print(f"  INFRACORE_CLIENT_SECRET={c['client_secret']}")
    print("The secret is shown only now: store it in your CI's secret store.", file=sys.stderr)
    return 0


def cmd_client_list(args: argparse.Namespace) -> int:
    rows = _client(args).request("GET", "/api/clients")
    if args.json:
        emit_json(rows)
        return 0
    table(
        [
            {
                **r,
                "services": ",".join(r["services"]),
                "allow": ",".join(r["ip_allowlist"]),
                "last": when(r["last_used_at"]),
            }
            for r in rows
        ],
        [
            ("client_id", "CLIENT ID"),
            ("name", "NAME"),
            ("services", "SERVICES"),
            ("allow", "ALLOWED FROM"),
            ("state", "STATE"),
            ("last", "LAST USED"),
        ],
    )
    return 0


def cmd_client_remove(args: argparse.Namespace) -> int:
    c = _client(args).request("DELETE", f"/api/clients/{quote(args.client_id)}")
    if args.json:
        emit_json(c)
    else:
        print(f"client {c['name']} ({c['client_id']}) revoked; its tokens no longer work")
    return 0


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "deploy",
        parents=[common],
        help="upload an artifact, deploy it and follow the deployment (for CI); `deploy status ID`",
    )
    p.add_argument("action", nargs="?", choices=["status"], help="status: show (or --wait for) a deployment")
    p.add_argument("deployment_id", nargs="?", help="with status: the deployment's id")
    p.add_argument("--service", help="the service to deploy")
    p.add_argument("--artifact", metavar="FILE", help="a tar.gz (unpacked into the release dir) or a single file")
    p.add_argument("--version", help="the release's version (names its dir: ${installPath})")
    p.add_argument("--wait", action="store_true", help="follow the deployment; exit 1 unless it succeeds")
    p.add_argument("--timeout", type=float, default=1200.0, metavar="S", help="how long --wait waits (default 1200)")
    p.set_defaults(func=cmd_deploy)

    art = sub.add_parser("artifact", help="artifacts: upload, list")
    art_sub = art.add_subparsers(dest="artifact_command", required=True, metavar="COMMAND")
    q = art_sub.add_parser("upload", parents=[common], help="upload a file (streamed, sha256-checked); prints its id")
    q.add_argument("file")
    q.add_argument("--service", help="the service it is for (required with client credentials)")
    q.set_defaults(func=cmd_artifact_upload)
    q = art_sub.add_parser("ls", parents=[common], help="list artifacts")
    q.add_argument("--service")
    q.set_defaults(func=cmd_artifact_ls)

    cl = sub.add_parser("client", help="CI client credentials: add, list, remove")
    cl_sub = cl.add_subparsers(dest="client_command", required=True, metavar="COMMAND")
    q = cl_sub.add_parser("add", parents=[common], help="create a client; prints its id and secret (once)")
    q.add_argument("--name", required=True)
    q.add_argument("--service", action="append", required=True, help="a service it may deploy (repeatable)")
    q.add_argument(
        "--allow-ip",
        action="append",
        required=True,
        metavar="CIDR",
        help="an address or CIDR it may be used from (repeatable; 0.0.0.0/0 for any)",
    )
    q.set_defaults(func=cmd_client_add)
    q = cl_sub.add_parser("list", aliases=["ls"], parents=[common], help="list clients")
    q.set_defaults(func=cmd_client_list)
    q = cl_sub.add_parser("remove", aliases=["rm"], parents=[common], help="revoke a client and its tokens")
    q.add_argument("client_id")
    q.set_defaults(func=cmd_client_remove)
