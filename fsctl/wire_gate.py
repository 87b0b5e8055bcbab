"""Wiring of the gate: its config section, the ports it reads (endpoints, ACME challenges, certificates,
access-log sink, orch's services and a DNS resolver for the upstream warnings) and its console routes."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from console_api import routes_gate
from core.component import Component
from fsctl.kernel import Kernel
from gate.config import load_gate_config
from gate.service import GateService
from gate.upstream_check import LookupPool


def wire(kernel: Kernel) -> list[Component]:
    s = kernel.settings
    config = load_gate_config(s.gate)
    service = GateService(
        config,
        store=kernel.store,
        bus=kernel.bus,
        listen_host=s.edge_host,
        listen_port=s.http_port,
        endpoints=kernel.endpoints,
        challenges=kernel.challenges,
        certificates=kernel.certificates,
        access_log=kernel.services.access_log,
        wall_clock=kernel.clock.now,
        https_port=s.https_port,
        data_dir=s.data_dir,
        workers=kernel.pools.edge,
        service_ports=_service_ports(kernel.services.orch),
        resolve=resolve_host,
    )
    kernel.services.gate = service
    kernel.services.gate_metrics = service  # a core.ports.MetricsSource for probe's Prometheus exposition
    routes_gate.register(kernel.api, service)
    return [service]


def _service_ports(orch: Any) -> Callable[[], Mapping[str, Collection[str]]] | None:
    """Orch's services now → their port names (orch is wired before the gate; None without it)."""
    if orch is None:
        return None
    return lambda: {name: [p.name for p in row.spec.ports] for name, row in orch.services.items()}


_CHECK_LOOKUPS = LookupPool(threads=2, queued=8)  # one for the process: its threads are daemons, started lazily


async def resolve_host(host: str) -> object:
    """Resolve `host` for the upstream checks in their own two threads (never the loop, nor the loop's
    getaddrinfo threads that upstream connects use); raises OSError (socket.gaierror) when the name does
    not resolve, LookupBusy when eight lookups are already waiting."""
    return await _CHECK_LOOKUPS.resolve(host)
