"""Durations (`5s`, `1m30s`, `2h`, `90d`) and sizes (`256Mi`, `1G`, `512k`) as people write them."""

from __future__ import annotations

import re

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]i?|[bB])?[bB]?\s*$")
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "m": 1000**2,
    "g": 1000**3,
    "t": 1000**4,
    "ki": 1024,
    "mi": 1024**2,
    "gi": 1024**3,
    "ti": 1024**4,
}


def parse_duration(text: str | float | int) -> float:
    """Seconds in `text`: a number of seconds, or a sequence like `1h30m`, `5s`, `250ms`, `7d`.

    Raises ValueError with a message a person can act on.
    """
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError(f"{text!r} is negative; a duration must be 0 or more")
        return float(text)
    s = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return float(s)
    pos, total = 0, 0.0
    for m in _DURATION.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(f"{text!r} is not a duration like 5s, 1m30s, 2h or 7d")
    return total


def parse_size(text: str | int) -> int:
    """Bytes in `text`: a number, or with a unit (`512k`, `256Mi`, `1G`, `2GiB`; k/M/G = 1000ⁿ, Ki/Mi/Gi = 1024ⁿ)."""
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"{text!r} is negative; a size must be 0 or more")
        return text
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a size like 512k, 256Mi or 1G")
    unit = (m.group(2) or "").lower()
    return int(float(m.group(1)) * _SIZE_UNITS[unit])


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= n:
            return f"{seconds // n}{unit}{_rest(seconds % n)}"
    return f"{seconds}s"


def _rest(seconds: int) -> str:
    return "" if seconds == 0 else format_duration(seconds) if seconds < 3600 else ""
