"""Orch's tables in the state DB: services (desired state) and every applied spec version."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from core.store import Migration, Store
from orch.deployrepo import MIGRATION as DEPLOY_MIGRATION
from orch.spec import ServiceSpec

MIGRATIONS = [
    Migration(
        1,
        "services and spec versions",
        """
CREATE TABLE orch_services (
    name TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    desired TEXT NOT NULL CHECK (desired IN ('running', 'stopped')),
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    restarts INTEGER NOT NULL DEFAULT 0,
    last_exit TEXT
);
CREATE TABLE orch_spec_versions (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    spec TEXT NOT NULL,          -- the validated spec as JSON
    source TEXT NOT NULL,        -- the YAML as applied
    filename TEXT NOT NULL,
    applied_at REAL NOT NULL,
    applied_by TEXT,
    PRIMARY KEY (name, version)
);
""",
    ),
    DEPLOY_MIGRATION,
]


@dataclass
class ServiceRow:
    name: str
    version: int
    desired: str
    spec: ServiceSpec
    created_at: float
    updated_at: float
    restarts: int
    last_exit: dict[str, Any] | None


class OrchRepo:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def migrate(self) -> None:
        await self.store.migrate("orch", MIGRATIONS)

    async def load(self) -> list[ServiceRow]:
        rows = await self.store.fetchall(
            "SELECT s.*, v.spec FROM orch_services s JOIN orch_spec_versions v "
            "ON v.name = s.name AND v.version = s.version ORDER BY s.name"
        )
        return [
            ServiceRow(
                r["name"],
                r["version"],
                r["desired"],
                ServiceSpec.model_validate_json(r["spec"], context={"stored": True}),
                r["created_at"],
                r["updated_at"],
                r["restarts"],
                json.loads(r["last_exit"]) if r["last_exit"] else None,
            )
            for r in rows
        ]

    async def save_version(
        self, spec: ServiceSpec, source: str, filename: str, actor: str | None, *, current: bool = True
    ) -> int:
        """Store `spec` as the service's next version and (with `current`) make it current; returns the
        version. A rolling deploy saves it not current and calls `set_current` once it serves."""
        now = time.time()
        async with self.store.transaction() as db:
            cur = await db.execute(
                "SELECT COALESCE(MAX(version), 0) FROM orch_spec_versions WHERE name = ?", (spec.name,)
            )
            row = await cur.fetchone()
            assert row is not None  # an aggregate without GROUP BY always yields one row
            version = int(row[0]) + 1
            await db.execute(
                "INSERT INTO orch_spec_versions (name, version, spec, source, filename, applied_at, applied_by) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (spec.name, version, spec.model_dump_json(), source, filename, now, actor),
            )
            if not current:
                return version
            await db.execute(
                "INSERT INTO orch_services (name, version, desired, created_at, updated_at) "
                "VALUES (?, ?, 'running', ?, ?) ON CONFLICT(name) DO UPDATE SET version = excluded.version, "
                "updated_at = excluded.updated_at",
                (spec.name, version, now, now),
            )
        return version

    async def set_current(self, name: str, version: int) -> None:
        await self.store.execute(
            "UPDATE orch_services SET version = ?, updated_at = ? WHERE name = ?", (version, time.time(), name)
        )

    async def spec_version(self, name: str, version: int) -> ServiceSpec | None:
        r = await self.store.fetchone(
            "SELECT spec FROM orch_spec_versions WHERE name = ? AND version = ?", (name, version)
        )
        return None if r is None else ServiceSpec.model_validate_json(r["spec"], context={"stored": True})

    async def set_desired(self, name: str, desired: str) -> None:
        await self.store.execute(
            "UPDATE orch_services SET desired = ?, updated_at = ? WHERE name = ?", (desired, time.time(), name)
        )

    async def record_exit(self, name: str, restarts: int, last_exit: dict[str, Any]) -> None:
        await self.store.execute(
            "UPDATE orch_services SET restarts = ?, last_exit = ? WHERE name = ?",
            (restarts, json.dumps(last_exit), name),
        )

    async def delete(self, name: str) -> None:
        """Forget the service; its spec versions stay as history."""
        await self.store.execute("DELETE FROM orch_services WHERE name = ?", (name,))

    async def versions(self, name: str) -> list[dict[str, Any]]:
        rows = await self.store.fetchall(
            "SELECT version, filename, applied_at, applied_by, source FROM orch_spec_versions WHERE name = ? "
            "ORDER BY version DESC",
            (name,),
        )
        return [dict(r) for r in rows]
