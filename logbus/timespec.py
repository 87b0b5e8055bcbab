"""Points in time as people pass them to queries: epoch seconds, ISO 8601, or a duration back from now."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from core.units import parse_duration

_NUMBER = re.compile(r"^\d+(\.\d+)?$")


def parse_time(text: str, now: float, *, what: str = "time") -> float:
    """`1700000000` (epoch seconds), `2026-11-23T08:00:00Z` (naive means UTC) or `10m` (ago) → epoch
    seconds. ValueError that names `what` and the accepted forms."""
    s = text.strip()
    if _NUMBER.match(s):
        return float(s)
    try:
        return now - parse_duration(s)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00") if s.endswith(("Z", "z")) else s)
    except ValueError:
        raise ValueError(
            f"{what} {text!r} is not a time: use epoch seconds, ISO 8601 like 2026-11-23T08:00:00Z, "
            "or a duration back from now like 10m or 2h"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()
