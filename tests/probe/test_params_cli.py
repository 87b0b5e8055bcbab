"""Query parameter parsing and the CLI's sparkline/number formatting (pure)."""

from __future__ import annotations

import pytest

from core.errors import BadRequest
from fsctl.cli_probe import BARS, human, sparkline
from probe.params import parse_labels, parse_step, parse_time

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (None, 5.0),
        ("", 5.0),
        ("now", NOW),
        ("1h", NOW - 3600),
        ("-1h", NOW - 3600),
        ("-90", NOW - 90),
        ("3600", NOW - 3600),
        ("1699990000", 1699990000.0),
        ("1699990000000", 1699990000.0),
        ("2023-11-14T22:13:20Z", 1700000000.0),
    ],
)
def test_parse_time(text: str | None, want: float) -> None:
    assert parse_time(text, NOW, default=5.0, param="from") == want


def test_parse_time_error_names_the_parameter() -> None:
    with pytest.raises(BadRequest, match=r"from='tuesday' is not a time"):
        parse_time("tuesday", NOW, default=0, param="from")


def test_parse_step_and_labels() -> None:
    assert parse_step(None) is None
    assert parse_step("60") == 60 and parse_step("5m") == 300
    with pytest.raises(BadRequest, match="below one second"):
        parse_step("500ms")
    with pytest.raises(BadRequest, match="not a step"):
        parse_step("often")
    assert parse_labels("service=web, instance=web-1") == {"service": "web", "instance": "web-1"}
    assert parse_labels("") == {}
    with pytest.raises(BadRequest, match="not a label filter"):
        parse_labels("service")
    with pytest.raises(BadRequest, match="not a label filter"):
        parse_labels("9x=1")


def test_sparkline() -> None:
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7], 8) == BARS
    assert sparkline([1, 1, 1], 3) == BARS[4] * 3
    assert sparkline([0, 0], 2) == BARS[0] * 2
    assert sparkline([1.0, None, 3.0], 3) == BARS[0] + " " + BARS[-1]
    assert len(sparkline(list(range(1000)), 40)) == 40
    assert sparkline([], 10) == "" and sparkline([None, None], 5) == "  "


def test_human() -> None:
    assert human(1536, "host_memory_used_bytes") == "1.5 KiB"
    assert human(100, "host_net_rx_bytes_per_second") == "100 B/s"
    assert human(12.345, "host_cpu_percent") == "12.3%"
    assert human(0.5, "host_load1") == "0.5"
    assert human(None, "x") == "-"
