"""Orch: services from YAML specs, run by a runtime (process now; docker and systemd plug into the same
`Runtime` interface), supervised with health checks, restart policies, back-off and crash-loop detection,
with CPU/memory limits through cgroups (v2, v1, or rlimits).

Primitives: `ServiceSpec` (spec.py, line-precise YAML errors), the pure planner (planner.py: slots,
transitions, `plan`), `Runtime` (runtime.py) and `ProcessRuntime` (process.py), cgroup drivers
(cgroups.py), health probes (health.py), and `OrchService` (service.py), the asyncio shell.
"""

from orch.artifacts import ArtifactStore
from orch.config import OrchSettings
from orch.release import VERSION_RE, VERSION_RULE
from orch.runtime import ExitStatus, InstanceConfig, Runtime
from orch.service import OrchService
from orch.spec import ServiceSpec, SpecError, load_spec

__all__ = [
    "VERSION_RE",
    "VERSION_RULE",
    "ArtifactStore",
    "ExitStatus",
    "InstanceConfig",
    "OrchService",
    "OrchSettings",
    "Runtime",
    "ServiceSpec",
    "SpecError",
    "load_spec",
]
