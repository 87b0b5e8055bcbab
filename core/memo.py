"""Small bounded caches for hot paths: `BoundedMemo` for pure functions of hashable keys that see the
same few values again and again (Host headers, label sets), `BoundedMap` for values computed elsewhere
(awaited), both emptied when full; `RecentSet`, an LRU set for keys costly to earn (verified passwords)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedMap(Generic[K, V]):
    """A dict of at most `max_entries` keys, emptied when full: memory stays bounded without per-hit
    bookkeeping, and keys that stop arriving drop out at the next reset. `data` is a plain dict that is
    only ever cleared, never replaced, so a hot path can alias it once and read it directly."""

    __slots__ = ("data", "max_entries")

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.data: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        return self.data.get(key)

    def put(self, key: K, value: V) -> None:
        """Remember `value` for `key`, emptying the map first when it is full."""
        if len(self.data) >= self.max_entries and key not in self.data:
            self.data.clear()
        self.data[key] = value

    def __len__(self) -> int:
        return len(self.data)


class BoundedMemo(BoundedMap[K, V]):
    """`memo(key)` is `fn(key)`, remembered for up to `max_entries` keys.

    Hot paths may read `memo.data` and call `memo.miss(key)` on a KeyError; that costs nothing over a
    bare dict.
    """

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[K], V], max_entries: int) -> None:
        super().__init__(max_entries)
        self.fn = fn

    def __call__(self, key: K) -> V:
        try:
            return self.data[key]
        except KeyError:
            return self.miss(key)

    def miss(self, key: K) -> V:
        """Compute, remember (emptying the memo first when it is full) and return `fn(key)`."""
        value = self.fn(key)
        self.put(key, value)
        return value


class RecentSet(Generic[K]):
    """At most `max_entries` keys, the least recently seen dropped first (an LRU set): for keys that are
    costly to earn, where one newcomer must not make every other key be earned again."""

    __slots__ = ("data", "max_entries")

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.data: OrderedDict[K, None] = OrderedDict()

    def hit(self, key: K) -> bool:
        """Whether `key` is held; a held key becomes the most recent."""
        data = self.data
        if key in data:
            data.move_to_end(key)
            return True
        return False

    def add(self, key: K) -> None:
        """Hold `key` as the most recent, dropping the least recent beyond `max_entries`."""
        data = self.data
        data[key] = None
        data.move_to_end(key)
        while len(data) > self.max_entries:
            data.popitem(last=False)

    def __contains__(self, key: object) -> bool:  # (does not make the key recent)
        return key in self.data

    def __len__(self) -> int:
        return len(self.data)
