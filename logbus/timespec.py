"""Points in time for log queries: the platform's one parser, `core.timespec` (kept here so logbus's
callers and imports stay as they were)."""

from __future__ import annotations

from core.timespec import FORMS, parse_time

__all__ = ["FORMS", "parse_time"]
