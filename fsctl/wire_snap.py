"""Wiring of snap: its service from the settings (`snap:` section, repository under `<data>/snap/repo`
by default), the state store (plans, runs), the bus (`snap.started|done|failed`), its routes, and the
`ServiceLauncher` port for shadow instances, implemented here over orch's public API (looked up
lazily: snap runs without orch too)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from console_api import routes_snap
from core.component import Component
from core.errors import NotFound
from fsctl.kernel import Kernel
from snap.config import load_snap_config
from snap.service import SnapService
from snap.shadow import rewrite_paths


class OrchLauncher:
    """`core.ports.ServiceLauncher` over orch: the service's spec, paths rewritten, applied under a new name."""

    def __init__(self, orch: Any) -> None:
        self.orch = orch

    async def start_copy(
        self, service: str, copy_name: str, path_map: Mapping[str, str], timeout_s: float
    ) -> dict[str, object]:
        spec = rewrite_paths(self.orch.describe(service)["spec"], path_map)
        spec.update(name=copy_name, replicas=1, depends_on=[])
        await self.orch.apply(spec, filename=f"{copy_name} (shadow of {service})", actor="snap")
        deadline = time.monotonic() + timeout_s
        while True:
            d = self.orch.describe(copy_name)
            if d["status"] == "running" and d["healthy"] >= 1:
                break
            if time.monotonic() > deadline or d["status"] in ("failed", "crashloop"):
                break
            await asyncio.sleep(0.2)
        healthy = d["status"] == "running" and d["healthy"] >= 1
        return {
            "name": copy_name,
            "healthy": healthy,
            "status": d["status"],
            "reason": d.get("reason") or "",
            "endpoints": d.get("endpoints")
            or [f"127.0.0.1:{p}" for i in d.get("instances", []) for p in (i.get("ports") or {}).values()],
        }

    async def stop_copy(self, copy_name: str) -> None:
        try:
            await self.orch.delete(copy_name)
        except NotFound:
            pass


def wire(kernel: Kernel) -> list[Component]:
    s = kernel.settings

    def launcher() -> OrchLauncher | None:
        orch = kernel.services.orch
        return OrchLauncher(orch) if orch is not None else None

    service = SnapService(
        load_snap_config(s.snap), s.data_dir, kernel.store, kernel.bus, clock=kernel.clock, launcher=launcher
    )
    kernel.services.snap = service
    routes_snap.register(kernel.api, service)
    return [service]
