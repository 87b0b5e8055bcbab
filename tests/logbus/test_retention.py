"""Retention arithmetic: age first, then total size, oldest first."""

from __future__ import annotations

from logbus.retention import FileStat, plan_retention

DAY = 86400.0
NOW = 100 * DAY


def f(file_id: int, age_days: float, size: int, service: str = "web") -> FileStat:
    return FileStat(file_id, service, NOW - age_days * DAY - 3600, NOW - age_days * DAY, size)


def test_nothing_to_do() -> None:
    assert plan_retention([f(1, 1, 10)], now=NOW, max_age_s=14 * DAY, max_total_bytes=100) == []


def test_age_limit_removes_old_files_only() -> None:
    files = [f(1, 20, 10), f(2, 15, 10), f(3, 13, 10), f(4, 0, 10)]
    assert plan_retention(files, now=NOW, max_age_s=14 * DAY, max_total_bytes=10**9) == [1, 2]


def test_size_cap_removes_oldest_across_services_until_under() -> None:
    files = [f(1, 3, 40, "a"), f(2, 2, 40, "b"), f(3, 1, 40, "a"), f(4, 0, 40, "b")]
    assert plan_retention(files, now=NOW, max_age_s=14 * DAY, max_total_bytes=100) == [1, 2]
    assert plan_retention(files, now=NOW, max_age_s=14 * DAY, max_total_bytes=160) == []
    assert plan_retention(files, now=NOW, max_age_s=14 * DAY, max_total_bytes=159) == [1]


def test_age_and_size_together() -> None:
    files = [f(1, 30, 5), f(2, 3, 60), f(3, 1, 60)]
    assert plan_retention(files, now=NOW, max_age_s=14 * DAY, max_total_bytes=100) == [1, 2]


def test_a_single_file_over_the_cap_goes_too() -> None:
    assert plan_retention([f(1, 0, 500)], now=NOW, max_age_s=14 * DAY, max_total_bytes=100) == [1]
