"""Points in time as people pass them to queries (`since=10m`, `from=-1h`, `to=now`, ISO 8601, epoch
seconds), one parser for every API that takes a time. Pure."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from core.units import parse_duration

FORMS = "'now', a duration ago like 10m, 1h30m or -2h, epoch seconds, or ISO 8601 like 2026-11-23T08:00:00Z"


def parse_time(text: str, now: float, *, what: str = "time") -> float:
    """Epoch seconds from `text`:

    - `now`;
    - a duration back from now: `10m`, `1h30m`, `-2h` (the sign is optional), `90` or `-90` (a number
      below 10⁸ is seconds ago: no one queries 1973);
    - epoch seconds (`1700000000`, or milliseconds above 10¹¹);
    - ISO 8601 (`2026-11-23T08:00:00Z`; without a zone it is UTC).

    ValueError naming `what`, the text and the accepted forms otherwise.
    """
    value = _parse(text, now, what)
    if not math.isfinite(value):
        raise ValueError(f"{what} {_shown(text)} is out of range: use {FORMS}")
    return value


def _shown(text: str) -> str:
    return repr(text if len(text) <= 64 else text[:64] + "…")


def _parse(text: str, now: float, what: str) -> float:
    s = text.strip()
    if s == "now":
        return now
    try:
        value = float(s)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            raise ValueError(f"{what} {_shown(text)} is not a time: use {FORMS}")
        if value < 0:
            return now + value
        if value < 10**8:
            return now - value
        return value / 1000.0 if value > 10**11 else value
    try:
        return now - parse_duration(s[1:] if s.startswith("-") else s)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00") if s.endswith(("Z", "z")) else s)
    except ValueError:
        raise ValueError(f"{what} {_shown(text)} is not a time: use {FORMS}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()
