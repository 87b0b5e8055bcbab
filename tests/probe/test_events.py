"""Probe's typed alert events keep the wire form the console and webhooks read."""

from __future__ import annotations

import pytest

from probe.events import AlertResolved, AlertTransition, AlertTriggered

FIELDS = {
    "rule_id": 1,
    "rule": "cpu",
    "metric": "host_cpu_percent",
    "labels": {"host": "h"},
    "op": ">",
    "threshold": 90.0,
    "for_s": 60.0,
    "value": 95.5,
    "at": 1000.0,
    "reason": "above threshold",
}


@pytest.mark.parametrize(("etype", "cls"), [("alert.triggered", AlertTriggered), ("alert.resolved", AlertResolved)])
def test_alert_transition_wire_form(etype: str, cls: type) -> None:
    e = AlertTransition.of(etype, dict(FIELDS))
    assert type(e) is cls and e.type == etype
    assert list(e.payload().items()) == list(FIELDS.items())


def test_unknown_transition_is_refused() -> None:
    with pytest.raises(KeyError):
        AlertTransition.of("alert.bogus", dict(FIELDS))
