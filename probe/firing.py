"""The firing alerts in the state database (`probe_alert_firing`), so they survive a restart: restored
at start (for rules still enabled), and kept equal to the firing states after each change; and the
transitions not yet announced (`probe_alert_outbox`), saved with them, so none is lost to a crash."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.store import Store
from probe.alerts import AlertState

Key = tuple[int, str]  # (rule id, series key)


@dataclass
class Pending:
    """A transition waiting to be announced; `row` is its outbox row once saved."""

    payload: dict[str, Any]
    row: int | None = None


class FiringStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._saved: set[Key] = set()
        self._lock = asyncio.Lock()  # one save at a time, each from the states as they are when it runs

    async def load(self) -> dict[Key, tuple[AlertState, dict[str, str]]]:
        rows = await self.store.fetchall(
            "SELECT rule_id, series, labels, since, value, last_seen FROM probe_alert_firing"
        )
        out: dict[Key, tuple[AlertState, dict[str, str]]] = {}
        for r in rows:
            try:
                labels = json.loads(r["labels"])
            except ValueError:
                continue  # (never written so; a damaged row is dropped at the next save)
            if not isinstance(labels, dict):
                continue
            state = AlertState("firing", r["since"], r["value"], r["last_seen"])
            out[(r["rule_id"], r["series"])] = (state, {str(k): str(v) for k, v in labels.items()})
        self._saved = {(r["rule_id"], r["series"]) for r in rows}
        return out

    async def load_outbox(self) -> list[Pending]:
        """The transitions saved but not announced before the last stop or crash, oldest first."""
        out = []
        for r in await self.store.fetchall("SELECT id, payload FROM probe_alert_outbox ORDER BY id"):
            try:
                payload = json.loads(r["payload"])
            except ValueError:
                payload = None
            if isinstance(payload, dict):
                out.append(Pending(payload, r["id"]))
            else:  # (never written so) dropped rather than blocking the ones after it
                await self.store.execute("DELETE FROM probe_alert_outbox WHERE id = ?", (r["id"],))
        return out

    async def sent(self, pending: Pending) -> None:
        if pending.row is not None:
            await self.store.execute("DELETE FROM probe_alert_outbox WHERE id = ?", (pending.row,))
            pending.row = None

    async def save(
        self, alerts: Mapping[Key, tuple[AlertState, Mapping[str, str]]], outbox: Sequence[Pending] = ()
    ) -> None:
        """Make the table hold exactly the firing ones of `alerts`, and the outbox the entries of `outbox`
        not saved yet (one transaction; nothing when unchanged)."""
        async with self._lock:
            await self._save(alerts, outbox)

    async def _save(
        self, alerts: Mapping[Key, tuple[AlertState, Mapping[str, str]]], outbox: Sequence[Pending]
    ) -> None:
        firing = {k: v for k, v in alerts.items() if v[0].status == "firing"}
        new = [k for k in firing if k not in self._saved]
        gone = [k for k in self._saved if k not in firing]
        unsaved = [p for p in outbox if p.row is None]
        if not new and not gone and not unsaved:
            return
        rows = []
        async with self.store.transaction() as db:
            await db.executemany("DELETE FROM probe_alert_firing WHERE rule_id = ? AND series = ?", gone)
            await db.executemany(
                "INSERT OR REPLACE INTO probe_alert_firing (rule_id, series, labels, since, value, last_seen) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        rid,
                        key,
                        json.dumps(dict(firing[(rid, key)][1]), sort_keys=True),
                        firing[(rid, key)][0].since,
                        firing[(rid, key)][0].value,
                        firing[(rid, key)][0].last_seen,
                    )
                    for rid, key in new
                ],
            )
            for p in unsaved:
                cur = await db.execute(
                    "INSERT INTO probe_alert_outbox (payload) VALUES (?)", (json.dumps(p.payload, sort_keys=True),)
                )
                rows.append(cur.lastrowid)
        for p, row in zip(unsaved, rows, strict=True):
            p.row = row
        self._saved = set(firing)
