"""Snap's events on the bus (past tense; `type` is the wire name)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from core.bus import DomainEvent


@dataclass(frozen=True)
class SnapStarted(DomainEvent):
    type: ClassVar[str] = "snap.started"
    plan: str
    run_id: int
    trigger: str


@dataclass(frozen=True)
class SnapDone(DomainEvent):
    type: ClassVar[str] = "snap.done"
    plan: str
    run_id: int
    snapshot: str
    files: int
    bytes: int
    new_bytes: int
    stored_bytes: int
    duration_s: float
    errors: int


@dataclass(frozen=True)
class SnapFailed(DomainEvent):
    type: ClassVar[str] = "snap.failed"
    plan: str
    run_id: int
    error: str
