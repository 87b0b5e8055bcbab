"""The CLI's pure parts: sizes, the progress line, and the argument parser of every snap command."""

from __future__ import annotations

import time
from typing import Any

import pytest

from fsctl.__main__ import build_parser
from fsctl.cli_snap import progress_line, size


@pytest.mark.parametrize(
    "n, text",
    [
        (None, "-"),
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (5 * 1024 * 1024, "5.0 MiB"),
        (3 * 1024**4, "3.0 TiB"),
    ],
)
def test_size(n: float | None, text: str) -> None:
    assert size(n) == text


def test_progress_line_with_and_without_a_known_total() -> None:
    job: dict[str, Any] = {
        "started_at": time.time() - 2,
        "progress": {"files": 3, "bytes": 50 * 1024 * 1024, "new_bytes": 1024, "expected_bytes": 100 * 1024 * 1024},
    }
    line = progress_line(job, width=10)
    assert line.startswith("[#####.....]  50.0%") and "3 files, 50.0 MiB (1.0 KiB new)" in line
    job["progress"]["expected_bytes"] = 0
    assert progress_line(job).startswith("3 files, 50.0 MiB")
    job["progress"] = {"bytes": 300, "expected_bytes": 100}  # grew since the last snapshot: capped at 100 %
    assert "100.0%" in progress_line(job)


@pytest.mark.parametrize(
    "argv",
    [
        [
            "snap",
            "plan",
            "add",
            "--name",
            "app-daily",
            "--paths",
            "/srv/data/app",
            "--keep-daily",
            "7",
            "--cron",
            "0 3 * * *",
        ],
        ["snap", "plan", "ls"],
        ["snap", "plan", "rm", "x"],
        ["snap", "run", "x", "--no-wait"],
        ["snap", "ls", "--json"],
        ["snap", "restore", "--id", "abcd", "--target", "/tmp/x", "--shadow"],
        ["snap", "scrub", "--all"],
        ["snap", "forget", "--dry-run"],
        ["snap", "prune"],
        ["snap", "shadow", "ls"],
        ["snap", "shadow", "rm", "a"],
        ["snap", "runs"],
    ],
)
def test_parser(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert callable(args.func)


def test_parser_refuses_missing_id() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["snap", "restore", "--target", "/tmp/x"])
