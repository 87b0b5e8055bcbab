"""The state store: SQLite (WAL) through aiosqlite, with versioned migrations per component and one
writer path.

Theory of operation: one connection writes, one reads. Every write goes through `transaction()`,
which holds an asyncio lock and a `BEGIN IMMEDIATE` transaction, so writes are serialized in one place
and a write never sees a half-made change of another. Readers use the second connection and, thanks to
WAL, see the last committed state without waiting for the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
import structlog

from core.errors import StartupError

log = structlog.get_logger("core.store")


@dataclass(frozen=True)
class Migration:
    """One step of a component's schema. Versions start at 1 and only ever grow; never edit a shipped one."""

    version: int
    name: str
    sql: str


_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    component TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (component, version)
);
"""


class Store:
    """An SQLite database file in WAL mode. Safe for concurrent use by tasks of one loop."""

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "FULL",
        upgrade_backups_keep: int = 3,
        upgrade_backup_max_bytes: int | None = None,
    ) -> None:
        self.path = path
        self._synchronous = synchronous
        # Pre-upgrade copies of this database kept in upgrade-backups/ (the newest N), and the size above
        # which none is made (None: always; metrics.db is history that may be many times the state's size).
        self.upgrade_backups_keep = max(1, upgrade_backups_keep)
        self.upgrade_backup_max_bytes = upgrade_backup_max_bytes
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self.upgrade_backup: Path | None = None  # the copy taken before this release first changed the schema
        self._fresh = False
        self._skipped_backup = False
        self._migrated = False  # migrate() ran on this instance
        self._migration_failed = False

    async def open(self) -> None:
        try:
            self._writer = await self._connect()
            self._reader = await self._connect()
            await self._writer.executescript(_BOOKKEEPING)
            async with self._writer.execute("SELECT count(*) FROM schema_migrations") as cur:
                row = await cur.fetchone()
            self._fresh = not row or row[0] == 0  # made now: nothing of an earlier release to keep
        except sqlite3.DatabaseError as e:
            await self.close()
            raise StartupError(
                f"cannot open database {self.path}: {e}",
                hint="the file may be damaged; restore it from a backup or move it away",
            ) from e

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute(f"PRAGMA synchronous={self._synchronous}")
            await conn.execute("PRAGMA busy_timeout=5000")
            await conn.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            await conn.close()  # its worker thread would otherwise keep the process alive at exit
            raise
        return conn

    async def close(self) -> None:
        # A start that found every schema it checked current, with no migration failing, ends the crash
        # loop (if any) the baseline copy was kept for: pruning may take it at the next upgrade.
        if self._migrated and not self._migration_failed and self.upgrade_backup is None:
            with contextlib.suppress(OSError):
                self._baseline_marker().unlink()
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    async def migrate(self, component: str, migrations: Sequence[Migration]) -> int:
        """Apply the component's pending migrations in order, each in its own transaction.

        Returns the schema version now in force. Refuses to run against a database made by a newer
        release (a version this code does not know), rather than guess.
        """
        known = sorted(migrations, key=lambda m: m.version)
        if [m.version for m in known] != list(range(1, len(known) + 1)):
            raise ValueError(f"{component}: migration versions must be 1..N without gaps")
        rows = await self.fetchall("SELECT version FROM schema_migrations WHERE component = ?", (component,))
        applied = {r["version"] for r in rows}
        newest = max(applied, default=0)
        if newest > len(known):
            raise StartupError(
                f"{self.path}: the {component} schema is at version {newest}, newer than this release knows "
                f"({len(known)})",
                hint="run the release that wrote this database, or restore a backup made by this one",
            )
        assert self._writer is not None
        for m in known:
            if m.version in applied:
                continue
            await self._backup_before_upgrade(component, newest)
            async with self._write_lock:
                try:
                    await self._writer.executescript(
                        f"BEGIN IMMEDIATE;\n{m.sql}\n;"
                        f"INSERT INTO schema_migrations (component, version, name) "
                        f"VALUES ({_quote(component)}, {m.version}, {_quote(m.name)});\nCOMMIT;"
                    )
                except sqlite3.Error as e:
                    if self._writer.in_transaction:
                        await self._writer.execute("ROLLBACK")
                    self._migration_failed = True
                    raise StartupError(f"{component} migration {m.version} ({m.name}) failed: {e}") from e
            log.info("applied migration", component=component, version=m.version, name=m.name)
        self._migrated = True
        return len(known)

    async def _backup_before_upgrade(self, component: str, version: int) -> None:
        """Before the first migration a release applies to a database an earlier release made, a full copy
        beside it (`<dir>/upgrade-backups/`): a failed or regretted upgrade can then go back. Fresh databases
        are not copied."""
        if self.upgrade_backup is not None or self._fresh:
            return
        size = self.path.stat().st_size
        if self.upgrade_backup_max_bytes is not None and size > self.upgrade_backup_max_bytes:
            if not self._skipped_backup:
                self._skipped_backup = True
                log.warning(
                    "database too large to back up before a schema upgrade: not copied",
                    db=str(self.path),
                    size_bytes=size,
                    limit_bytes=self.upgrade_backup_max_bytes,
                    component=component,
                )
            return
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        out = self.path.parent / "upgrade-backups" / f"{self.path.stem}-{stamp}-before-{component}-v{version + 1}.db"
        out.parent.mkdir(mode=0o700, exist_ok=True)
        assert self._writer is not None
        async with self._write_lock:
            try:
                await self._writer.execute("VACUUM INTO ?", (str(out),))
            except sqlite3.Error as e:
                raise StartupError(
                    f"cannot back up {self.path} before upgrading its schema: {e}",
                    hint=f"free space in {out.parent}, then start again",
                ) from e
        out.chmod(0o600)
        self.upgrade_backup = out
        log.warning(
            "database backed up before a schema upgrade",
            db=str(self.path),
            backup=str(out),
            component=component,
            from_version=version,
        )
        marker = self._baseline_marker()
        try:
            baseline = marker.read_text().strip()
        except OSError:
            baseline = ""
        if not baseline or not (out.parent / baseline).is_file():
            # The first copy since the last start that found every schema current: the only one that
            # certainly holds what the earlier release wrote. A start that fails part-way (one
            # component's migration) copies again at each restart, partly migrated: never prune this one.
            marker.write_text(out.name + "\n")
            baseline = out.name
        self._prune_upgrade_backups(out.parent, keep_also=baseline)

    def _baseline_marker(self) -> Path:
        return self.path.parent / "upgrade-backups" / f"{self.path.stem}.baseline"

    def _prune_upgrade_backups(self, where: Path, keep_also: str = "") -> None:
        """Keep the newest `upgrade_backups_keep` copies of this database (their names sort by time), and
        the baseline copy `keep_also` (the oldest since the last start that completed)."""
        mine = sorted(p for p in where.glob(f"{self.path.stem}-*-before-*.db") if p.is_file())
        for old in mine[: -self.upgrade_backups_keep]:
            if old.name == keep_also:
                continue
            with contextlib.suppress(OSError):
                old.unlink()
                log.info("removed an old upgrade backup", backup=str(old), keep=self.upgrade_backups_keep)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """The one writer path: an exclusive write transaction, committed on exit, rolled back on error.

        Do not await anything but this connection inside it: the lock is held for its whole length.
        """
        assert self._writer is not None, "store is not open"
        async with self._write_lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
                await self._writer.execute("COMMIT")
            except BaseException:
                # SQLite may have rolled back on its own (SQLITE_FULL, SQLITE_IOERR): ROLLBACK then
                # fails and would hide the real error. A failed COMMIT (a full disk) leaves the
                # transaction open: roll it back, or the next BEGIN would fail forever.
                if self._writer.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        await self._writer.execute("ROLLBACK")
                raise

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Cursor:
        """Run one write statement in its own transaction; returns the cursor (lastrowid, rowcount)."""
        async with self.transaction() as db:
            cur = await db.execute(sql, tuple(params))
            return cur

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        assert self._reader is not None, "store is not open"
        async with self._reader.execute(sql, tuple(params)) as cur:
            return list(await cur.fetchall())

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        assert self._reader is not None, "store is not open"
        async with self._reader.execute(sql, tuple(params)) as cur:
            return await cur.fetchone()

    async def integrity_check(self) -> str:
        row = await self.fetchone("PRAGMA integrity_check")
        return str(row[0]) if row else "no answer"


def _quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"
