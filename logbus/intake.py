"""The bounded hand-off between producers (pump thread, `append`, the gate's access log) and the
writer thread: a deque guarded by one lock, bounded in bytes. `offer` never waits: when the bound is
reached it says no, and the producer counts the lines as dropped."""

from __future__ import annotations

import threading
from collections import deque
from typing import Any


class Intake:
    """Items waiting for the writer. Safe for any number of producer threads and one consumer."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: deque[tuple[Any, int]] = deque()
        self._bytes = 0
        self._cv = threading.Condition(threading.Lock())
        self._consumer_waiting = False

    @property
    def pending_bytes(self) -> int:
        return self._bytes

    def offer(self, item: Any, nbytes: int, *, force: bool = False) -> bool:
        """Queue `item` (accounted as `nbytes`) unless that passes the bound; `force` for small markers
        and control items, which must not be lost. Returns at once."""
        with self._cv:
            if not force and self._bytes + nbytes > self.max_bytes:
                return False
            self._items.append((item, nbytes))
            self._bytes += nbytes
            if self._consumer_waiting:
                self._cv.notify()
        return True

    def take(self, max_bytes: int, timeout: float) -> list[Any]:
        """Up to about `max_bytes` of items (at least one if any), waiting up to `timeout` for the first."""
        with self._cv:
            if not self._items:
                self._consumer_waiting = True
                try:
                    self._cv.wait(timeout)
                finally:
                    self._consumer_waiting = False
            out: list[Any] = []
            taken = 0
            while self._items and (not out or taken < max_bytes):
                item, n = self._items.popleft()
                out.append(item)
                taken += n
            self._bytes -= taken
            return out
