"""What the security scanner needs to know about the platform itself, as plain data.

The scanner (`secscan`) cannot import the components that hold these facts (identity, gate, certd,
orch); `fsctl` builds a `PlatformFacts` from their public objects and hands the scanner a
`PlatformFactsSource`. Nothing here holds a secret: no password hashes, token hashes or keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class UserFact:
    username: str
    role: str  # "admin" | "viewer"
    totp: bool
    disabled: bool = False


@dataclass(frozen=True)
class TokenFact:
    """An API token that is neither revoked nor expired."""

    id: int
    name: str
    role: str
    owner: str
    created_at: float
    expires_at: float


@dataclass(frozen=True)
class RouteFact:
    id: int
    name: str  # host[/path]
    tls: str  # "off" | "auto" | "manual"
    redirect_https: bool
    static_dir: str | None = None


@dataclass(frozen=True)
class CertFact:
    names: tuple[str, ...]
    not_after: float  # epoch seconds
    source: str  # "acme" | "imported" | "self-signed"
    cert_path: str = ""


@dataclass(frozen=True)
class InstanceFact:
    """A running service instance: what `fsctl` knows of its process."""

    service: str
    instance: str
    pid: int | None


@dataclass(frozen=True)
class PlatformFacts:
    data_dir: Path
    console_host: str
    console_port: int
    edge_ports: tuple[int, ...]  # the gate's HTTP and HTTPS ports (expected to face outside)
    users: tuple[UserFact, ...] = ()
    tokens: tuple[TokenFact, ...] = ()
    routes: tuple[RouteFact, ...] = ()
    certs: tuple[CertFact, ...] = ()
    instances: tuple[InstanceFact, ...] = ()
    missing: tuple[str, ...] = field(default=())  # parts that could not be read (component not wired)


class PlatformFactsSource(Protocol):
    async def platform_facts(self) -> PlatformFacts:
        """The facts now. Called on the loop, at most once per scan; must not block (read state, not disks)."""
        ...
