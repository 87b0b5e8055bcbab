"""The h2 stack the gate's HTTP/2 front end overrides privately is pinned: pyproject's exact pins, the
installed releases and `gate.h2pins.PINNED` agree, and a gate started with another release says so."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gate.h2pins import PINNED, RECHECK, mismatches, warn_if_unpinned

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_installed_h2_stack_is_exactly_the_pinned_releases():
    bad = mismatches()
    if bad:
        found = ", ".join(f"{n} {f or 'missing'} (expected {w})" for n, w, f in bad)
        pytest.fail(
            f"the installed h2 stack differs from the pins: {found}. {RECHECK}. Or reinstall the "
            f"pinned releases: `pip install -e .` in this checkout.",
            pytrace=False,
        )


def test_pyproject_pins_exactly_what_the_gate_was_checked_against():
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    pins = {}
    for dep in deps:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(==|>=|~=|<=|>|<|!=)?\s*(.*)", dep)
        assert m, dep
        pins[m.group(1).lower()] = (m.group(2), m.group(3))
    for name, version in PINNED.items():
        assert pins.get(name) == ("==", version), (
            f"pyproject.toml must pin {name}=={version} exactly (found {name}{''.join(pins.get(name) or ('', ''))!s}"
            f" or nothing): {RECHECK}"
        )


def test_another_release_gives_one_loud_warning_naming_both_versions():
    found = {**PINNED, "h2": "4.9.0", "hyperframe": None}
    with capture_logs() as logs:
        assert warn_if_unpinned(found.get) is False
    assert len(logs) == 1
    entry = logs[0]
    assert entry["log_level"] == "warning" and entry["event"] == "h2 stack version not the pinned one"
    assert "h2 4.9.0 is installed but the gate was checked against h2 4.4.1" in entry["problems"]
    assert "hyperframe not installed" in entry["problems"]
    assert entry["found"] == {"h2": "4.9.0", "hyperframe": None}
    assert "_receive_frame" in entry["recheck"] and "test_h2.py" in entry["recheck"]


def test_the_pinned_releases_start_quietly():
    with capture_logs() as logs:
        assert warn_if_unpinned(PINNED.get) is True
    assert logs == []
