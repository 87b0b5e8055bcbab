"""Cron arithmetic for plans (croniter): validation with a precise message, the next run times after
an instant, and whether a plan is due. Pure: `now` is passed in."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo

from croniter import croniter

from core.errors import ValidationFailed


def validate_cron(expr: str) -> str:
    """The expression, normalized (single spaces), or `ValidationFailed` saying what is wrong."""
    norm = " ".join(expr.split())
    if len(norm.split(" ")) != 5:
        raise ValidationFailed(
            f"cron expression {expr!r} must have 5 fields (minute hour day month weekday)",
            hint="e.g. '0 3 * * *' for every day at 03:00",
        )
    if not croniter.is_valid(norm):
        raise ValidationFailed(
            f"cron expression {expr!r} is not valid",
            hint="fields: minute 0-59, hour 0-23, day 1-31, month 1-12, weekday 0-6; e.g. '0 3 * * *'",
        )
    return norm


def next_runs(expr: str, after: float, count: int = 1, tz: tzinfo = UTC) -> list[float]:
    """The next `count` fire times strictly after `after` (epoch seconds)."""
    it = croniter(expr, datetime.fromtimestamp(after, tz))
    return [float(it.get_next(float)) for _ in range(count)]


def due(expr: str, last_run: float | None, created: float, now: float, tz: tzinfo = UTC) -> bool:
    """Whether a fire time passed in (last run or creation, now]. Missed fire times while the server was
    down collapse into one run, never a burst."""
    since = last_run if last_run is not None else created
    return next_runs(expr, since, 1, tz)[0] <= now
