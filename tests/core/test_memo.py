"""The bounded memo (core/memo.py): remembers, stays bounded, computes each key once per generation."""

from __future__ import annotations

import pytest

from core.memo import BoundedMemo


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
    memo = BoundedMemo(len, 64)
    for i in range(10_000):
        memo(b"host-%d.example" % i)
    assert len(memo) <= 64


def test_rejects_zero_size() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        BoundedMemo(str, 0)
