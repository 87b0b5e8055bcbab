"""Cron arithmetic for plans: validation messages, next run times and due-ness with `now` given."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.errors import ValidationFailed
from snap.schedule import due, next_runs, validate_cron


def _t(s: str) -> float:
    return datetime.fromisoformat(s).replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize("expr", ["0 3 * * *", "*/15 * * * *", "0 0 1 * *", "30  4 * * 1-5"])
def test_valid(expr: str) -> None:
    assert validate_cron(expr) == " ".join(expr.split())


@pytest.mark.parametrize(
    "expr, fragment",
    [
        ("", "5 fields"),
        ("0 3 * *", "5 fields"),
        ("0 3 * * * *", "5 fields"),
        ("61 3 * * *", "not valid"),
        ("0 25 * * *", "not valid"),
        ("a b c d e", "not valid"),
    ],
)
def test_invalid(expr: str, fragment: str) -> None:
    with pytest.raises(ValidationFailed) as e:
        validate_cron(expr)
    assert fragment in e.value.message
    assert e.value.hint


@pytest.mark.parametrize(
    "expr, after, expected",
    [
        ("0 3 * * *", "2026-12-03T02:59:00", ["2026-12-03T03:00:00", "2026-12-04T03:00:00"]),
        ("0 3 * * *", "2026-12-03T03:00:00", ["2026-12-04T03:00:00", "2026-12-05T03:00:00"]),
        ("0 0 1 * *", "2026-12-15T00:00:00", ["2027-01-01T00:00:00", "2027-02-01T00:00:00"]),
    ],
)
def test_next_runs(expr: str, after: str, expected: list[str]) -> None:
    assert next_runs(expr, _t(after), 2) == [_t(e) for e in expected]


@pytest.mark.parametrize(
    "last, now, is_due",
    [
        (None, "2026-12-03T02:00:00", False),  # created at 01:00, first fire at 03:00
        (None, "2026-12-03T03:00:00", True),
        ("2026-12-03T03:00:00", "2026-12-03T12:00:00", False),
        ("2026-12-03T03:00:00", "2026-12-06T12:00:00", True),  # missed days: due once
    ],
)
def test_due(last: str | None, now: str, is_due: bool) -> None:
    created = _t("2026-12-03T01:00:00")
    assert due("0 3 * * *", _t(last) if last else None, created, _t(now)) is is_due
