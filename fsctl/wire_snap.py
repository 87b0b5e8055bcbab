"""Wiring of snap: its service from the settings (`snap:` section, repository under `<data>/snap/repo`
by default), the state store (plans, runs), the bus (`snap.started|done|failed`), and its routes."""

from __future__ import annotations

from typing import Any

from console_api import routes_snap
from core.component import Component
from snap.config import load_snap_config
from snap.service import SnapService


def wire(kernel: Any) -> list[Component]:
    s = kernel.settings
    service = SnapService(load_snap_config(s.snap), s.data_dir, kernel.store, kernel.bus, clock=kernel.clock)
    kernel.services["snap"] = service
    routes_snap.register(kernel.api, service)
    return [service]
