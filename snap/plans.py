"""Backup plans, the history of runs and the shadow instances started by restores, kept in the state
database (`snap_plans`, `snap_runs`, `snap_shadows`)."""

from __future__ import annotations

import builtins
import json
import sqlite3
from typing import Any

from core.errors import Conflict, NotFound
from core.store import Migration, Store
from snap.config import PlanBody
from snap.retention import RetentionPolicy

SNAP_MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "plans and runs",
        """
        CREATE TABLE snap_plans (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL UNIQUE,
            spec TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            last_run_at REAL
        );
        CREATE TABLE snap_runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            plan TEXT NOT NULL,
            trigger TEXT NOT NULL,
            started_at REAL NOT NULL,
            finished_at REAL,
            state TEXT NOT NULL CHECK (state IN ('running', 'done', 'failed', 'interrupted')),
            snapshot TEXT,
            stats TEXT,
            error TEXT
        );
        CREATE INDEX snap_runs_plan ON snap_runs(plan, started_at);
        """,
    ),
    Migration(
        2,
        "shadow instances",
        # a shadow is an orch service that outlives the platform, so snap must remember it across restarts
        """
        CREATE TABLE snap_shadows (
            name TEXT PRIMARY KEY,
            info TEXT NOT NULL,
            created_at REAL NOT NULL
        );
        """,
    ),
]


def _plan(r: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": r["id"],
        **json.loads(r["spec"]),
        "created_at": r["created_at"],
        "updated_at": r["updated_at"],
        "last_run_at": r["last_run_at"],
    }


def policy_of(plan: dict[str, Any]) -> RetentionPolicy:
    return RetentionPolicy(
        last=plan["keep_last"], daily=plan["keep_daily"], weekly=plan["keep_weekly"], monthly=plan["keep_monthly"]
    )


def _run(r: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": r["id"],
        "plan": r["plan"],
        "trigger": r["trigger"],
        "started_at": r["started_at"],
        "finished_at": r["finished_at"],
        "state": r["state"],
        "snapshot": r["snapshot"],
        "stats": json.loads(r["stats"]) if r["stats"] else None,
        "error": r["error"],
    }


class PlanRepo:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def migrate(self) -> None:
        await self.store.migrate("snap", SNAP_MIGRATIONS)
        # a run still "running" was cut short by a stop or a crash
        await self.store.execute("UPDATE snap_runs SET state = 'interrupted' WHERE state = 'running'")

    async def list(self) -> list[dict[str, Any]]:
        return [_plan(r) for r in await self.store.fetchall("SELECT * FROM snap_plans ORDER BY name")]

    async def get(self, name: str) -> dict[str, Any]:
        row = await self.store.fetchone("SELECT * FROM snap_plans WHERE name = ?", (name,))
        if row is None:
            raise NotFound(f"no backup plan {name!r}", hint="list them with `fsctl snap plan ls`")
        return _plan(row)

    async def add(self, body: PlanBody, now: float) -> dict[str, Any]:
        try:
            await self.store.execute(
                "INSERT INTO snap_plans (name, spec, created_at, updated_at) VALUES (?, ?, ?, ?)",
                (body.name, body.model_dump_json(), now, now),
            )
        except sqlite3.IntegrityError:
            raise Conflict(
                f"a backup plan named {body.name!r} exists",
                hint="choose another name, or remove it first (`fsctl snap plan rm`)",
            ) from None
        return await self.get(body.name)

    async def remove(self, name: str) -> dict[str, Any]:
        before = await self.get(name)
        await self.store.execute("DELETE FROM snap_plans WHERE name = ?", (name,))
        return before

    async def mark_run(self, name: str, at: float) -> None:
        await self.store.execute("UPDATE snap_plans SET last_run_at = ? WHERE name = ?", (at, name))

    async def start_run(self, plan: str, trigger: str, at: float) -> int:
        cur = await self.store.execute(
            "INSERT INTO snap_runs (plan, trigger, started_at, state) VALUES (?, ?, ?, 'running')", (plan, trigger, at)
        )
        return int(cur.lastrowid or 0)

    async def finish_run(
        self,
        run_id: int,
        at: float,
        state: str,
        *,
        snapshot: str | None = None,
        stats: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        await self.store.execute(
            "UPDATE snap_runs SET finished_at = ?, state = ?, snapshot = ?, stats = ?, error = ? WHERE id = ?",
            (at, state, snapshot, json.dumps(stats) if stats is not None else None, error, run_id),
        )

    async def runs(self, limit: int = 50, plan: str | None = None) -> builtins.list[dict[str, Any]]:
        if plan:
            rows = await self.store.fetchall(
                "SELECT * FROM snap_runs WHERE plan = ? ORDER BY id DESC LIMIT ?", (plan, limit)
            )
        else:
            rows = await self.store.fetchall("SELECT * FROM snap_runs ORDER BY id DESC LIMIT ?", (limit,))
        return [_run(r) for r in rows]

    async def shadows(self) -> builtins.list[dict[str, Any]]:
        rows = await self.store.fetchall("SELECT info FROM snap_shadows ORDER BY created_at, name")
        return [json.loads(r["info"]) for r in rows]

    async def shadow(self, name: str) -> dict[str, Any] | None:
        row = await self.store.fetchone("SELECT info FROM snap_shadows WHERE name = ?", (name,))
        return json.loads(row["info"]) if row is not None else None

    async def put_shadow(self, name: str, info: dict[str, Any], at: float) -> None:
        await self.store.execute(
            "INSERT OR REPLACE INTO snap_shadows (name, info, created_at) VALUES (?, ?, ?)",
            (name, json.dumps(info), at),
        )

    async def forget_shadow(self, name: str) -> None:
        await self.store.execute("DELETE FROM snap_shadows WHERE name = ?", (name,))
