"""The audit log: who changed what, when, from where, with the state before and after.

An entry that cannot be written (the disk is full, the database is locked too long) is not lost: it
waits in memory, in order, with the time of the attempt, and is written before the next entry — the
first write that succeeds after space is freed flushes them all. Entries still waiting show in
`list()` (with `id` None and `pending` true), so the attempts a full disk refused are visible at once.
Memory is bounded (`max_pending`): past it the oldest waiting entries are dropped and counted, and the
count is written as an entry of its own once writing works again.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import sqlite3
from collections import deque
from dataclasses import dataclass
from typing import Any

import structlog

from core.clock import Clock, SystemClock
from core.logging import safe_url
from core.store import Store

log = structlog.get_logger("core.audit")

_SECRET_WORDS = ("password", "token", "secret", "otp", "key", "credential")


def redact(value: Any) -> Any:
    """A copy of `value` with every field whose name looks secret replaced by "[redacted]", and URLs
    (webhooks carry secrets in their path or query) cut to scheme and host."""
    if isinstance(value, dict):
        return {k: _redact_field(str(k).lower(), v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _redact_field(name: str, v: Any) -> Any:
    if isinstance(v, dict | list):
        return redact(v)
    if any(w in name for w in _SECRET_WORDS):
        return "[redacted]"
    if isinstance(v, str) and ("url" in name or "webhook" in name):
        return safe_url(v)
    return v


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


_COLUMNS = ("at", "actor", "role", "action", "target", "outcome", "status", "client_ip", "before", "after")


def _enc(v: Any) -> str | None:
    return None if v is None else json.dumps(redact(v), default=str, separators=(",", ":"))


class AuditLog:
    """Safe for concurrent use by tasks of one loop; `record` never raises for a failed write."""

    def __init__(self, store: Store, *, clock: Clock | None = None, max_pending: int = 10_000) -> None:
        self._store = store
        self._clock = clock or SystemClock()
        self._pending: deque[tuple[int, tuple[Any, ...]]] = deque()  # (sequence number, row)
        self._seq = 0
        self._flush_lock = asyncio.Lock()
        self._failing = False
        self.max_pending = max_pending
        self.dropped = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def record(self, entry: AuditEntry) -> int | None:
        """Write `entry` (after any entries still waiting); its id, or None when it has to wait."""
        row = (
            self._clock.now(),
            entry.actor,
            entry.role,
            entry.action,
            entry.target,
            entry.outcome,
            entry.status,
            entry.client_ip,
            _enc(entry.before),
            _enc(entry.after),
        )
        self._seq += 1
        self._pending.append((self._seq, row))
        if len(self._pending) > self.max_pending:
            self._pending.popleft()
            self.dropped += 1
        return await self.flush()

    async def flush(self) -> int | None:
        """Write every waiting entry in one transaction; the last id, or None if nothing was written."""
        async with self._flush_lock:  # one flush at a time, or two would write the same entries
            if not self._pending:
                return None
            batch = list(self._pending)
            dropped = self.dropped
            rows = [row for _, row in batch]
            if dropped:
                rows.insert(
                    0,
                    (
                        self._clock.now(),
                        "infracore",
                        None,
                        "audit.dropped",
                        None,
                        "failed",
                        None,
                        None,
                        None,
                        _enc({"dropped_entries": dropped}),
                    ),
                )
            try:
                async with self._store.transaction() as db:
                    await db.executemany(
                        f"INSERT INTO audit ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                        rows,
                    )
                    cur = await db.execute("SELECT last_insert_rowid()")
                    last = await cur.fetchone()
            except (sqlite3.Error, OSError) as e:
                if not self._failing:
                    log.warning(
                        "audit entries kept in memory until they can be written",
                        error=str(e),
                        waiting=len(self._pending),
                    )
                self._failing = True
                return None
            # Remove what was written; entries recorded while the write awaited stay queued.
            written = batch[-1][0]
            while self._pending and self._pending[0][0] <= written:
                self._pending.popleft()
            self.dropped -= dropped
            if self._failing:
                log.info("audit entries written after waiting", count=len(rows))
            self._failing = False
            return int(last[0]) if last else None

    async def list(
        self, *, limit: int = 100, before_id: int | None = None, actor: str | None = None, action: str | None = None
    ) -> list[dict[str, Any]]:
        """Newest first; entries still waiting to be written come first (`id` None, `pending` true)."""
        await self.flush()
        waiting = (
            []
            if before_id is not None
            else [
                {**dict(zip(_COLUMNS, row, strict=True)), "id": None, "pending": True}
                for _, row in reversed(self._pending)
                if (not actor or row[1] == actor) and (not action or _like(row[3], action))
            ]
        )
        for w in waiting:
            w["before"] = json.loads(w["before"]) if w["before"] else None
            w["after"] = json.loads(w["after"]) if w["after"] else None
        clauses: list[str] = []
        params: list[int | str] = []
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
        out = waiting[:limit]
        rows = await self._store.fetchall(
            f"SELECT * FROM audit {where} ORDER BY id DESC LIMIT ?", (*params, limit - len(out))
        )
        for r in rows:
            d = dict(r)
            d["before"] = json.loads(d["before"]) if d["before"] else None
            d["after"] = json.loads(d["after"]) if d["after"] else None
            out.append(d)
        return out


def _like(value: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(value, pattern.replace("%", "*"))
