"""Rates from counters: per-second deltas with wrap-around and reset handling, and CPU percentages.

Pure functions; the caller passes both readings and their (monotonic) times.

Theory of operation: a counter only grows. When a new reading is smaller than the previous one, it
either wrapped (a 32- or 64-bit counter passed its maximum) or was reset (the process restarted, the
interface went down and up). A wrap is assumed only when the previous reading was in the top half of
its width's range, which is where a wrap can start from; otherwise it is a reset, and the new reading
itself is the increase since the reset (Prometheus's `rate()` makes the same choice).
"""

from __future__ import annotations

from dataclasses import dataclass

WRAP_32 = 2**32
WRAP_64 = 2**64


def counter_delta(prev: float, cur: float) -> float:
    """The increase of a counter from `prev` to `cur`, allowing for a wrap or a reset in between."""
    if cur >= prev:
        return cur - prev
    for width in (WRAP_32, WRAP_64):
        if prev < width:
            if prev >= width / 2:
                return width - prev + cur  # wrapped past the top of a `width` counter
            break
    return cur  # reset: it counted up from zero again


def counter_rate(prev: tuple[float, float] | None, cur: tuple[float, float]) -> float | None:
    """Per-second rate between two `(time_s, value)` readings; None without a usable previous reading."""
    if prev is None:
        return None
    dt = cur[0] - prev[0]
    if dt <= 0:
        return None
    return counter_delta(prev[1], cur[1]) / dt


def cpu_percent(prev_cpu_s: float, cur_cpu_s: float, dt_s: float, *, cores: int = 1) -> float | None:
    """CPU use over `dt_s` seconds of wall time as a percentage of one core (100 = one core busy).

    `cores` > 1 divides by the number of cores (host-wide figures). A CPU-time counter that went
    back (a restarted process) counts from zero.
    """
    if dt_s <= 0:
        return None
    used = cur_cpu_s - prev_cpu_s if cur_cpu_s >= prev_cpu_s else cur_cpu_s
    return max(0.0, 100.0 * used / dt_s / max(1, cores))


@dataclass
class RateTracker:
    """Remembers the last reading of each counter (by key) and turns the next one into a rate.

    Keys not seen (nor kept) in a tick are forgotten by `sweep`, so a vanished interface or instance frees its
    slot and a reappearing one starts fresh rather than producing a rate across the gap.
    """

    def __post_init__(self) -> None:
        self._last: dict[object, tuple[float, float]] = {}
        self._seen: set[object] = set()

    def rate(self, key: object, t: float, value: float) -> float | None:
        prev = self._last.get(key)
        self._last[key] = (t, value)
        self._seen.add(key)
        return counter_rate(prev, (t, value))

    def keep(self, key: object) -> None:
        """Count `key` as seen this tick without a reading (its source was skipped, not gone): its last
        reading stays, so the next one gives a rate across the gap instead of starting afresh."""
        if key in self._last:
            self._seen.add(key)

    def sweep(self) -> None:
        for key in self._last.keys() - self._seen:
            del self._last[key]
        self._seen = set()

    def __len__(self) -> int:
        return len(self._last)
