"""Wiring of the gate: its config section, the ports it reads (endpoints, ACME challenges, certificates,
access-log sink) and its console routes."""

from __future__ import annotations

from typing import Any

from console_api import routes_gate
from core.component import Component
from gate.config import load_gate_config
from gate.service import GateService


def wire(kernel: Any) -> list[Component]:
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
        access_log=kernel.services.get("access_log"),
        wall_clock=kernel.clock.now,
        https_port=s.https_port,
        data_dir=s.data_dir,
        workers=kernel.pools.edge,
    )
    kernel.services["gate"] = service
    kernel.services["gate_metrics"] = service  # a core.ports.MetricsSource for probe's Prometheus exposition
    routes_gate.register(kernel.api, service)
    return [service]
