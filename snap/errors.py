"""Snap's errors: each names what is wrong, where, and how to fix it (see core.errors)."""

from __future__ import annotations

from core.errors import BadRequest, Conflict, InfraError, NotFound


class RepositoryError(InfraError):
    """The repository cannot be used as it is (missing, unknown version, unreadable config)."""

    code = "snap_repository"
    status = 500


class DamagedData(InfraError):
    """A blob, pack, index or snapshot failed verification (hash, authentication tag, decoding)."""

    code = "snap_damaged"
    status = 500


class RepositoryLocked(Conflict):
    code = "snap_locked"


class WrongPassphrase(BadRequest):
    code = "snap_passphrase"


class SnapshotNotFound(NotFound):
    code = "snap_not_found"
