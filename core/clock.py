"""Time as a port: components take a `Clock` so pure logic and tests can pass `now` in."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock seconds since the epoch (for records people read)."""

    def monotonic(self) -> float:
        """Monotonic seconds (for timeouts, rates and back-off)."""


class SystemClock:
    # The functions themselves, not methods calling them: `clock.now` is read on the gate's per-request
    # path (access-log timestamps), where a Python frame costs more than the clock.
    now = staticmethod(time.time)
    monotonic = staticmethod(time.monotonic)


class ManualClock:
    """A clock that moves only when told to: the fake for tests of time-driven logic."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._mono = 0.0

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._mono += seconds
