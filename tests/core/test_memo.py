"""The bounded caches (core/memo.py): remember, stay bounded, compute each key once per generation."""

from __future__ import annotations

import pytest

from core.memo import BoundedMap, BoundedMemo, RecentSet


def test_remembers_and_stays_bounded() -> None:
    calls: list[int] = []

    def square(x: int) -> int:
        calls.append(x)
        return x * x

    memo = BoundedMemo(square, 3)
    assert [memo(2), memo(2), memo(3)] == [4, 4, 9]
    assert calls == [2, 3]
    for x in range(100):
        memo(x)
        assert len(memo) <= 3
    assert memo(99) == 99 * 99 and calls[-1] == 99  # the last key is still there


def test_none_is_a_value() -> None:
    calls: list[str] = []

    def parse(s: str) -> int | None:
        calls.append(s)
        return int(s) if s.isdigit() else None

    memo = BoundedMemo(parse, 10)
    assert memo("x") is None and memo("x") is None
    assert calls == ["x"]


def test_data_alias_survives_resets() -> None:
    memo = BoundedMemo(str, 2)
    alias = memo.data
    for x in range(10):
        memo(x)
    assert alias is memo.data and len(alias) <= 2


def test_hostile_keys_do_not_grow_it() -> None:
    memo: BoundedMemo[bytes, int] = BoundedMemo(len, 64)
    for i in range(10_000):
        memo(b"host-%d.example" % i)
    assert len(memo) <= 64


def test_rejects_zero_size() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        BoundedMemo(str, 0)


def test_bounded_map_put_stays_bounded_and_overwrites_without_reset() -> None:
    m: BoundedMap[int, str] = BoundedMap(3)
    for i in range(3):
        m.put(i, str(i))
    m.put(2, "two")  # a key already held: no reset
    assert len(m) == 3 and m.get(0) == "0" and m.get(2) == "two"
    m.put(3, "3")  # full: emptied, then the new key
    assert len(m) == 1 and m.get(0) is None and m.get(3) == "3"
    for i in range(1000):
        m.put(i, "x")
        assert len(m) <= 3


def test_recent_set_drops_the_least_recent() -> None:
    s: RecentSet[str] = RecentSet(3)
    for k in "abc":
        s.add(k)
    assert s.hit("a")  # now the most recent: "b" is the oldest
    s.add("d")
    assert "b" not in s and all(k in s for k in "acd") and len(s) == 3
    assert not s.hit("b")
    s.add("c")  # re-adding makes it the most recent, without growing
    s.add("e")
    assert "a" not in s and all(k in s for k in "cde")


def test_recent_set_membership_does_not_refresh() -> None:
    s: RecentSet[int] = RecentSet(2)
    s.add(1)
    s.add(2)
    assert 1 in s  # `in` looks only
    s.add(3)
    assert 1 not in s and 2 in s and 3 in s


def test_recent_set_hostile_keys_do_not_grow_it_or_evict_a_fresh_key_early() -> None:
    s: RecentSet[bytes] = RecentSet(64)
    s.add(b"kept")
    for i in range(10_000):
        s.add(b"k%d" % i)
        assert s.hit(b"kept")  # touched every time: never the least recent
    assert len(s) == 64


@pytest.mark.parametrize("cls", [BoundedMap, RecentSet])
def test_other_kinds_reject_zero_size(cls: type) -> None:
    with pytest.raises(ValueError, match="max_entries"):
        cls(0)
