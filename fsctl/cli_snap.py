"""CLI commands of snap: `fsctl snap plan add|ls|rm`, `run` (with a progress bar), `ls`, `runs`,
`restore`, `scrub`, `forget`, `prune`."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any
from urllib.parse import quote

from fsctl.client import Client, CliError, resolve
from fsctl.output import emit_json, size, table, when


def _client(args: argparse.Namespace) -> Client:
    return Client(resolve(args.server, args.token))


def progress_line(job: dict[str, Any], width: int = 30) -> str:
    """One line for a running job: a bar when the size is known (from the previous snapshot), else counters."""
    p = job.get("progress") or {}
    done = int(p.get("bytes", 0))
    total = int(p.get("expected_bytes", 0))
    elapsed = max(time.time() - float(job.get("started_at") or time.time()), 0.001)
    counters = f"{p.get('files', 0)} files, {size(done)} ({size(p.get('new_bytes'))} new), {size(done / elapsed)}/s"
    if total > 0:
        frac = min(done / total, 1.0)
        filled = int(frac * width)
        return f"[{'#' * filled}{'.' * (width - filled)}] {frac * 100:5.1f}%  {counters}"
    return counters


def _wait(client: Client, job: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    tty = sys.stderr.isatty() and not args.json
    while job["state"] == "running":
        if tty:
            sys.stderr.write("\r" + progress_line(job)[:120].ljust(120))
            sys.stderr.flush()
        time.sleep(0.5)
        job = client.request("GET", f"/api/snap/jobs/{quote(job['id'])}")
    if tty:
        sys.stderr.write("\r" + " " * 120 + "\r")
    return job


def _finish(job: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    if job["state"] == "failed":
        err = job.get("error") or {}
        if args.json:
            emit_json(job)
        raise CliError(f"{job['kind']} failed: {err.get('message', '?')}", hint=(err.get("details") or {}).get("hint"))
    return job


def cmd_plan_add(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "name": args.name,
        "paths": args.paths,
        "excludes": args.exclude or [],
        "cron": args.cron,
        "keep_last": args.keep_last,
        "keep_daily": args.keep_daily,
        "keep_weekly": args.keep_weekly,
        "keep_monthly": args.keep_monthly,
        "pre_hook": args.pre_hook,
        "post_hook": args.post_hook,
        "rate_limit_mb_s": args.rate_limit,
        "service": args.service,
    }
    plan = _client(args).request("POST", "/api/snap/plans", body)
    if args.json:
        emit_json(plan)
    else:
        print(f"plan {plan['name']} added" + (f" (cron {plan['cron']})" if plan.get("cron") else " (run on demand)"))
    return 0


def cmd_plan_ls(args: argparse.Namespace) -> int:
    plans = _client(args).request("GET", "/api/snap/plans")
    if args.json:
        emit_json(plans)
        return 0
    rows = [
        {
            **p,
            "paths": ",".join(p["paths"]),
            "keep": f"{p['keep_last']}/{p['keep_daily']}/{p['keep_weekly']}/{p['keep_monthly']}",
            "next": when(p["next_runs"][0]) if p.get("next_runs") else "-",
            "last": when(p.get("last_run_at")),
        }
        for p in plans
    ]
    table(
        rows,
        [
            ("name", "NAME"),
            ("paths", "PATHS"),
            ("cron", "CRON"),
            ("next", "NEXT RUN"),
            ("last", "LAST RUN"),
            ("keep", "KEEP L/D/W/M"),
        ],
    )
    return 0


def cmd_plan_rm(args: argparse.Namespace) -> int:
    before = _client(args).request("DELETE", f"/api/snap/plans/{quote(args.name)}")
    if args.json:
        emit_json(before)
    else:
        print(f"plan {args.name} removed (its snapshots stay until forget/prune)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    client = _client(args)
    job = client.request("POST", f"/api/snap/plans/{quote(args.plan)}/run")
    if args.no_wait:
        emit_json(job) if args.json else print(f"started {job['id']}")
        return 0
    job = _finish(_wait(client, job, args), args)
    if args.json:
        emit_json(job)
        return 0
    snap = job["result"]["snapshot"]
    s = snap["stats"]
    print(
        f"snapshot {snap['id'][:12]}: {s['files']} files, {size(s['bytes'])}, {size(s['new_bytes'])} new, "
        f"{size(s['stored_bytes'])} stored, {s['duration_s']:.1f} s"
    )
    if s.get("error_count"):
        print(f"warning: {s['error_count']} path(s) could not be read:", file=sys.stderr)
        for e in s.get("errors", [])[:10]:
            print(f"  {e}", file=sys.stderr)
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    snaps = _client(args).request("GET", "/api/snap/snapshots")
    if args.json:
        emit_json(snaps)
        return 0
    rows = []
    for s in snaps:
        st = s.get("stats") or {}
        ratio = st.get("bytes", 0) / st["stored_bytes"] if st.get("stored_bytes") else None
        rows.append(
            {
                "id": s["id"][:12],
                "time": when(s["time"]),
                "plan": s["plan"] or "-",
                "files": st.get("files"),
                "size": size(st.get("bytes")),
                "new": size(st.get("new_bytes")),
                "dedup": f"{ratio:.1f}x" if ratio else "-",
            }
        )
    table(
        rows,
        [
            ("id", "ID"),
            ("time", "TIME"),
            ("plan", "PLAN"),
            ("files", "FILES"),
            ("size", "SIZE"),
            ("new", "NEW"),
            ("dedup", "SIZE/STORED"),
        ],
    )
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    runs = _client(args).request("GET", "/api/snap/runs")
    if args.json:
        emit_json(runs)
        return 0
    rows = [
        {
            **r,
            "started": when(r["started_at"]),
            "snapshot": (r["snapshot"] or "-")[:12],
            "error": (r["error"] or "")[:60],
        }
        for r in runs
    ]
    table(
        rows,
        [
            ("id", "RUN"),
            ("plan", "PLAN"),
            ("trigger", "TRIGGER"),
            ("started", "STARTED"),
            ("state", "STATE"),
            ("snapshot", "SNAPSHOT"),
            ("error", "ERROR"),
        ],
    )
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    client = _client(args)
    body = {"snapshot": args.id, "target": args.target, "path": args.path, "force": args.force, "shadow": args.shadow}
    job = _wait(client, client.request("POST", "/api/snap/restore", body), args)
    if args.json:
        emit_json(job)
    if job["state"] == "failed":
        err = job.get("error") or {}
        for d in ((err.get("details") or {}).get("damaged") or [])[:20]:
            print(f"damaged: /{d['path']}: {d['error']}", file=sys.stderr)
        _finish(job, args)
    r = job["result"]
    if not args.json:
        print(f"restored {r['files']} files ({size(r['bytes'])}) of {r['snapshot'][:12]} into {r['target']}")
    sh = r.get("shadow")
    if sh and not args.json:
        state = "healthy" if sh["healthy"] else f"NOT healthy ({sh['status']}: {sh.get('reason') or '-'})"
        print(f"shadow instance {sh['name']} of {sh['service']}: {state}, {sh.get('url') or 'no endpoint'}")
        print(f"stop it with: fsctl snap shadow rm {sh['name']}")
    return 0 if not sh or sh["healthy"] else 1


def cmd_scrub(args: argparse.Namespace) -> int:
    client = _client(args)
    job = _finish(_wait(client, client.request("POST", "/api/snap/scrub", {"all": args.all}), args), args)
    rep = job["result"]
    if args.json:
        emit_json(rep)
    else:
        print(
            f"checked {rep['packs_checked']} of {rep['packs_total']} packs, {rep['blobs_checked']} blobs, "
            f"{size(rep['bytes_checked'])}"
        )
        for d in rep["damaged_packs"]:
            print(f"damaged pack {d['pack'][:12]}: {d['error']}")
        for d in rep["damaged_blobs"][:50]:
            print(f"damaged blob {d['blob'][:12]}: {d['error']}")
        for m in rep["missing_blobs"][:50]:
            print(f"missing blob {m[:12]}")
        for a in rep["affected"]:
            print(
                f"snapshot {a['snapshot'][:12]} ({a['plan'] or '-'}, {when(a['time'])}) affected: "
                + ", ".join(a["paths"][:10])
                + (" ..." if len(a["paths"]) > 10 else "")
            )
        print("ok" if rep["ok"] else "DAMAGED")
    return 0 if rep["ok"] else 1


def cmd_forget(args: argparse.Namespace) -> int:
    client = _client(args)
    job = _finish(_wait(client, client.request("POST", "/api/snap/forget", {"dry_run": args.dry_run}), args), args)
    decisions = job["result"]
    if args.json:
        emit_json(decisions)
        return 0
    rows = [
        {
            **d,
            "snapshot": d["snapshot"][:12],
            "time": when(d["time"]),
            "action": ("keep" if d["keep"] else ("would remove" if args.dry_run else "removed")),
            "reasons": ",".join(d["reasons"]),
        }
        for d in decisions
    ]
    table(
        rows,
        [("snapshot", "SNAPSHOT"), ("plan", "PLAN"), ("time", "TIME"), ("action", "ACTION"), ("reasons", "KEPT BY")],
    )
    return 0


def cmd_shadow_ls(args: argparse.Namespace) -> int:
    shadows = _client(args).request("GET", "/api/snap/shadows")
    if args.json:
        emit_json(shadows)
        return 0
    table(
        [{**x, "snapshot": x["snapshot"][:12], "healthy": "yes" if x["healthy"] else "no"} for x in shadows],
        [
            ("name", "NAME"),
            ("service", "SERVICE"),
            ("snapshot", "SNAPSHOT"),
            ("healthy", "HEALTHY"),
            ("url", "URL"),
            ("target", "DATA"),
        ],
    )
    return 0


def cmd_shadow_rm(args: argparse.Namespace) -> int:
    before = _client(args).request("DELETE", f"/api/snap/shadows/{quote(args.name)}")
    emit_json(before) if args.json else print(f"shadow instance {args.name} stopped (its restored data stays)")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    client = _client(args)
    rep = _finish(_wait(client, client.request("POST", "/api/snap/prune"), args), args)["result"]
    if args.json:
        emit_json(rep)
    else:
        print(
            f"deleted {rep['packs_deleted']} packs, repacked {rep['packs_repacked']} into {rep['packs_written']}, "
            f"dropped {rep['blobs_dropped']} blobs, freed {size(rep['bytes_freed'])}"
        )
    return 0


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    snap = sub.add_parser("snap", help="backups: plans, snapshots, restore, scrub, retention")
    ss = snap.add_subparsers(dest="snap_command", required=True, metavar="SUBCOMMAND")

    plan = ss.add_parser("plan", help="backup plans")
    ps = plan.add_subparsers(dest="plan_command", required=True, metavar="SUBCOMMAND")
    p = ps.add_parser("add", parents=[common], help="add a plan")
    p.add_argument("--name", required=True)
    p.add_argument("--paths", nargs="+", required=True, metavar="PATH", help="absolute directories or files")
    p.add_argument("--exclude", action="append", metavar="GLOB", help="skip names or relative paths matching it")
    p.add_argument("--cron", help="schedule, e.g. '0 3 * * *' (default: on demand only)")
    p.add_argument("--keep-last", type=int, default=0)
    p.add_argument("--keep-daily", type=int, default=7)
    p.add_argument("--keep-weekly", type=int, default=4)
    p.add_argument("--keep-monthly", type=int, default=3)
    p.add_argument("--pre-hook", metavar="CMD", help="command run before (non-zero exit: no backup)")
    p.add_argument("--post-hook", metavar="CMD", help="command run after, whatever happened")
    p.add_argument("--rate-limit", type=float, metavar="MB_S", help="read at most this many MB/s")
    p.add_argument("--service", help="the service whose data this is (for --shadow restores)")
    p.set_defaults(func=cmd_plan_add)
    p = ps.add_parser("ls", parents=[common], help="list plans")
    p.set_defaults(func=cmd_plan_ls)
    p = ps.add_parser("rm", parents=[common], help="remove a plan")
    p.add_argument("name")
    p.set_defaults(func=cmd_plan_rm)

    p = ss.add_parser("run", parents=[common], help="run a plan now, with a progress bar")
    p.add_argument("plan")
    p.add_argument("--no-wait", action="store_true", help="return once started")
    p.set_defaults(func=cmd_run)
    p = ss.add_parser("ls", parents=[common], help="list snapshots")
    p.set_defaults(func=cmd_ls)
    p = ss.add_parser("runs", parents=[common], help="recent backup runs")
    p.set_defaults(func=cmd_runs)
    p = ss.add_parser("restore", parents=[common], help="restore a snapshot into a new directory")
    p.add_argument("--id", required=True, help="snapshot id (a unique prefix is enough)")
    p.add_argument("--target", help="directory (default /srv/restore/<plan>-<time>); must be new or empty")
    p.add_argument("--path", help="restore only this path of the snapshot")
    p.add_argument("--force", action="store_true", help="write into a non-empty target")
    p.add_argument("--shadow", action="store_true", help="then start a shadow instance of the plan's service")
    p.set_defaults(func=cmd_restore)
    shadow = ss.add_parser("shadow", help="shadow instances started by `restore --shadow`")
    shs = shadow.add_subparsers(dest="shadow_command", required=True, metavar="SUBCOMMAND")
    p = shs.add_parser("ls", parents=[common], help="list shadow instances")
    p.set_defaults(func=cmd_shadow_ls)
    p = shs.add_parser("rm", parents=[common], help="stop a shadow instance")
    p.add_argument("name")
    p.set_defaults(func=cmd_shadow_rm)
    p = ss.add_parser("scrub", parents=[common], help="verify the repository (exit 1 when damaged)")
    p.add_argument("--all", action="store_true", help="every pack (default: a 10%% sample)")
    p.set_defaults(func=cmd_scrub)
    p = ss.add_parser("forget", parents=[common], help="remove snapshots per each plan's retention")
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(func=cmd_forget)
    p = ss.add_parser("prune", parents=[common], help="delete data no snapshot references")
    p.set_defaults(func=cmd_prune)
