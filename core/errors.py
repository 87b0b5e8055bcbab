"""One error base with a stable code, a human message, a hint on how to fix it and an HTTP status.

The console API renders every `InfraError` as `{"error": {"code", "message", "details"}}`; the CLI
prints `message` and `hint`. Errors caused by the peer (bad input) are distinguishable from ours by
their status (4xx vs 5xx).
"""

from __future__ import annotations

import errno
import sqlite3
from typing import Any


class InfraError(Exception):
    """Base of every error the platform reports to a person or a client."""

    code: str = "internal"
    status: int = 500

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        details: dict[str, Any] | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = dict(details or {})
        if code is not None:
            self.code = code
        if hint:
            self.details.setdefault("hint", hint)

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(InfraError):
    code = "bad_request"
    status = 400


class ValidationFailed(BadRequest):
    code = "validation_failed"


class Unauthorized(InfraError):
    code = "unauthorized"
    status = 401


class Forbidden(InfraError):
    code = "forbidden"
    status = 403


class NotFound(InfraError):
    code = "not_found"
    status = 404


class Conflict(InfraError):
    code = "conflict"
    status = 409


class PayloadTooLarge(InfraError):
    code = "payload_too_large"
    status = 413


class Throttled(InfraError):
    code = "throttled"
    status = 429

    def __init__(self, message: str, *, retry_after_s: float, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after_s = retry_after_s
        self.details.setdefault("retry_after_s", round(retry_after_s, 1))


class Unavailable(InfraError):
    code = "unavailable"
    status = 503


class InsufficientStorage(InfraError):
    """The disk holding the data dir is full (HTTP 507): free space and retry."""

    code = "insufficient_storage"
    status = 507


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` (or what it was raised from) is the file system being full: ENOSPC/EDQUOT from
    the OS, or SQLite's SQLITE_FULL ("database or disk is full")."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(e, sqlite3.Error) and (
            getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(e)
        ):
            return True
        e = e.__cause__ or e.__context__
    return False


class StartupError(InfraError):
    """The platform cannot start (port taken, data dir not writable, instance already running)."""

    code = "startup_failed"
    status = 500
