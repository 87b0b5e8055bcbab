"""Endpoint sets for the gate and their publication only on change."""

from __future__ import annotations

from core.ports import Endpoint, EndpointBoard
from orch.endpoints import EndpointPublisher, endpoint_sets


def test_sets_by_service_and_named_port() -> None:
    sets = endpoint_sets(
        "web", ["http", "admin"], [(2, {"http": 8002, "admin": 9002}), (1, {"http": 8001, "admin": 9001})]
    )
    assert sets["web"] == (Endpoint("127.0.0.1", 8001, "web-1"), Endpoint("127.0.0.1", 8002, "web-2"))
    assert [e.port for e in sets["web:admin"]] == [9001, 9002]
    assert sets["web:http"] == sets["web"]
    assert endpoint_sets("web", [], [(1, {})]) == {"web": ()}


def test_publisher_publishes_changes_only_and_clears_stale_keys() -> None:
    board = EndpointBoard()
    seen: list[tuple[str, int]] = []
    board.on_change(lambda name, eps: seen.append((name, len(eps))))
    pub = EndpointPublisher(board)
    one = endpoint_sets("web", ["http"], [(1, {"http": 8001})])
    pub.publish("web", one)
    pub.publish("web", one)
    assert seen == [("web", 1), ("web:http", 1)]
    assert pub.services() == {"web"}
    pub.publish("web", endpoint_sets("web", [], []))  # the port was removed from the spec
    assert board.get("web") == () and board.get("web:http") == ()
    assert pub.services() == set()
