"""CLI commands of orch: `fsctl service apply -f FILE | ls | status NAME | start | stop | restart | rm NAME`
(and `logs NAME` from logbus's module)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from fsctl.client import Client, CliError, resolve
from fsctl.output import emit_json, table, when


def _client(args: argparse.Namespace) -> Client:
    return Client(resolve(args.server, args.token), timeout=120)


def _problems_error(e: CliError) -> CliError:
    """A spec error with one line per problem (the server sends them in details.problems)."""
    problems = e.details.get("problems") if e.details else None
    if not problems:
        return e
    lines = []
    for p in problems:
        where = f"{p['file']}:{p['line']}" if p.get("line") else p["file"]
        lines.append(f"  {where} {p['field']}: {p['message']}" if p.get("field") else f"  {where}: {p['message']}")
    return CliError(
        "invalid service spec:\n" + "\n".join(lines),
        hint="fix the lines named and apply again",
        status=e.status,
        code=e.code,
    )


def cmd_apply(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        text = sys.stdin.read() if args.file == "-" else path.read_text()
    except OSError as e:
        raise CliError(f"cannot read {args.file}: {e.strerror}") from e
    base = Path.cwd() if args.file == "-" else path.resolve().parent
    text = text.replace("${SPEC_DIR}", str(base))  # same length per line: line numbers stay right
    filename = "stdin" if args.file == "-" else path.name
    try:
        data = _client(args).request("POST", "/api/services", {"yaml": text, "filename": filename})
    except CliError as e:
        raise _problems_error(e) from None
    if args.json:
        emit_json(data)
    elif data.get("changed"):
        print(
            f"applied {data['name']} (version {data['version']})"
            + (f", deployment {data['deployment_id']}" if data.get("deployment_id") else "")
        )
    else:
        print(f"{data['name']} unchanged (version {data['version']})")
    if args.wait and not args.json and data.get("deployment_id"):
        from fsctl.cli_releases import follow

        return follow(args, data["deployment_id"], args.wait)
    if args.wait and not args.json:
        return _wait_running(args, data["name"], args.wait)
    return 0


def _wait_running(args: argparse.Namespace, name: str, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    client = _client(args)
    last = ""
    while time.monotonic() < deadline:
        st = client.request("GET", f"/api/services/{name}/status")
        if st["status"] != last:
            print(f"  {st['status']}" + (f": {st['reason']}" if st["reason"] else ""))
            last = st["status"]
        if st["status"] == "running":
            return 0
        if st["status"] in ("failed", "crashloop", "exited"):
            return 1
        time.sleep(0.5)
    print(f"  still {last} after {timeout_s:g}s", file=sys.stderr)
    return 1


def _ports(d: dict[str, Any]) -> str:
    return ",".join(d.get("endpoints") or []) or "-"


def cmd_ls(args: argparse.Namespace) -> int:
    data = _client(args).request("GET", "/api/services")
    if args.json:
        emit_json(data)
        return 0
    rows = [
        {**s, "ready": f"{s['healthy']}/{s['replicas']}", "eps": _ports(s), "updated": when(s["updated_at"])}
        for s in data
    ]
    table(
        rows,
        [
            ("name", "NAME"),
            ("runtime", "RUNTIME"),
            ("status", "STATUS"),
            ("ready", "READY"),
            ("restarts", "RESTARTS"),
            ("version", "VERSION"),
            ("eps", "ENDPOINTS"),
            ("updated", "UPDATED"),
            ("reason", "REASON"),
        ],
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    d = _client(args).request("GET", f"/api/services/{args.name}")
    if args.json:
        emit_json(d)
        return 0
    print(
        f"{d['name']}  version {d['version']}  desired {d['desired']}  status {d['status']}"
        + (f" ({d['reason']})" if d["reason"] else "")
    )
    print(f"  ready {d['healthy']}/{d['replicas']}  restarts {d['restarts']}  endpoints {_ports(d)}")
    spec = d.get("spec") or {}
    print(
        f"  runtime {d.get('runtime', 'process')}"
        + (f"  image {spec['image']}" if spec.get("image") else "")
        + (f"  volumes {', '.join(spec['volumes'])}" if spec.get("volumes") else "")
    )
    if d.get("last_exit"):
        print(f"  last exit: {d['last_exit']['instance']} {d['last_exit']['detail']} at {when(d['last_exit']['at'])}")
    rows = []
    for i in d["instances"]:
        health = i["health"][-1]["detail"] if i["health"] else "-"
        inside = i.get("container_ports") or {}
        rows.append(
            {
                **i,
                "ports": ",".join(f"{k}={v}" + (f"->{inside[k]}" if k in inside else "") for k, v in i["ports"].items())
                or "-",
                "where": _where(i),
                "health": ("healthy" if i["healthy"] else "unhealthy") + f" ({health})",
                "since": when(i["started_at"]),
            }
        )
    table(
        rows,
        [
            ("id", "INSTANCE"),
            ("phase", "PHASE"),
            ("state", "STATE"),
            ("where", "PID/CONTAINER"),
            ("ports", "PORTS"),
            ("health", "HEALTH"),
            ("restarts", "RESTARTS"),
            ("since", "SINCE"),
            ("reason", "REASON"),
        ],
    )
    return 0


def _where(i: dict[str, Any]) -> str:
    """A native instance's pid, a container's name and short id, or a unit's name."""
    if i.get("container_id") and i.get("phase") in ("running", "stopping"):
        return f"{i.get('container', '')} {i['container_id'][:12]}".strip()
    if i.get("unit"):
        return str(i["unit"])
    return str(i["pid"]) if i.get("pid") else "-"


def _action(verb: str) -> Any:
    def run(args: argparse.Namespace) -> int:
        d = _client(args).request("POST", f"/api/services/{args.name}/{verb}")
        emit_json(d) if args.json else print(
            f"{args.name}: {d['status']}" + (f" ({d['reason']})" if d["reason"] else "")
        )
        return 0

    return run


def cmd_rm(args: argparse.Namespace) -> int:
    d = _client(args).request("DELETE", f"/api/services/{args.name}" + ("?volumes=1" if args.volumes else ""))
    emit_json(d) if args.json else print(f"removed {args.name}")
    return 0


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    svc = sub.add_parser("service", help="services: apply specs, list, status, start/stop/restart, remove")
    svc_sub = svc.add_subparsers(dest="sub", required=True, metavar="COMMAND")

    p = svc_sub.add_parser("apply", parents=[common], help="create or update a service from a YAML spec")
    p.add_argument("-f", "--file", required=True, help="the spec file (- for standard input)")
    p.add_argument(
        "--wait",
        type=float,
        nargs="?",
        const=60.0,
        default=None,
        metavar="SECONDS",
        help="wait until the service is running (default 60 s)",
    )
    p.set_defaults(func=cmd_apply)

    p = svc_sub.add_parser("ls", parents=[common], help="list services")
    p.set_defaults(func=cmd_ls)

    p = svc_sub.add_parser("status", parents=[common], help="a service's status, instances and health")
    p.add_argument("name")
    p.set_defaults(func=cmd_status)

    for verb, text in (
        ("start", "start a service"),
        ("stop", "stop a service (waits until stopped)"),
        ("restart", "restart every instance of a service"),
    ):
        p = svc_sub.add_parser(verb, parents=[common], help=text)
        p.add_argument("name")
        p.set_defaults(func=_action(verb))

    p = svc_sub.add_parser("rm", parents=[common], help="stop and remove a service (and its containers)")
    p.add_argument("name")
    p.add_argument("--volumes", action="store_true", help="also remove its named container volumes")
    p.set_defaults(func=cmd_rm)

    from fsctl import cli_releases

    cli_releases.add_service_commands(svc_sub, common)
    try:
        from fsctl import cli_logbus

        cli_logbus.add_service_logs_command(svc_sub, common)
    except ImportError:
        pass
