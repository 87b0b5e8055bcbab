"""The kernel the wiring modules build components from: the shared parts (settings, store, bus, identity,
pools, the boards in `core.ports`) and `Services`, one typed attribute per component's public object.

Wiring modules run in `fsctl.serve.WIRING` order and set their component's attributes; a module reads an
earlier one's directly and a later one's lazily (each tick, each request), so a missing component is None.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from console_api import Api
from core.audit import AuditLog
from core.bus import EventBus
from core.clock import SystemClock
from core.identity import Identity
from core.ports import (
    AccessLogSink,
    CertificateBoard,
    ChallengeStore,
    EndpointBoard,
    LogSink,
    MetricsSource,
    ServiceInventory,
)
from core.settings import Settings
from core.store import Store
from core.tasks import TaskSet
from core.workers import WorkerPool, default_workers

if TYPE_CHECKING:  # the components themselves are imported by their wiring modules only
    from certd import CertdService
    from core.clients import ClientRegistry
    from gate.service import GateService
    from logbus.service import LogbusService
    from orch.artifacts import ArtifactStore
    from orch.service import OrchService
    from probe.service import ProbeService
    from secscan import SecscanService
    from snap.service import SnapService


@dataclass
class Services:
    """The components' public objects, by the wiring module that sets them (None: not wired)."""

    clients: ClientRegistry | None = None  # wire_clients; the console authenticates CI tokens with it
    logbus: LogbusService | None = None  # wire_logbus, also as:
    log_sink: LogSink | None = None  # orch hands it each instance's pipes
    access_log: AccessLogSink | None = None  # the gate records each request
    orch: OrchService | None = None  # wire_orch, also as:
    inventory: ServiceInventory | None = None  # probe's running instances and service states
    artifacts: ArtifactStore | None = None  # wire_orch: uploads and release dirs
    probe: ProbeService | None = None  # wire_probe
    certd: CertdService | None = None  # wire_certd, also as:
    certd_metrics: MetricsSource | None = None  # cert_expiry_seconds for probe
    gate: GateService | None = None  # wire_gate, also as:
    gate_metrics: MetricsSource | None = None  # the gate's counters for probe
    snap: SnapService | None = None  # wire_snap
    secscan: SecscanService | None = None  # wire_security (last: it reads the others)

    def metrics_sources(self) -> list[MetricsSource]:
        """The sources probe reads each tick besides the gate's (which it reads on its own)."""
        return [s for s in (self.certd_metrics,) if s is not None]


@dataclass
class Pools:
    """The platform's worker pools for CPU-heavy work (see `core.workers`): two, so a flood at the edge
    (wrong Basic-auth passwords from many addresses) cannot starve the console's logins and spec parsing,
    nor the reverse. Processes, one per core but one (the loop keeps a core), at lower CPU priority; a
    full pool answers 503 with Retry-After."""

    # bcrypt for the gate's Basic auth
    edge: WorkerPool = field(
        default_factory=lambda: WorkerPool("edge-auth", workers=default_workers(), backlog=16, kind="process")
    )
    # bcrypt for logins, new users and passwords; YAML + validation of service specs
    control: WorkerPool = field(
        default_factory=lambda: WorkerPool("control", workers=default_workers(), backlog=8, kind="process")
    )

    def all(self) -> tuple[WorkerPool, ...]:
        return (self.edge, self.control)


@dataclass
class Kernel:
    """What the wiring modules build components from."""

    settings: Settings
    store: Store
    bus: EventBus
    identity: Identity
    audit: AuditLog
    api: Api
    tasks: TaskSet
    pools: Pools
    clock: SystemClock = field(default_factory=SystemClock)
    endpoints: EndpointBoard = field(default_factory=EndpointBoard)
    challenges: ChallengeStore = field(default_factory=ChallengeStore)
    certificates: CertificateBoard = field(default_factory=CertificateBoard)
    services: Services = field(default_factory=Services)
