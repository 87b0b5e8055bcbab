"""Orch's typed events keep the wire form the console reads: the type and the payload's keys, in order."""

from __future__ import annotations

import pytest

from core.bus import DomainEvent
from orch.events import (
    DeployFinished,
    DeployProgress,
    ImagePull,
    ImagePullFailed,
    ImagePullProgress,
    InstanceAdopted,
    InstanceExited,
    InstanceHealth,
    ServiceApplied,
    ServiceRemoved,
    ServiceRestartRequested,
    ServiceStatusChanged,
)

DEPLOY = {"deployment_id": 1, "service": "web", "release": 2, "status": "running", "error": None}
CASES: list[tuple[DomainEvent, str, list[str]]] = [
    (ServiceApplied("web", 3, "admin"), "service.applied", ["service", "version", "by"]),
    (ServiceRestartRequested("web"), "service.restart.requested", ["service"]),
    (ServiceRemoved("web"), "service.removed", ["service"]),
    (
        ServiceStatusChanged("web", "running", None, "", 1, 1),
        "service.status.changed",
        ["service", "status", "previous", "reason", "healthy", "replicas"],
    ),
    (
        InstanceExited("web", "web-1", {"code": 1}, False, "backoff", 2, "exit code 1", 1.5),
        "service.instance.exited",
        ["service", "instance", "exit", "expected", "state", "restarts", "reason", "restart_in_s"],
    ),
    (
        InstanceHealth("web", "web-1", True, "200 OK"),
        "service.instance.health",
        ["service", "instance", "healthy", "detail"],
    ),
    (InstanceAdopted("web", "web-1", 42), "service.instance.adopted", ["service", "instance", "pid"]),
    (ImagePull("web", "nginx:1", "started"), "service.image.pull", ["service", "image", "status"]),
    (
        ImagePullProgress("web", "nginx:1", "Downloading", "abc", {"current": 1}),
        "service.image.pull",
        ["service", "image", "status", "layer", "progress"],
    ),
    (
        ImagePullFailed("web", "nginx:1", "failed", "not found"),
        "service.image.pull",
        ["service", "image", "status", "error"],
    ),
    (DeployFinished(**DEPLOY), "deploy.finished", list(DEPLOY)),
    (
        DeployProgress(**DEPLOY, step="start", outcome="ok", detail="web-3"),
        "deploy.progress",
        [*DEPLOY, "step", "outcome", "detail"],
    ),
]


@pytest.mark.parametrize(("event", "etype", "keys"), CASES, ids=[c[1] + ":" + type(c[0]).__name__ for c in CASES])
def test_wire_form(event: DomainEvent, etype: str, keys: list[str]) -> None:
    assert event.type == etype
    assert list(event.payload()) == keys
