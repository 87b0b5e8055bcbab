"""Certificate metadata in the state DB (`certd_certs`): one row per certificate, keyed by its name
(the first of its DNS names). The PEM files live beside, under `<data>/certs/`."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, replace
from typing import Any

from certd.schedule import CertState, Source
from core.hostnames import wildcard_for
from core.store import Migration, Store

MIGRATIONS = [
    Migration(
        1,
        "certificates",
        """
        CREATE TABLE certd_certs (
            name TEXT PRIMARY KEY,
            names TEXT NOT NULL,
            source TEXT CHECK (source IN ('acme', 'imported', 'self-signed')),
            origin TEXT NOT NULL CHECK (origin IN ('wanted', 'api', 'import')),
            auto INTEGER NOT NULL DEFAULT 1,
            serial TEXT NOT NULL DEFAULT '',
            not_before REAL,
            not_after REAL,
            issuer TEXT NOT NULL DEFAULT '',
            fingerprint TEXT NOT NULL DEFAULT '',
            failures INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            last_attempt_at REAL,
            next_attempt_at REAL,
            last_issued_at REAL,
            last_warned_at REAL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        """,
    ),
    Migration(
        2,
        "ACME renewal information",
        """
        ALTER TABLE certd_certs ADD COLUMN ari_id TEXT NOT NULL DEFAULT '';
        ALTER TABLE certd_certs ADD COLUMN ari_window_start REAL;
        ALTER TABLE certd_certs ADD COLUMN ari_window_end REAL;
        ALTER TABLE certd_certs ADD COLUMN ari_renew_at REAL;
        ALTER TABLE certd_certs ADD COLUMN ari_next_check_at REAL;
        ALTER TABLE certd_certs ADD COLUMN ari_error TEXT;
        """,
    ),
]

_COLUMNS = (
    "name",
    "names",
    "source",
    "origin",
    "auto",
    "serial",
    "not_before",
    "not_after",
    "issuer",
    "fingerprint",
    "failures",
    "last_error",
    "last_attempt_at",
    "next_attempt_at",
    "last_issued_at",
    "last_warned_at",
    "created_at",
    "updated_at",
    "ari_id",
    "ari_window_start",
    "ari_window_end",
    "ari_renew_at",
    "ari_next_check_at",
    "ari_error",
)


@dataclass(frozen=True)
class CertRecord:
    name: str
    names: tuple[str, ...]
    origin: str
    created_at: float
    updated_at: float
    source: Source | None = None
    auto: bool = True
    serial: str = ""
    not_before: float | None = None
    not_after: float | None = None
    issuer: str = ""
    fingerprint: str = ""
    failures: int = 0
    last_error: str | None = None
    last_attempt_at: float | None = None
    next_attempt_at: float | None = None
    last_issued_at: float | None = None
    last_warned_at: float | None = None
    # ACME Renewal Information (RFC 9773) of the current certificate: its id ("" when it has none),
    # the CA's last suggested window, the time picked inside it, when to ask again, the last problem.
    ari_id: str = ""
    ari_window_start: float | None = None
    ari_window_end: float | None = None
    ari_renew_at: float | None = None
    ari_next_check_at: float | None = None
    ari_error: str | None = None

    def state(self) -> CertState:
        return CertState(
            source=self.source,
            not_after=self.not_after,
            not_before=self.not_before,
            serial=self.serial,
            failures=self.failures,
            next_attempt_at=self.next_attempt_at,
            last_issued_at=self.last_issued_at,
            last_warned_at=self.last_warned_at,
            auto=self.auto,
            ari_renew_at=self.ari_renew_at,
            ari_window_end=self.ari_window_end,
        )

    def new_certificate(self) -> dict[str, Any]:
        """The ARI fields reset for a new certificate (`with_(**rec.new_certificate(), ...)`)."""
        return {
            "ari_window_start": None,
            "ari_window_end": None,
            "ari_renew_at": None,
            "ari_next_check_at": None,
            "ari_error": None,
        }

    def covers(self, name: str) -> bool:
        if name in self.names:
            return True
        wild = wildcard_for(name)
        return wild is not None and wild in self.names

    def with_(self, **changes: Any) -> CertRecord:
        return replace(self, **changes)

    def status(self, now: float, expiring_warn_s: float) -> str:
        """valid | expiring | expired | self-signed | pending | failed."""
        if self.source in ("acme", "imported") and self.not_after is not None:
            if self.not_after <= now:
                return "expired"
            return "expiring" if self.not_after - now < expiring_warn_s else "valid"
        if self.source == "self-signed":
            return "self-signed"
        return "failed" if self.failures else "pending"

    def to_api(self, now: float, expiring_warn_s: float) -> dict[str, Any]:
        return {
            "name": self.name,
            "names": list(self.names),
            "status": self.status(now, expiring_warn_s),
            "source": self.source,
            "origin": self.origin,
            "auto_renew": self.auto and self.source != "imported",
            "serial": self.serial or None,
            "issuer": self.issuer or None,
            "not_before": self.not_before,
            "not_after": self.not_after,
            "days_left": None if self.not_after is None else round((self.not_after - now) / 86400, 1),
            "fingerprint_sha256": self.fingerprint or None,
            "failures": self.failures,
            "last_error": self.last_error,
            "last_attempt_at": self.last_attempt_at,
            "next_attempt_at": self.next_attempt_at,
            "last_issued_at": self.last_issued_at,
            "ari": None
            if not self.ari_id
            else {
                "id": self.ari_id,
                "window_start": self.ari_window_start,
                "window_end": self.ari_window_end,
                "renew_at": self.ari_renew_at,
                "next_check_at": self.ari_next_check_at,
                "error": self.ari_error,
            },
        }


def _from_row(row: sqlite3.Row) -> CertRecord:
    d = dict(row)
    d["names"] = tuple(json.loads(d["names"]))
    d["auto"] = bool(d["auto"])
    return CertRecord(**d)


class CertRecords:
    """Reads and writes of `certd_certs`. Safe for concurrent use by tasks of one loop (the store
    serializes writes)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def migrate(self) -> None:
        await self._store.migrate("certd", MIGRATIONS)

    async def all(self) -> list[CertRecord]:
        rows = await self._store.fetchall(f"SELECT {', '.join(_COLUMNS)} FROM certd_certs ORDER BY name")
        return [_from_row(r) for r in rows]

    async def get(self, name: str) -> CertRecord | None:
        row = await self._store.fetchone(f"SELECT {', '.join(_COLUMNS)} FROM certd_certs WHERE name = ?", (name,))
        return _from_row(row) if row else None

    async def put(self, rec: CertRecord) -> None:
        values = [getattr(rec, c) for c in _COLUMNS]
        values[_COLUMNS.index("names")] = json.dumps(list(rec.names))
        values[_COLUMNS.index("auto")] = int(rec.auto)
        async with self._store.transaction() as db:
            await db.execute(
                f"INSERT OR REPLACE INTO certd_certs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                values,
            )

    async def update(self, name: str, **changes: Any) -> None:
        """Set only these columns of one row (no lost update of the others); a missing row is a no-op."""
        bad = set(changes) - set(_COLUMNS) - {"names"}
        if bad or "name" in changes:
            raise ValueError(f"cannot update {sorted(bad) or ['name']}")
        values = [json.dumps(list(v)) if k == "names" else int(v) if k == "auto" else v for k, v in changes.items()]
        async with self._store.transaction() as db:
            await db.execute(
                f"UPDATE certd_certs SET {', '.join(f'{k} = ?' for k in changes)} WHERE name = ?", [*values, name]
            )

    async def delete(self, name: str) -> None:
        async with self._store.transaction() as db:
            await db.execute("DELETE FROM certd_certs WHERE name = ?", (name,))
