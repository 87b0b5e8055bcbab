"""Alert rules, kept in the state database (`probe_alert_rules`)."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from core.errors import Conflict, NotFound
from core.store import Migration, Store
from probe.alerts import AlertRule
from probe.config import AlertRuleBody

RULE_MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "alert rules",
        """
        CREATE TABLE probe_alert_rules (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL UNIQUE,
            metric TEXT NOT NULL,
            labels TEXT NOT NULL DEFAULT '{}',
            op TEXT NOT NULL CHECK (op IN ('>', '>=', '<', '<=')),
            threshold REAL NOT NULL,
            for_s REAL NOT NULL DEFAULT 0,
            hysteresis REAL NOT NULL DEFAULT 0,
            webhook TEXT,
            enabled INTEGER NOT NULL DEFAULT 1,
            created_at REAL NOT NULL
        );
        """,
    ),
    Migration(
        2,
        "firing alerts",
        # The firing alerts, so a restart neither forgets them (and never says "resolved") nor sends
        # "triggered" again: probe.firing keeps it equal to the firing states after each tick.
        """
        CREATE TABLE probe_alert_firing (
            rule_id INTEGER NOT NULL,
            series TEXT NOT NULL,
            labels TEXT NOT NULL,
            since REAL NOT NULL,
            value REAL,
            last_seen REAL NOT NULL,
            PRIMARY KEY (rule_id, series)
        );
        """,
    ),
    Migration(
        3,
        "alert outbox",
        # Transitions not yet announced, written in the same transaction as the firing states they come
        # from and deleted once published: a crash or stop in between re-sends them at the next start.
        """
        CREATE TABLE probe_alert_outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            payload TEXT NOT NULL
        );
        """,
    ),
]


def _row(r: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": r["id"],
        "name": r["name"],
        "metric": r["metric"],
        "labels": json.loads(r["labels"]),
        "op": r["op"],
        "threshold": r["threshold"],
        "for_s": r["for_s"],
        "hysteresis": r["hysteresis"],
        "webhook": r["webhook"],
        "enabled": bool(r["enabled"]),
        "created_at": r["created_at"],
    }


def to_rule(d: dict[str, Any]) -> AlertRule:
    return AlertRule(
        d["id"],
        d["name"],
        d["metric"],
        d["op"],
        d["threshold"],
        dict(d["labels"]),
        d["for_s"],
        d["hysteresis"],
        d["webhook"],
    )


class RuleRepo:
    """CRUD of alert rules. Names are unique; ids are stable."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def migrate(self) -> None:
        await self.store.migrate("probe", RULE_MIGRATIONS)

    async def list(self) -> list[dict[str, Any]]:
        return [_row(r) for r in await self.store.fetchall("SELECT * FROM probe_alert_rules ORDER BY id")]

    async def get(self, ref: str | int) -> dict[str, Any]:
        """A rule by id or by name."""
        row = await self.store.fetchone(
            "SELECT * FROM probe_alert_rules WHERE id = ? OR name = ?",
            (int(ref) if str(ref).isdigit() else -1, str(ref)),
        )
        if row is None:
            raise NotFound(f"no alert rule {ref!r}", hint="list them with `fsctl alert ls`")
        return _row(row)

    async def add(self, body: AlertRuleBody) -> dict[str, Any]:
        try:
            async with self.store.transaction() as db:
                cur = await db.execute(
                    "INSERT INTO probe_alert_rules (name, metric, labels, op, threshold, for_s, hysteresis, webhook, "
                    "enabled, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        body.name,
                        body.metric,
                        json.dumps(body.labels, sort_keys=True),
                        body.op,
                        body.threshold,
                        body.for_s,
                        body.hysteresis,
                        body.webhook,
                        int(body.enabled),
                        time.time(),
                    ),
                )
                rid = cur.lastrowid
        except sqlite3.IntegrityError as e:
            raise Conflict(
                f"an alert rule named {body.name!r} exists already",
                hint="pick another name, or remove the old rule first",
            ) from e
        return await self.get(int(rid or 0))

    async def replace(self, ref: str | int, body: AlertRuleBody) -> tuple[dict[str, Any], dict[str, Any]]:
        before = await self.get(ref)
        try:
            await self.store.execute(
                "UPDATE probe_alert_rules SET name = ?, metric = ?, labels = ?, op = ?, threshold = ?, for_s = ?, "
                "hysteresis = ?, webhook = ?, enabled = ? WHERE id = ?",
                (
                    body.name,
                    body.metric,
                    json.dumps(body.labels, sort_keys=True),
                    body.op,
                    body.threshold,
                    body.for_s,
                    body.hysteresis,
                    body.webhook,
                    int(body.enabled),
                    before["id"],
                ),
            )
        except sqlite3.IntegrityError as e:
            raise Conflict(f"an alert rule named {body.name!r} exists already") from e
        return before, await self.get(before["id"])

    async def remove(self, ref: str | int) -> dict[str, Any]:
        before = await self.get(ref)
        await self.store.execute("DELETE FROM probe_alert_rules WHERE id = ?", (before["id"],))
        return before
