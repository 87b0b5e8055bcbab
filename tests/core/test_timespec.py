"""The one parser of points in time that the metric and log APIs share (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.timespec import parse_time

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("now", NOW),
        ("10m", NOW - 600),
        ("-10m", NOW - 600),
        ("1h30m", NOW - 5400),
        (" 2h ", NOW - 7200),
        ("7d", NOW - 7 * 86400),
        ("250ms", NOW - 0.25),
        ("90", NOW - 90),
        ("-90", NOW - 90),
        ("0", NOW),
        ("1699990000", 1699990000.0),
        ("1699990000.5", 1699990000.5),
        ("1699990000000", 1699990000.0),
        ("2023-11-14T22:13:20Z", NOW),
        ("2023-11-14T22:13:20", NOW),
        ("2023-11-14T23:13:20+01:00", NOW),
        ("2023-11-14", 1699920000.0),
    ],
)
def test_accepted_forms(text: str, want: float) -> None:
    assert parse_time(text, NOW) == pytest.approx(want)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "10 minutes",
        "10x",
        "1h-",
        "--1h",
        "nan",
        "inf",
        "-inf",
        "2023-13-01",
        "10m ago",
        "1e400",
        "\x00",
        "1h\n30m",
    ],
)
def test_refused_forms_name_what_and_how(text: str) -> None:
    with pytest.raises(ValueError, match=r"since .* is not a time: use 'now', a duration ago like 10m"):
        parse_time(text, NOW, what="since")


@given(st.text(max_size=40))
def test_any_text_parses_or_is_a_value_error(text: str) -> None:
    try:
        value = parse_time(text, NOW)
    except ValueError:
        return
    assert value == value  # never NaN


def test_a_duration_beyond_any_date_is_out_of_range_and_long_text_is_cut() -> None:
    with pytest.raises(ValueError, match=r"from '9{64}…' is out of range"):
        parse_time("9" * 400 + "d", NOW, what="from")
    with pytest.raises(ValueError) as e:
        parse_time("x" * 10_000, NOW)
    assert len(str(e.value)) < 300
