"""The contract between the composition root and each long-running part of the platform."""

from __future__ import annotations

from typing import Protocol


class Component(Protocol):
    """A part the composition root starts and stops in dependency order.

    `start()` returns once the component is serving (listeners bound, tasks spawned) or raises
    `StartupError`; it must not block for the component's lifetime. `stop()` stops accepting work,
    drains in-flight work within `drain_timeout_s`, flushes, and releases every resource; it is
    called once, in reverse start order, and must not raise on a half-started component.
    """

    name: str

    async def start(self) -> None: ...

    async def stop(self, drain_timeout_s: float) -> None: ...
