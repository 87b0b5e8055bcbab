"""The typed kernel (fsctl/kernel.py): wiring fills each component's attribute and keeps the start order
(producers of ports before their consumers; the order `fsctl serve` starts and, reversed, stops them)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from console_api import Api
from core.audit import AuditLog
from core.bus import EventBus
from core.identity import Identity
from core.settings import Settings
from core.store import Store
from core.tasks import TaskSet
from fsctl.kernel import Kernel, Pools, Services
from fsctl.serve import _wire


def _kernel(tmp_path: Path) -> Kernel:
    settings = Settings(data_dir=tmp_path)
    store = Store(settings.state_db)  # never opened: wiring does no I/O
    bus = EventBus(store)
    return Kernel(settings, store, bus, Identity(store, bus), AuditLog(store), Api(), TaskSet("t"), Pools())


def test_wiring_sets_every_service_and_keeps_the_start_order(tmp_path: Path) -> None:
    async def run() -> tuple[Kernel, list[str]]:
        k = _kernel(tmp_path)
        return k, [c.name for c in _wire(k)]

    k, names = asyncio.run(run())
    s = k.services
    unset = [f.name for f in dataclasses.fields(Services) if getattr(s, f.name) is None]
    assert unset == []
    assert s.log_sink is s.logbus and s.access_log is s.logbus
    assert s.inventory is s.orch and s.gate_metrics is s.gate and s.certd_metrics is s.certd
    assert s.metrics_sources() == [s.certd]
    assert s.orch is not None and s.orch.artifacts is s.artifacts
    assert names == ["clients", "logbus", "artifacts", "orch", "probe", "certd", "gate", "snap", "secscan"]


def test_services_start_empty() -> None:
    s = Services()
    assert all(getattr(s, f.name) is None for f in dataclasses.fields(Services))
    assert s.metrics_sources() == []
