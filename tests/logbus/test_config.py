"""The `logbus:` settings section: units as people write them, precise errors for mistakes."""

from __future__ import annotations

import pytest

from core.errors import StartupError
from fsctl.wire_logbus import load_logbus_config


def test_defaults_are_14_days_and_2_gib() -> None:
    cfg = load_logbus_config({})
    assert cfg.max_age_s == 14 * 86400
    assert cfg.max_total_bytes == 2 * 1024**3


def test_units_as_written() -> None:
    cfg = load_logbus_config({"max_age_s": "7d", "max_total_bytes": "512Mi", "max_line_bytes": "64k"})
    assert (cfg.max_age_s, cfg.max_total_bytes, cfg.max_line_bytes) == (7 * 86400, 512 * 1024**2, 64000)


@pytest.mark.parametrize(
    ("section", "where"),
    [
        ({"max_agee_s": "7d"}, "logbus.max_agee_s"),
        ({"max_age_s": "a week"}, "logbus.max_age_s"),
        ({"max_total_bytes": 0}, "logbus.max_total_bytes"),
        ({"max_line_bytes": "10"}, "logbus.max_line_bytes"),
    ],
)
def test_mistakes_name_the_key(section: dict[str, object], where: str) -> None:
    with pytest.raises(StartupError) as e:
        load_logbus_config(section)
    assert where in e.value.message
