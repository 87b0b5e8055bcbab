"""The event bus: typed events, persisted with increasing ids, fanned out to subscribers.

Theory of operation: `publish` inserts the event into the `events` table (which assigns its id) and
then hands it to every live subscriber's bounded queue without awaiting, all under one lock, so
subscribers see ids in increasing order. A subscriber whose queue is full is not waited for: it is
switched back to *replay*, where it reads what it missed from the table, and then rejoins the live
feed. So a slow subscriber never stalls publishers and never loses events (within retention), and a
subscriber that starts from an id (SSE `Last-Event-ID`) gets exactly the events after it, in order.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from typing import Any, ClassVar

import structlog

from core.clock import Clock, SystemClock
from core.store import Store

log = structlog.get_logger("core.bus")

_REPLAY_PAGE = 500


@dataclass(frozen=True)
class DomainEvent:
    """Base of typed events: subclasses are frozen dataclasses with a `type` like `cert.issued`."""

    type: ClassVar[str] = ""

    def payload(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Event:
    """An event as stored and delivered: its id orders it among all events."""

    id: int
    type: str
    at: float
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "at": self.at, "data": self.data}


_WAKE = Event(-1, "", 0.0, {})


class Subscription:
    """An async iterator of events after `after_id`. Close it (or leave the `async with`) when done."""

    def __init__(self, bus: EventBus, after_id: int, types: Collection[str] | None, queue_size: int) -> None:
        self._bus = bus
        self.last_id = after_id
        self._types = frozenset(types) if types else None
        self._queue: asyncio.Queue[Event] = asyncio.Queue(queue_size)
        self._replaying = True
        self._backlog: list[Event] = []
        self.closed = False
        self.lagged_count = 0

    def _offer(self, event: Event) -> None:
        """Called by the bus for each new event; never blocks."""
        if self._replaying:
            return  # the replay will read it from the table
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            # Too slow: drop the live queue and fall back to reading the table from last_id.
            self.lagged_count += 1
            self._fall_behind()

    def _go_live(self) -> None:
        self._replaying = False

    def _fall_behind(self) -> None:
        self._replaying = True
        while not self._queue.empty():
            self._queue.get_nowait()

    def _wanted(self, event: Event) -> bool:
        return self._types is None or event.type in self._types

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self.closed:
                raise StopAsyncIteration
            if self._backlog:
                event = self._backlog.pop(0)
            elif self._replaying:
                page = await self._bus.read_after(self.last_id, _REPLAY_PAGE)
                if len(page) < _REPLAY_PAGE:
                    # Caught up as of that read. Events published while it ran were not queued, so
                    # switch to live first, then read once more: everything is now either in that
                    # second read or in the queue, and the id check below drops what is in both.
                    self._go_live()
                    tail = await self._bus.read_after(page[-1].id if page else self.last_id, _REPLAY_PAGE)
                    if len(tail) == _REPLAY_PAGE:
                        self._fall_behind()
                    page += tail
                self._backlog = page
                continue
            else:
                event = await self._queue.get()
            if event.id <= self.last_id:
                continue
            self.last_id = event.id
            if self._wanted(event):
                return event

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._bus._subscribers.discard(self)
        # Wake a reader blocked on the queue so it sees `closed`.
        self._fall_behind()
        self._queue.put_nowait(_WAKE)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    def __init__(self, store: Store, *, clock: Clock | None = None, queue_size: int = 1024) -> None:
        self._store = store
        self._clock = clock or SystemClock()
        self._queue_size = queue_size
        self._subscribers: set[Subscription] = set()
        self._lock = asyncio.Lock()
        self._last_id = 0

    async def publish(self, event: DomainEvent | str, data: dict[str, Any] | None = None) -> Event:
        """Persist the event and deliver it to subscribers. Returns it with its id."""
        if isinstance(event, DomainEvent):
            etype, payload = event.type, event.payload()
        else:
            etype, payload = event, dict(data or {})
        if not etype:
            raise ValueError("event type is empty")
        at = self._clock.now()
        body = json.dumps(payload, separators=(",", ":"), default=str)
        async with self._lock:
            async with self._store.transaction() as db:
                cur = await db.execute("INSERT INTO events (type, at, data) VALUES (?, ?, ?)", (etype, at, body))
                event_id = int(cur.lastrowid or 0)
            self._last_id = event_id
            stored = Event(event_id, etype, at, json.loads(body))
            for sub in list(self._subscribers):
                sub._offer(stored)
        return stored

    def subscribe(
        self, *, after_id: int | None = None, types: Collection[str] | None = None, queue_size: int | None = None
    ) -> Subscription:
        """Events with ids above `after_id` (None: only events published from now on).

        With `after_id=None` the subscription starts at the newest id the bus has handed out; call it
        from the loop (it is synchronous so that no event can slip between asking and subscribing).
        """
        start = self.last_id if after_id is None else max(0, after_id)
        sub = Subscription(self, start, types, queue_size or self._queue_size)
        if after_id is None:
            sub._go_live()
        self._subscribers.add(sub)
        return sub

    @property
    def last_id(self) -> int:
        """The id of the newest event published (or found in the table at start)."""
        return self._last_id

    async def start(self) -> None:
        row = await self._store.fetchone("SELECT COALESCE(MAX(id), 0) FROM events")
        self._last_id = int(row[0]) if row else 0

    async def read_after(self, after_id: int, limit: int) -> list[Event]:
        rows = await self._store.fetchall(
            "SELECT id, type, at, data FROM events WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
        )
        return [Event(r["id"], r["type"], r["at"], json.loads(r["data"])) for r in rows]

    async def read_up_to_now(
        self, *, after_id: int | None, types: Collection[str] | None, newest: int
    ) -> AsyncIterator[Event]:
        """The events there are now (ids up to `last_id` as of the call), of `types` if given, in id order:
        those after `after_id`, or without one the `newest` of them. For a reader that does not follow."""
        until = self._last_id
        where = "id <= ?"
        params: list[int | str] = [until]
        if types:
            where += f" AND type IN ({','.join('?' * len(types))})"
            params += list(types)
        if after_id is None:
            rows = await self._store.fetchall(
                f"SELECT id, type, at, data FROM events WHERE {where} ORDER BY id DESC LIMIT ?", (*params, newest)
            )
            for r in reversed(rows):
                yield Event(r["id"], r["type"], r["at"], json.loads(r["data"]))
            return
        cursor = max(0, after_id)
        while cursor < until:
            rows = await self._store.fetchall(
                f"SELECT id, type, at, data FROM events WHERE {where} AND id > ? ORDER BY id LIMIT ?",
                (*params, cursor, _REPLAY_PAGE),
            )
            for r in rows:
                yield Event(r["id"], r["type"], r["at"], json.loads(r["data"]))
            if len(rows) < _REPLAY_PAGE:
                return
            cursor = rows[-1]["id"]

    async def prune(self, keep: int) -> int:
        """Delete all but the newest `keep` events; returns how many went."""
        async with self._store.transaction() as db:
            cur = await db.execute(
                "DELETE FROM events WHERE id <= (SELECT COALESCE(MAX(id), 0) FROM events) - ?", (keep,)
            )
            return cur.rowcount

    def close(self) -> None:
        """End every subscription (their iterators stop)."""
        for sub in list(self._subscribers):
            sub.close()
