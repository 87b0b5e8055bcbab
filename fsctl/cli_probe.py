"""CLI commands of probe: `fsctl metrics [NAME]` with terminal sparklines, `fsctl alert add|ls|rm`."""

from __future__ import annotations

import argparse
import math
import shutil
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlencode

from core.units import parse_duration
from fsctl.client import Client, CliError, resolve
from fsctl.output import emit_json, table, when

BARS = "▁▂▃▄▅▆▇█"
# What `fsctl metrics` without a name shows: (metric, labels).
OVERVIEW: tuple[tuple[str, str], ...] = (
    ("host_cpu_percent", "cpu=total"),
    ("host_load1", ""),
    ("host_memory_used_bytes", ""),
    ("host_swap_used_bytes", ""),
    ("host_fs_used_percent", "mount=/"),
    ("host_net_rx_bytes_per_second", ""),
    ("host_net_tx_bytes_per_second", ""),
)


def sparkline(values: Sequence[float | None], width: int) -> str:
    """Values as a line of `width` block characters (averaged into that many slots; gaps are spaces),
    scaled from the smallest to the largest value."""
    if width <= 0 or not values:
        return ""
    slots: list[float | None] = []
    n = len(values)
    for i in range(min(width, n)):
        chunk = [v for v in values[i * n // min(width, n) : (i + 1) * n // min(width, n)] if v is not None]
        slots.append(sum(chunk) / len(chunk) if chunk else None)
    real = [v for v in slots if v is not None and math.isfinite(v)]
    if not real:
        return " " * len(slots)
    lo, hi = min(real), max(real)
    out = []
    for v in slots:
        if v is None or not math.isfinite(v):
            out.append(" ")
        elif hi == lo:
            out.append(BARS[0] if hi == 0 else BARS[len(BARS) // 2])
        else:
            out.append(BARS[min(len(BARS) - 1, int((v - lo) / (hi - lo) * len(BARS)))])
    return "".join(out)


def human(value: float | None, name: str) -> str:
    """A value for people: bytes in KiB/MiB/GiB, percentages with %, others with 3 significant digits."""
    if value is None:
        return "-"
    if "bytes" in name:
        v = float(value)
        for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
            if abs(v) < 1024 or unit == "TiB":
                suffix = "/s" if name.endswith("_per_second") else ""
                return f"{v:.1f} {unit}{suffix}" if unit != "B" else f"{v:.0f} B{suffix}"
            v /= 1024
    if name.endswith("_percent"):
        return f"{value:.1f}%"
    return f"{value:.3g}"


def _client(args: argparse.Namespace) -> Client:
    return Client(resolve(args.server, args.token))


def _duration(text: str, what: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise CliError(f"{what}: {e}") from e


def _query(client: Client, name: str, labels: str, since_s: float, step: str | None) -> dict[str, Any]:
    params = {"name": name, "from": f"{int(since_s)}s"}
    if labels:
        params["labels"] = labels
    if step:
        params["step"] = step
    return client.request("GET", "/api/metrics/query?" + urlencode(params))


def cmd_metrics(args: argparse.Namespace) -> int:
    client = _client(args)
    since = _duration(args.since, "--since")
    width = max(10, min(60, shutil.get_terminal_size((100, 20)).columns - 60))
    wanted = [(args.name, args.labels or "")] if args.name else list(OVERVIEW)
    results = [_query(client, name, labels, since, args.step) for name, labels in wanted]
    if args.json:
        emit_json(results if not args.name else results[0])
        return 0
    rows = []
    for q in results:
        for s in q["series"]:
            avgs = [p[1] for p in s["points"]]
            labels = ",".join(f"{k}={v}" for k, v in sorted(s["labels"].items()))
            rows.append(
                {
                    "metric": q["name"] + (f"{{{labels}}}" if labels else ""),
                    "spark": sparkline(avgs, width),
                    "last": human(avgs[-1] if avgs else None, q["name"]),
                    "min": human(min((p[2] for p in s["points"]), default=None), q["name"]),
                    "max": human(max((p[3] for p in s["points"]), default=None), q["name"]),
                }
            )
    if args.name and not rows:
        raise CliError(
            f"no data for {args.name} in the last {args.since}",
            hint="list the stored metric names with `fsctl metrics --names`",
        )
    step = results[0]["step"] if results else "-"
    res = results[0]["resolution"] if results else "-"
    print(f"last {args.since}, one point per {step} s ({res} resolution)")
    table(rows, [("metric", "METRIC"), ("spark", "TREND"), ("last", "LAST"), ("min", "MIN"), ("max", "MAX")])
    return 0


def cmd_metric_names(args: argparse.Namespace) -> int:
    names = _client(args).request("GET", "/api/metrics/names")
    emit_json(names) if args.json else print("\n".join(names))
    return 0


def cmd_top(args: argparse.Namespace) -> int:
    params = {
        "name": args.name or "cpu",
        "by": args.by,
        "n": str(args.top),
        "from": f"{int(_duration(args.since, '--since'))}s",
    }
    data = _client(args).request("GET", "/api/metrics/top?" + urlencode(params))
    if args.json:
        emit_json(data)
        return 0
    rows = [{"key": r[args.by], "value": human(r["value"], data["name"]), "series": r["series"]} for r in data["top"]]
    table(rows, [("key", args.by.upper()), ("value", data["name"].upper()), ("series", "SERIES")])
    return 0


def _parse_labels(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        for part in item.split(","):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise CliError(f"--labels {part!r} is not key=value", hint="e.g. --labels service=web")
            out[key.strip()] = value.strip()
    return out


def cmd_alert_add(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "name": args.name,
        "metric": args.metric,
        "labels": _parse_labels(args.labels),
        "op": args.op,
        "threshold": args.threshold,
        "for": args.for_,
        "hysteresis": args.hysteresis,
    }
    if args.webhook:
        body["webhook"] = args.webhook
    data = _client(args).request("POST", "/api/alerts/rules", body)
    if args.json:
        emit_json(data)
    else:
        print(f"added alert rule {data['id']} ({data['name']}): {_describe(data)}")
    return 0


def _describe(r: dict[str, Any]) -> str:
    labels = ",".join(f"{k}={v}" for k, v in sorted(r["labels"].items()))
    text = (
        f"{r['metric']}{{{labels}}} {r['op']} {r['threshold']:g}"
        if labels
        else f"{r['metric']} {r['op']} {r['threshold']:g}"
    )
    if r["for_s"]:
        text += f" for {r['for_s']:g}s"
    return text


def cmd_alert_ls(args: argparse.Namespace) -> int:
    client = _client(args)
    rules = client.request("GET", "/api/alerts/rules")
    alerts = client.request("GET", "/api/alerts")
    if args.json:
        emit_json({"rules": rules, **alerts})
        return 0
    rows = [
        {**r, "when": _describe(r), "hyst": f"{r['hysteresis']:g}", "on": "yes" if r["enabled"] else "no"}
        for r in rules
    ]
    table(
        rows,
        [
            ("id", "ID"),
            ("name", "NAME"),
            ("when", "CONDITION"),
            ("hyst", "HYSTERESIS"),
            ("on", "ENABLED"),
            ("webhook", "WEBHOOK"),
        ],
    )
    if alerts["active"]:
        print()
        act = [
            {
                **a,
                "labels": ",".join(f"{k}={v}" for k, v in sorted(a["labels"].items())),
                "since": when(a["since"]),
                "value": f"{a['value']:g}" if a["value"] is not None else "-",
            }
            for a in alerts["active"]
        ]
        table(
            act, [("rule", "ALERT"), ("status", "STATUS"), ("labels", "SERIES"), ("value", "VALUE"), ("since", "SINCE")]
        )
    return 0


def cmd_alert_rm(args: argparse.Namespace) -> int:
    data = _client(args).request("DELETE", f"/api/alerts/rules/{quote(args.ref, safe='')}")
    emit_json(data) if args.json else print(f"removed alert rule {data['id']} ({data['name']})")
    return 0


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("metrics", parents=[common], help="metrics with sparklines (host overview without NAME)")
    p.add_argument("name", nargs="?", metavar="NAME", help="metric, e.g. host_cpu_percent or cpu (a service's)")
    p.add_argument("--since", default="1h", help="how far back, like 15m, 1h, 7d (default 1h)")
    p.add_argument("--labels", help="series filter like service=web,instance=web-1")
    p.add_argument("--step", help="seconds between points (default: about 300 points)")
    p.add_argument("--names", action="store_true", help="list the stored metric names instead")
    p.add_argument("--top", type=int, metavar="N", help="rank by a label instead: the N largest (NAME defaults to cpu)")
    p.add_argument("--by", default="service", help="the label --top ranks by (default service)")
    p.set_defaults(func=_metrics_dispatch)
    _alert_commands(sub, common)


def _metrics_dispatch(args: argparse.Namespace) -> int:
    if args.names:
        return cmd_metric_names(args)
    if args.top:
        return cmd_top(args)
    return cmd_metrics(args)


def _alert_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    alert = sub.add_parser("alert", help="alert rules").add_subparsers(dest="sub", required=True, metavar="COMMAND")
    p = alert.add_parser("add", parents=[common], help="add an alert rule")
    p.add_argument("--name", required=True)
    p.add_argument("--metric", required=True, help="e.g. host_cpu_percent")
    p.add_argument("--labels", action="append", help="series filter like cpu=total (repeatable)")
    p.add_argument("--op", choices=[">", ">=", "<", "<="], default=">")
    p.add_argument("--threshold", type=float, required=True)
    p.add_argument("--for", dest="for_", default="0s", help="how long the condition must hold, like 5m (default 0s)")
    p.add_argument("--hysteresis", type=float, default=0.0, help="resolve only this far back past the threshold")
    p.add_argument("--webhook", help="http(s) URL to POST triggered/resolved events to")
    p.set_defaults(func=cmd_alert_add)
    p = alert.add_parser("ls", parents=[common], help="list alert rules and active alerts")
    p.set_defaults(func=cmd_alert_ls)
    p = alert.add_parser("rm", parents=[common], help="remove an alert rule")
    p.add_argument("ref", metavar="ID|NAME")
    p.set_defaults(func=cmd_alert_rm)
