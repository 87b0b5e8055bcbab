"""The supervisor's side of a slot (`Live`: the runtime handle, its ports, the tasks watching it) and how an
instance is shown to the API (`instance_view`)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from orch.health import HealthResult
from orch.planner import Slot
from orch.runtime import Instance, InstanceStats

_RUNTIME_KEYS = ("container", "container_id", "image", "container_ports", "unit")


@dataclass
class Live:
    """The shell's side of a slot: the runtime handle and the tasks watching it."""

    instance: Instance | None = None
    ports: dict[str, int] = field(default_factory=dict)
    starting: asyncio.Task[Any] | None = None
    health_task: asyncio.Task[Any] | None = None
    health: deque[HealthResult] = field(default_factory=lambda: deque(maxlen=20))
    started_wall: float | None = None
    last_exit: dict[str, Any] | None = None
    # A retired instance whose record could not be moved aside: it is still the slot's record (see `_switch`).
    holds_slot_record: bool = False


def instance_view(
    slot: Slot, live: Live, inspect: dict[str, Any], stats: InstanceStats | None, now: float, runtime: str
) -> dict[str, Any]:
    """One instance as `describe` shows it: the slot's state, the live handle's facts, the runtime's details."""
    wait = slot.next_start_at - now if slot.phase == "absent" else 0
    return {
        "id": f"{slot.service}-{slot.index}",
        "index": slot.index,
        "phase": slot.phase,
        "state": slot.state,
        "healthy": slot.healthy,
        "health_failures": slot.health_failures,
        "version": slot.version,
        "pid": inspect.get("pid") if slot.phase in ("running", "stopping") else None,
        "ports": live.ports if slot.phase != "absent" else {},
        "restarts": slot.restarts,
        "reason": slot.reason,
        "started_at": live.started_wall if slot.phase != "absent" else None,
        "next_start_in_s": round(wait, 1) if wait > 0 and slot.state not in ("failed", "exited") else None,
        "last_exit": live.last_exit,
        "adopted": inspect.get("adopted", False),
        "cgroup": inspect.get("cgroup"),
        "runtime": inspect.get("runtime", runtime),
        **{k: inspect[k] for k in _RUNTIME_KEYS if k in inspect},
        "stats": dataclasses.asdict(stats) if stats else None,
        "health": [h.to_dict() for h in live.health],
    }
