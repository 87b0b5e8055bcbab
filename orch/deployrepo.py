"""Orch's release and deployment tables: releases (immutable documents, one per spec version that
defines what runs) and deployments (status, actor, phase timestamps, step log)."""

from __future__ import annotations

import json
import time
from typing import Any

from core.store import Migration, Store

MIGRATION = Migration(
    2,
    "releases and deployments",
    """
CREATE TABLE orch_releases (
    name TEXT NOT NULL,
    release INTEGER NOT NULL,    -- the spec version it runs (orch_spec_versions.version)
    label TEXT NOT NULL,         -- ${version}
    doc TEXT NOT NULL,           -- orch.release.build_release, as JSON (no secret in clear)
    created_at REAL NOT NULL,
    created_by TEXT,
    PRIMARY KEY (name, release)
);
CREATE TRIGGER orch_releases_immutable BEFORE UPDATE ON orch_releases
BEGIN SELECT RAISE(ABORT, 'releases are immutable'); END;
CREATE TABLE orch_deployments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    service TEXT NOT NULL,
    release INTEGER NOT NULL,
    from_release INTEGER,
    kind TEXT NOT NULL,          -- deploy | rollback | apply
    strategy TEXT NOT NULL,
    status TEXT NOT NULL,
    actor TEXT,
    created_at REAL NOT NULL,
    finished_at REAL,
    phases TEXT NOT NULL DEFAULT '{}',
    log TEXT NOT NULL DEFAULT '[]',
    error TEXT
);
CREATE INDEX orch_deployments_service ON orch_deployments (service, id);
""",
)


def _deployment(r: Any) -> dict[str, Any]:
    d = dict(r)
    d["phases"] = json.loads(d["phases"])
    d["log"] = json.loads(d["log"])
    return d


class DeployRepo:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def add_release(self, name: str, release: int, label: str, doc: dict[str, Any], actor: str | None) -> None:
        await self.store.execute(
            "INSERT INTO orch_releases (name, release, label, doc, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?)",
            (name, release, label, json.dumps(doc), time.time(), actor),
        )

    async def release(self, name: str, release: int) -> dict[str, Any] | None:
        r = await self.store.fetchone("SELECT * FROM orch_releases WHERE name = ? AND release = ?", (name, release))
        return None if r is None else {**dict(r), "doc": json.loads(r["doc"])}

    async def releases(self, name: str) -> list[dict[str, Any]]:
        rows = await self.store.fetchall("SELECT * FROM orch_releases WHERE name = ? ORDER BY release DESC", (name,))
        return [{**dict(r), "doc": json.loads(r["doc"])} for r in rows]

    async def forget_releases(self, name: str, releases: list[int]) -> None:
        """Prune: whole releases go (a release is never changed, only forgotten)."""
        if releases:
            async with self.store.transaction() as db:
                await db.executemany(
                    "DELETE FROM orch_releases WHERE name = ? AND release = ?", [(name, r) for r in releases]
                )

    async def add_deployment(
        self, service: str, release: int, from_release: int | None, kind: str, strategy: str, actor: str | None
    ) -> int:
        cur = await self.store.execute(
            "INSERT INTO orch_deployments (service, release, from_release, kind, strategy, status, actor, created_at, "
            "phases) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
            (service, release, from_release, kind, strategy, actor, time.time(), json.dumps({"pending": time.time()})),
        )
        return int(cur.lastrowid or 0)

    async def save_deployment(self, d: dict[str, Any]) -> None:
        await self.store.execute(
            "UPDATE orch_deployments SET status = ?, finished_at = ?, phases = ?, log = ?, error = ? WHERE id = ?",
            (d["status"], d.get("finished_at"), json.dumps(d["phases"]), json.dumps(d["log"]), d.get("error"), d["id"]),
        )

    async def deployment(self, deployment_id: int) -> dict[str, Any] | None:
        r = await self.store.fetchone("SELECT * FROM orch_deployments WHERE id = ?", (deployment_id,))
        return None if r is None else _deployment(r)

    async def deployments(self, service: str | None, limit: int = 100) -> list[dict[str, Any]]:
        if service:
            rows = await self.store.fetchall(
                "SELECT * FROM orch_deployments WHERE service = ? ORDER BY id DESC LIMIT ?", (service, limit)
            )
        else:
            rows = await self.store.fetchall("SELECT * FROM orch_deployments ORDER BY id DESC LIMIT ?", (limit,))
        return [_deployment(r) for r in rows]

    async def unfinished(self) -> list[dict[str, Any]]:
        rows = await self.store.fetchall(
            "SELECT * FROM orch_deployments WHERE status IN ('pending', 'running') ORDER BY id"
        )
        return [_deployment(r) for r in rows]
