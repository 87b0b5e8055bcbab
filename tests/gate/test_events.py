"""The gate's typed events keep the wire form the console reads (type + payload keys, in order)."""

from __future__ import annotations

import json

from gate.events import RouteChanged


def test_route_changed_wire_form() -> None:
    e = RouteChanged("added", 7, "example.com", "/api", 3)
    assert e.type == "route.changed"
    assert json.dumps(e.payload()) == json.dumps(
        {"action": "added", "id": 7, "host": "example.com", "path": "/api", "version": 3}
    )
