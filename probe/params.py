"""Query parameters as people write them: times (`now`, `-1h`, `1h` ago, epoch seconds, ISO 8601; see
`core.timespec`), label filters (`service=web,instance=web-1`) and steps (`60`, `1m`). Pure; errors
are BadRequests naming the parameter."""

from __future__ import annotations

import re

from core import timespec
from core.errors import BadRequest
from core.units import parse_duration

_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def parse_time(text: str | None, now: float, *, default: float, param: str) -> float:
    """Epoch seconds from `text` (the forms of `core.timespec`), `default` when absent."""
    if text is None or text == "":
        return default
    try:
        return timespec.parse_time(text, now, what=param)
    except ValueError:
        raise BadRequest(
            f"{param}={text!r} is not a time", hint=f"use {timespec.FORMS}", details={"field": param}
        ) from None


def parse_step(text: str | None, *, param: str = "step") -> int | None:
    if text is None or text == "":
        return None
    try:
        step = parse_duration(text)
    except ValueError:
        raise BadRequest(f"{param}={text!r} is not a step", hint="use seconds or a duration like 60, 5s, 1m") from None
    if step < 1:
        raise BadRequest(f"{param}={text!r} is below one second", hint="the finest resolution is 1s")
    return int(step)


def parse_labels(text: str | None, *, param: str = "labels") -> dict[str, str]:
    """`k=v,k2=v2` → {k: v, k2: v2}."""
    if not text:
        return {}
    out: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not _LABEL.match(key):
            raise BadRequest(
                f"{param}: {part!r} is not a label filter like service=web",
                hint="write labels as key=value pairs separated by commas",
            )
        out[key] = value.strip()
    return out
