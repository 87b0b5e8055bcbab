"""Wiring of logbus: its service from the settings (`<data>/logs/`, the `logbus:` section), registered
as `log_sink` (orch hands it each instance's pipes) and `access_log` (the gate records each request),
both before orch and gate are wired; and its console routes.

The block index lives in `<data>/logs/index.db`, not in `state.db`: see `logbus.index` for why.
"""

from __future__ import annotations

from typing import Any

from console_api import routes_logbus
from core.component import Component
from core.settings import load_section
from fsctl.kernel import Kernel
from logbus.config import LogbusConfig
from logbus.service import LogbusService


def load_logbus_config(section: dict[str, Any]) -> LogbusConfig:
    """The `logbus:` section validated, or a StartupError naming each bad key."""
    return load_section(LogbusConfig, section, key="logbus", hint="e.g. logbus: {max_age_s: 14d, max_total_bytes: 2Gi}")


def wire(kernel: Kernel) -> list[Component]:
    s = kernel.settings
    service = LogbusService(s.data_dir / "logs", load_logbus_config(s.logbus), kernel.clock)
    kernel.services.logbus = service
    kernel.services.log_sink = service
    kernel.services.access_log = service
    routes_logbus.register(kernel.api, service, heartbeat_s=s.sse_heartbeat_s)
    return [service]
