"""A small bounded memo for pure functions of hashable keys that see the same few values again and again
(Host headers, label sets): a dict that is emptied when full, so memory stays bounded without per-hit
bookkeeping, and values that stop arriving drop out at the next reset."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedMemo(Generic[K, V]):
    """`memo(key)` is `fn(key)`, remembered for up to `max_entries` keys.

    Hot paths may read `memo.data` (a plain dict that is only ever cleared, never replaced, so a module
    can alias it once) and call `memo.miss(key)` on a KeyError; that costs nothing over a bare dict.
    """

    __slots__ = ("data", "fn", "max_entries")

    def __init__(self, fn: Callable[[K], V], max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.fn = fn
        self.max_entries = max_entries
        self.data: dict[K, V] = {}

    def __call__(self, key: K) -> V:
        try:
            return self.data[key]
        except KeyError:
            return self.miss(key)

    def miss(self, key: K) -> V:
        """Compute, remember (emptying the memo first when it is full) and return `fn(key)`."""
        value = self.fn(key)
        if len(self.data) >= self.max_entries:
            self.data.clear()
        self.data[key] = value
        return value

    def __len__(self) -> int:
        return len(self.data)
