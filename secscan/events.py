"""Secscan's events on the bus."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from core.bus import DomainEvent


@dataclass(frozen=True)
class SecurityFindingRaised(DomainEvent):
    """A scan found a problem the previous scan did not (or that had gone and came back)."""

    type: ClassVar[str] = "security.finding"
    id: str
    category: str
    severity: str
    title: str
    fix: str
