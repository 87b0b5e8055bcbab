"""Wiring of probe: its service from the settings (`data_dir`, the `probe:` section), the state store
(alert rules), the bus (alert events), orch's `inventory` (running instances and every defined
service's state, for `service_up`; looked up each tick, so probe runs without orch too), the gate's
`gate_metrics` source (registered by gate's wiring, which runs later: looked up lazily each tick), the
other components' sources (`Services.metrics_sources`, also looked up each tick), and its console routes."""

from __future__ import annotations

from console_api import routes_probe
from core.component import Component
from fsctl.kernel import Kernel
from probe.config import load_probe_config
from probe.service import ProbeService


def wire(kernel: Kernel) -> list[Component]:
    s = kernel.settings
    config = load_probe_config(s.probe)
    service = ProbeService(
        config,
        s.data_dir,
        kernel.store,
        kernel.bus,
        inventory=lambda: kernel.services.inventory,
        gate_source=lambda: kernel.services.gate_metrics,
        sources=kernel.services.metrics_sources,
        clock=kernel.clock,
    )
    kernel.services.probe = service
    routes_probe.register(kernel.api, service)
    return [service]
