"""Prometheus text exposition format (version 0.0.4) of the latest readings. Pure.

Names and label names are made valid (`[a-zA-Z_:][a-zA-Z0-9_:]*`, other characters become `_`),
label values are escaped (backslash, double quote, newline), families are grouped under one
`# HELP`/`# TYPE` header, and non-finite values are written as Prometheus spells them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_BAD_NAME = re.compile(r"[^a-zA-Z0-9_:]")
_BAD_LABEL = re.compile(r"[^a-zA-Z0-9_]")


@dataclass(frozen=True)
class Reading:
    name: str
    labels: Mapping[str, str]
    value: float
    kind: str = "gauge"  # "gauge" | "counter"
    help: str = ""


def metric_name(name: str) -> str:
    out = _BAD_NAME.sub("_", name) or "_"
    return "_" + out if out[0].isdigit() else out


def label_name(name: str) -> str:
    out = _BAD_LABEL.sub("_", name) or "_"
    out = "_" + out if out[0].isdigit() else out
    return "label_" + out if out.startswith("__") else out


def escape_value(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_value(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


def render(readings: Iterable[Reading]) -> str:
    """The exposition text: one family per name (first reading's kind and help win), sorted by name."""
    families: dict[str, list[Reading]] = {}
    for r in readings:
        families.setdefault(metric_name(r.name), []).append(r)
    lines: list[str] = []
    for name in sorted(families):
        group = families[name]
        kind = "counter" if group[0].kind == "counter" else "gauge"
        help_text = (group[0].help or name.replace("_", " ")).replace("\\", "\\\\").replace("\n", "\\n")
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        seen: set[str] = set()
        for r in group:
            labels = ",".join(f'{label_name(k)}="{escape_value(str(v))}"' for k, v in sorted(r.labels.items()))
            series = f"{name}{{{labels}}}" if labels else name
            if series in seen:
                continue  # two source names that sanitise to one series: keep the first
            seen.add(series)
            lines.append(f"{series} {format_value(r.value)}")
    return "\n".join(lines) + "\n" if lines else ""
