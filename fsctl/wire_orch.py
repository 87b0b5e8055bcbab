"""Wiring of orch: `OrchService` from the settings (`data_dir`, the `orch:` section), the state store (its
own migrations), the bus (`service.*` events), the endpoint board (healthy instances, for the gate's
`service:NAME` upstreams), logbus's `log_sink` when wired (else files under `<data>/logs/<service>/`);
registered as `inventory` (for probe) and `orch`; and its console routes. The artifact store (uploads and
release dirs) starts before it and is `orch.artifacts`."""

from __future__ import annotations

from typing import Any

from console_api import routes_artifacts, routes_deploy, routes_orch
from core.component import Component
from core.settings import load_section
from fsctl.kernel import Kernel
from orch._tarcheck import TarLimits
from orch.artifacts import ArtifactStore
from orch.config import OrchSettings
from orch.service import OrchService


def load_orch_settings(section: dict[str, Any]) -> OrchSettings:
    """The `orch:` section validated, or a StartupError naming each bad key."""
    return load_section(OrchSettings, section, key="orch", hint="e.g. orch: {cgroups: auto, backoff_max_s: 60}")


def wire(kernel: Kernel) -> list[Component]:
    s = kernel.settings
    service = OrchService(
        load_orch_settings(s.orch),
        data_dir=s.data_dir,
        store=kernel.store,
        bus=kernel.bus,
        endpoints=kernel.endpoints,
        log_sink=kernel.services.log_sink,
        clock=kernel.clock,
        parse_pool=kernel.pools.control,
    )
    kernel.services.orch = service
    kernel.services.inventory = service
    routes_orch.register(kernel.api, service)
    routes_deploy.register(kernel.api, service)
    artifacts = wire_artifacts(kernel, service)
    return [artifacts, service]


def wire_artifacts(kernel: Kernel, orch: OrchService) -> ArtifactStore:
    """The artifact store (uploads, release dirs), handed to orch as `orch.artifacts` for its deploys."""
    o = load_orch_settings(kernel.settings.orch)
    artifacts = ArtifactStore(
        kernel.settings.data_dir,
        kernel.store,
        max_bytes=o.artifact_max_bytes,
        clock=kernel.clock,
        limits=TarLimits(max_members=o.artifact_max_members, max_unpacked_bytes=o.artifact_max_unpacked_bytes),
        keep_count=o.release_keep,
    )
    orch.artifacts = artifacts
    kernel.services.artifacts = artifacts
    routes_artifacts.register(kernel.api, artifacts)
    return artifacts
