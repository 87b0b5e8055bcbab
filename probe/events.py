"""Probe's events on the bus (frozen dataclasses; `type` is the bus event type, the fields its payload)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from core.bus import DomainEvent


@dataclass(frozen=True)
class AlertTransition(DomainEvent):
    """An alert rule's series changed state (the fields are the webhook's body, without `event`)."""

    rule_id: int
    rule: str
    metric: str
    labels: dict[str, str]
    op: str
    threshold: float
    for_s: float
    value: float | None
    at: float
    reason: str

    @staticmethod
    def of(etype: str, fields: dict[str, Any]) -> AlertTransition:
        """The event for a transition record (`alert.triggered` or `alert.resolved`)."""
        cls = {AlertTriggered.type: AlertTriggered, AlertResolved.type: AlertResolved}[etype]
        return cls(**fields)


@dataclass(frozen=True)
class AlertTriggered(AlertTransition):
    """The rule's condition held for `for_s`: the alert fires."""

    type: ClassVar[str] = "alert.triggered"


@dataclass(frozen=True)
class AlertResolved(AlertTransition):
    """A firing alert's condition no longer holds (or its series sent no data)."""

    type: ClassVar[str] = "alert.resolved"
