"""The audit log: who changed what, when, from where, with the state before and after."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from core.clock import Clock, SystemClock
from core.store import Store

_SECRET_WORDS = ("password", "token", "secret", "totp", "key")


def redact(value: Any) -> Any:
    """A copy of `value` with every field whose name looks secret replaced by "[redacted]"."""
    if isinstance(value, dict):
        return {
            k: "[redacted]" if any(w in str(k).lower() for w in _SECRET_WORDS) and not isinstance(v, dict | list)
            else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


@dataclass(frozen=True)
class AuditEntry:
    actor: str
    role: str | None
    action: str
    target: str | None
    outcome: str  # "ok" | "denied" | "failed"
    status: int | None
    client_ip: str | None
    before: Any = None
    after: Any = None


class AuditLog:
    def __init__(self, store: Store, *, clock: Clock | None = None) -> None:
        self._store = store
        self._clock = clock or SystemClock()

    async def record(self, entry: AuditEntry) -> int:
        def enc(v: Any) -> str | None:
            return None if v is None else json.dumps(redact(v), default=str, separators=(",", ":"))

        cur = await self._store.execute(
            "INSERT INTO audit (at, actor, role, action, target, outcome, status, client_ip, before, after) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (self._clock.now(), entry.actor, entry.role, entry.action, entry.target, entry.outcome,
             entry.status, entry.client_ip, enc(entry.before), enc(entry.after)),
        )
        return int(cur.lastrowid or 0)

    async def list(self, *, limit: int = 100, before_id: int | None = None, actor: str | None = None,
                   action: str | None = None) -> list[dict[str, Any]]:
        clauses, params = [], []
        if before_id is not None:
            clauses.append("id < ?")
            params.append(before_id)
        if actor:
            clauses.append("actor = ?")
            params.append(actor)
        if action:
            clauses.append("action LIKE ?")
            params.append(action.replace("*", "%"))
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = await self._store.fetchall(f"SELECT * FROM audit {where} ORDER BY id DESC LIMIT ?", (*params, limit))
        out = []
        for r in rows:
            d = dict(r)
            d["before"] = json.loads(d["before"]) if d["before"] else None
            d["after"] = json.loads(d["after"]) if d["after"] else None
            out.append(d)
        return out
