"""What `OrchService` (`orch.service`) shows of its services and instances: the list, one service described
with its instances, and `core.ports.ServiceInventory` (running instances, every service's state). Read-only
views of its state, mixed into `OrchService`."""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any

from core.ports import EndpointBoard, InstanceInfo, ServiceState
from orch import planner
from orch.live import Live, instance_view
from orch.planner import Slot, SlotKey

if TYPE_CHECKING:
    from core.clock import Clock
    from orch.cgroups import CgroupDriver
    from orch.repo import ServiceRow
    from orch.runtimes import RuntimeSet


class Inventory:
    """Mixed into `OrchService`; see `orch.service` for the state."""

    if TYPE_CHECKING:  # what `OrchService` provides
        services: dict[str, ServiceRow]
        slots: dict[SlotKey, Slot]
        live: dict[SlotKey, Live]
        statuses: dict[str, planner.ServiceStatus]
        runtime: RuntimeSet | None
        clock: Clock
        endpoints: EndpointBoard
        cgroups: CgroupDriver | None

        def _row(self, name: str) -> ServiceRow: ...

    def list(self) -> list[dict[str, Any]]:
        return [self._summary(n) for n in sorted(self.services)]

    def describe(self, name: str) -> dict[str, Any]:
        row = self._row(name)
        insts = []
        for slot in sorted((s for s in self.slots.values() if s.service == name), key=lambda s: s.index):
            live = self.live.get(slot.key, Live())
            inspect = self.runtime.inspect(live.instance) if live.instance is not None and self.runtime else {}
            stats = (
                self.runtime.stats(live.instance)
                if live.instance is not None and self.runtime and slot.phase == "running"
                else None
            )
            insts.append(instance_view(slot, live, inspect, stats, self.clock.monotonic(), row.spec.runtime_name))
        return {
            **self._summary(name),
            "spec": row.spec.model_dump(mode="json", exclude_defaults=True),
            "instances": insts,
        }

    def _summary(self, name: str) -> dict[str, Any]:
        row = self._row(name)
        st = self.statuses.get(name) or planner.ServiceStatus("pending", "", 0, row.spec.replicas)
        return {
            "name": name,
            "version": row.version,
            "desired": row.desired,
            "status": st.status,
            "reason": st.reason,
            "healthy": st.healthy,
            "replicas": row.spec.replicas,
            "restarts": row.restarts,
            "last_exit": row.last_exit,
            "runtime": row.spec.runtime_name,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
            "endpoints": [f"{e.host}:{e.port}" for e in self.endpoints.get(name)],
        }

    def instances(self) -> builtins.list[InstanceInfo]:
        """`ServiceInventory`: the running instances now."""
        out = []
        for key, slot in self.slots.items():
            live = self.live.get(key)
            if slot.phase not in ("running", "stopping") or live is None or live.instance is None:
                continue
            info = self.runtime.inspect(live.instance) if self.runtime else {}
            out.append(
                InstanceInfo(
                    service=key[0],
                    instance=f"{key[0]}-{key[1]}",
                    runtime=info.get("runtime", "?"),
                    state=slot.phase,
                    pid=info.get("pid"),
                    cgroup=info.get("cgroup"),
                    container_id=info.get("container_id"),
                    restarts=slot.restarts,
                )
            )
        return out

    def service_states(self) -> builtins.list[ServiceState]:
        """`ServiceInventory`: every defined service and its status now, stopped and failed ones included."""
        out = []
        for name, row in self.services.items():
            st = self.statuses.get(name) or planner.ServiceStatus("pending", "", 0, row.spec.replicas)
            out.append(ServiceState(name, st.status, row.desired, st.healthy, row.spec.replicas))
        return out

    def limits(self) -> dict[str, Any]:
        return self.cgroups.describe() if self.cgroups else {}
