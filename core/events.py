"""The kernel's own events on the bus (accounts, API tokens, CI clients): frozen DomainEvents whose fields
are the payload, in order. A `user.updated` carries `codes_left` only when a recovery code was used."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from core.bus import DomainEvent


@dataclass(frozen=True)
class UserCreated(DomainEvent):
    type: ClassVar[str] = "user.created"
    username: str
    role: str


@dataclass(frozen=True)
class UserUpdated(DomainEvent):
    """`change`: password | recovery_codes | totp_enabled | totp_disabled."""

    type: ClassVar[str] = "user.updated"
    username: str
    change: str


@dataclass(frozen=True)
class RecoveryCodeUsed(DomainEvent):
    type: ClassVar[str] = "user.updated"
    username: str
    change: str  # "recovery_code_used"
    codes_left: int


@dataclass(frozen=True)
class UserRemoved(DomainEvent):
    type: ClassVar[str] = "user.removed"
    username: str


@dataclass(frozen=True)
class TokenCreated(DomainEvent):
    type: ClassVar[str] = "token.created"
    id: int
    name: str
    role: str


@dataclass(frozen=True)
class TokenRevoked(DomainEvent):
    type: ClassVar[str] = "token.revoked"
    id: int
    name: str


@dataclass(frozen=True)
class ClientCreated(DomainEvent):
    type: ClassVar[str] = "client.created"
    client_id: str
    name: str
    services: list[str]


@dataclass(frozen=True)
class ClientRevoked(DomainEvent):
    type: ClassVar[str] = "client.revoked"
    client_id: str
    name: str
