"""Certd's events on the bus (frozen dataclasses; `type` is the bus event type)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from core.bus import DomainEvent


@dataclass(frozen=True)
class CertificateIssued(DomainEvent):
    """A certificate was issued, renewed or imported and is now served."""

    type: ClassVar[str] = "cert.issued"
    name: str
    names: list[str]
    serial: str
    not_after: float
    issuer: str
    source: str  # "acme" | "imported"
    renewal: bool  # it replaced an earlier real certificate


@dataclass(frozen=True)
class CertificateFailed(DomainEvent):
    """An order failed; `serving` says what is served meanwhile (the previous cert or the fallback)."""

    type: ClassVar[str] = "cert.failed"
    name: str
    names: list[str]
    error: str
    failures: int
    retry_at: float
    retry_in_s: float
    serving: str


@dataclass(frozen=True)
class CertificateExpiring(DomainEvent):
    """A served certificate has less than the warning threshold left and has not been replaced."""

    type: ClassVar[str] = "cert.expiring"
    name: str
    names: list[str]
    not_after: float
    days_left: float
    source: str
    last_error: str | None
