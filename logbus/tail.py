"""Live tail: the writer's batches fanned out, on the loop, to each subscriber's bounded queue.

A subscriber that falls behind by more than its byte budget *skips ahead*: its queued batches are
discarded and replaced by one `skipped N lines` marker, then it continues with the newest batch. The
writer and the pumps never wait for a subscriber.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Batch:
    """Records just written to [start, end) of a file, as line records (see `logbus.records.expand`:
    `data` may be longer than end - start when the file holds them as chunks)."""

    file_id: int
    start: int
    end: int
    data: bytes


@dataclass(frozen=True)
class Skipped:
    lines: int


class TailSubscription:
    """Batches of one service as they are written. Loop-only; iterate with `get()`, then `close()`."""

    def __init__(self, hub: TailHub, service: str, max_bytes: int) -> None:
        self.hub = hub
        self.service = service
        self.max_bytes = max_bytes
        self._items: deque[Batch | Skipped] = deque()
        self._bytes = 0
        self._ready = asyncio.Event()
        self.closed = False
        self.skipped_lines = 0

    def push(self, batch: Batch) -> None:
        if self._bytes + len(batch.data) > self.max_bytes:
            lost = sum(i.data.count(b"\n") if isinstance(i, Batch) else i.lines for i in self._items)
            self._items.clear()
            self._bytes = 0
            if len(batch.data) > self.max_bytes:
                lost += batch.data.count(b"\n")
                self._items.append(Skipped(lost))
                self.skipped_lines += lost
                self._ready.set()
                return
            self._items.append(Skipped(lost))
            self.skipped_lines += lost
        self._items.append(batch)
        self._bytes += len(batch.data)
        self._ready.set()

    async def get(self, wait_s: float | None = None) -> list[Batch | Skipped]:
        """What arrived since the last call; [] on timeout or once closed."""
        if not self._items and not self.closed:
            try:
                await asyncio.wait_for(self._ready.wait(), wait_s)
            except TimeoutError:
                return []
        self._ready.clear()
        out = list(self._items)
        self._items.clear()
        self._bytes = 0
        return out

    def close(self) -> None:
        self.closed = True
        self._ready.set()
        self.hub._remove(self)


class TailHub:
    """Subscribers by service. `wants` may be called from the writer thread (a dict lookup); everything
    else runs on the loop."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._subs: dict[str, set[TailSubscription]] = {}

    def wants(self, service: str) -> bool:
        return service in self._subs

    def subscribe(self, service: str) -> TailSubscription:
        sub = TailSubscription(self, service, self.max_bytes)
        self._subs.setdefault(service, set()).add(sub)
        return sub

    def publish(self, service: str, file_id: int, start: int, end: int, data: bytes) -> None:
        for sub in list(self._subs.get(service, ())):
            sub.push(Batch(file_id, start, end, data))

    def _remove(self, sub: TailSubscription) -> None:
        subs = self._subs.get(sub.service)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.service]

    def close_all(self) -> None:
        for subs in list(self._subs.values()):
            for sub in list(subs):
                sub.close()

    def __len__(self) -> int:
        return sum(len(s) for s in self._subs.values())
