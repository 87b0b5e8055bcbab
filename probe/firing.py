"""The firing alerts in the state database (`probe_alert_firing`), so they survive a restart: restored
at start (for rules still enabled), and kept equal to the firing states after each change."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping

from core.store import Store
from probe.alerts import AlertState

Key = tuple[int, str]  # (rule id, series key)


class FiringStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._saved: set[Key] = set()
        self._lock = asyncio.Lock()  # one save at a time, each from the states as they are when it runs

    async def load(self) -> dict[Key, tuple[AlertState, dict[str, str]]]:
        rows = await self.store.fetchall(
            "SELECT rule_id, series, labels, since, value, last_seen FROM probe_alert_firing")
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

    async def save(self, alerts: Mapping[Key, tuple[AlertState, Mapping[str, str]]]) -> None:
        """Make the table hold exactly the firing ones of `alerts` (one transaction; nothing when unchanged)."""
        async with self._lock:
            await self._save(alerts)

    async def _save(self, alerts: Mapping[Key, tuple[AlertState, Mapping[str, str]]]) -> None:
        firing = {k: v for k, v in alerts.items() if v[0].status == "firing"}
        new = [k for k in firing if k not in self._saved]
        gone = [k for k in self._saved if k not in firing]
        if not new and not gone:
            return
        async with self.store.transaction() as db:
            await db.executemany("DELETE FROM probe_alert_firing WHERE rule_id = ? AND series = ?", gone)
            await db.executemany(
                "INSERT OR REPLACE INTO probe_alert_firing (rule_id, series, labels, since, value, last_seen) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(rid, key, json.dumps(dict(firing[(rid, key)][1]), sort_keys=True), firing[(rid, key)][0].since,
                  firing[(rid, key)][0].value, firing[(rid, key)][0].last_seen) for rid, key in new])
        self._saved = set(firing)
