"""The kernel's typed events keep the wire form the console reads: type and payload keys, in order."""

from __future__ import annotations

import pytest

from core.bus import DomainEvent
from core.events import (
    ClientCreated,
    ClientRevoked,
    RecoveryCodeUsed,
    TokenCreated,
    TokenRevoked,
    UserCreated,
    UserRemoved,
    UserUpdated,
)

CASES: list[tuple[DomainEvent, str, dict[str, object]]] = [
    (UserCreated("ann", "admin"), "user.created", {"username": "ann", "role": "admin"}),
    (UserUpdated("ann", "password"), "user.updated", {"username": "ann", "change": "password"}),
    (
        RecoveryCodeUsed("ann", "recovery_code_used", 7),
        "user.updated",
        {"username": "ann", "change": "recovery_code_used", "codes_left": 7},
    ),
    (UserRemoved("ann"), "user.removed", {"username": "ann"}),
    (TokenCreated(3, "ci", "operator"), "token.created", {"id": 3, "name": "ci", "role": "operator"}),
    (TokenRevoked(3, "ci"), "token.revoked", {"id": 3, "name": "ci"}),
    (ClientCreated("cl_1", "ci", ["web"]), "client.created", {"client_id": "cl_1", "name": "ci", "services": ["web"]}),
    (ClientRevoked("cl_1", "ci"), "client.revoked", {"client_id": "cl_1", "name": "ci"}),
]


@pytest.mark.parametrize(("event", "etype", "payload"), CASES, ids=[type(c[0]).__name__ for c in CASES])
def test_wire_form(event: DomainEvent, etype: str, payload: dict[str, object]) -> None:
    assert event.type == etype
    assert list(event.payload().items()) == list(payload.items())
