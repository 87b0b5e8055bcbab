"""The gate's events on the bus (frozen dataclasses; `type` is the bus event type, the fields its payload)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from core.bus import DomainEvent


@dataclass(frozen=True)
class RouteChanged(DomainEvent):
    """A route was added, updated or removed; `version` is the route table's version that serves it."""

    type: ClassVar[str] = "route.changed"
    action: str  # "added" | "updated" | "removed"
    id: int
    host: str
    path: str
    version: int
