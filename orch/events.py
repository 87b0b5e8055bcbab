"""Orch's events on the bus (frozen dataclasses; `type` is the bus event type, the fields its payload in
order). Several classes may share a type where the payload's keys differ by case (an image pull's progress
carries the layer, its failure the error), so the wire form stays exactly what the console reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from core.bus import DomainEvent


@dataclass(frozen=True)
class ServiceApplied(DomainEvent):
    """A spec version was stored for the service (the reconciler follows it)."""

    type: ClassVar[str] = "service.applied"
    service: str
    version: int
    by: str | None


@dataclass(frozen=True)
class ServiceRestartRequested(DomainEvent):
    type: ClassVar[str] = "service.restart.requested"
    service: str


@dataclass(frozen=True)
class ServiceRemoved(DomainEvent):
    type: ClassVar[str] = "service.removed"
    service: str


@dataclass(frozen=True)
class ServiceStatusChanged(DomainEvent):
    type: ClassVar[str] = "service.status.changed"
    service: str
    status: str
    previous: str | None
    reason: str
    healthy: int
    replicas: int


@dataclass(frozen=True)
class InstanceExited(DomainEvent):
    """An instance ended; `state` says what supervision does next (`restart_in_s` when it waits)."""

    type: ClassVar[str] = "service.instance.exited"
    service: str
    instance: str
    exit: dict[str, Any]
    expected: bool
    state: str
    restarts: int
    reason: str
    restart_in_s: float | None


@dataclass(frozen=True)
class InstanceHealth(DomainEvent):
    type: ClassVar[str] = "service.instance.health"
    service: str
    instance: str
    healthy: bool
    detail: str


@dataclass(frozen=True)
class InstanceAdopted(DomainEvent):
    """An instance that outlived the last run of the platform was re-attached."""

    type: ClassVar[str] = "service.instance.adopted"
    service: str
    instance: str
    pid: int | None


@dataclass(frozen=True)
class ImagePull(DomainEvent):
    """An image pull started (`status: started`) or finished (`status: done`)."""

    type: ClassVar[str] = "service.image.pull"
    service: str
    image: str
    status: str


@dataclass(frozen=True)
class ImagePullProgress(DomainEvent):
    """Docker's progress line for a layer (at most once a second)."""

    type: ClassVar[str] = "service.image.pull"
    service: str
    image: str
    status: str | None
    layer: str | None
    progress: dict[str, Any] | None


@dataclass(frozen=True)
class ImagePullFailed(DomainEvent):
    type: ClassVar[str] = "service.image.pull"
    service: str
    image: str
    status: str  # "failed"
    error: str


@dataclass(frozen=True)
class DeployFinished(DomainEvent):
    type: ClassVar[str] = "deploy.finished"
    deployment_id: int
    service: str
    release: int
    status: str
    error: str | None


@dataclass(frozen=True)
class DeployProgress(DomainEvent):
    """One step of a rollout (`outcome` of `step`, with `detail`)."""

    type: ClassVar[str] = "deploy.progress"
    deployment_id: int
    service: str
    release: int
    status: str
    error: str | None
    step: str
    outcome: str
    detail: str
