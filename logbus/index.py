"""The block index: an SQLite file `<data>/logs/index.db` saying, per service, which byte ranges of
which file hold which time span, so a time-range query reads only the blocks it needs.

Why its own file and not `state.db`: the writer thread updates it once per batch (several times a
second under load), from a thread, with `synchronous=NORMAL`; in the state DB those commits would
queue behind the one asyncio writer lock and its `FULL` fsyncs, and slow every other component's
writes. The index is also derived data: lose it and it is rebuilt from the files at start.

Connections are plain `sqlite3` (used from the writer thread and from query threads), each thread
its own connection; WAL lets queries read while the writer commits.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

# 2: the files may hold chunk records (`logbus.records`), which a release of version 1 would misread;
# the tables are the same, so a version 1 index is taken over as it is.
SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    service TEXT NOT NULL,
    name TEXT NOT NULL,
    day TEXT NOT NULL,
    seq INTEGER NOT NULL,
    first_ts REAL,
    last_ts REAL,
    size INTEGER NOT NULL DEFAULT 0,
    lines INTEGER NOT NULL DEFAULT 0,
    UNIQUE (service, name)
);
CREATE TABLE IF NOT EXISTS blocks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    service TEXT NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    first_ts REAL NOT NULL,
    last_ts REAL NOT NULL,
    lines INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS blocks_by_time ON blocks (service, last_ts);
CREATE INDEX IF NOT EXISTS blocks_by_file ON blocks (file_id, start);
"""


@dataclass(frozen=True)
class FileRow:
    id: int
    service: str
    name: str
    day: str
    seq: int
    first_ts: float | None
    last_ts: float | None
    size: int
    lines: int


@dataclass(frozen=True)
class BlockRef:
    """A byte range [start, end) of one file holding lines from first_ts to last_ts."""

    id: int
    file_id: int
    path: Path
    start: int
    end: int
    first_ts: float
    last_ts: float
    lines: int


def connect(path: Path) -> sqlite3.Connection:
    """A connection with the schema in place (created on first use)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        conn.close()
        raise RuntimeError(f"{path} was made by a newer release (schema {version} > {SCHEMA_VERSION})")
    if version < SCHEMA_VERSION:
        conn.executescript(f"BEGIN IMMEDIATE;{_SCHEMA};PRAGMA user_version={SCHEMA_VERSION};COMMIT;")
    return conn


class IndexReader:
    """Queries on the index; one per thread (cheap to open)."""

    def __init__(self, db_path: Path, logs_dir: Path) -> None:
        self.conn = connect(db_path)
        self.logs_dir = logs_dir

    def close(self) -> None:
        self.conn.close()

    def blocks(
        self, service: str, from_ts: float | None, to_ts: float | None, *, after_file: int = 0, after_offset: int = 0
    ) -> list[BlockRef]:
        """Blocks of `service` that may hold lines in [from_ts, to_ts), in write order, starting at the
        position (after_file, after_offset) when given."""
        sql = (
            'SELECT b.id, b.file_id, f.name, b.start, b."end", b.first_ts, b.last_ts, b.lines '
            "FROM blocks b JOIN files f ON f.id = b.file_id WHERE b.service = ?"
        )
        params: list[object] = [service]
        if from_ts is not None:
            sql += " AND b.last_ts >= ?"
            params.append(from_ts)
        if to_ts is not None:
            sql += " AND b.first_ts < ?"
            params.append(to_ts)
        if after_file:
            sql += ' AND (b.file_id > ? OR (b.file_id = ? AND b."end" > ?))'
            params += [after_file, after_file, after_offset]
        sql += " ORDER BY b.file_id, b.start"
        base = self.logs_dir / service
        return [BlockRef(r[0], r[1], base / r[2], r[3], r[4], r[5], r[6], r[7]) for r in self.conn.execute(sql, params)]

    def files(self, service: str | None = None) -> list[FileRow]:
        sql = "SELECT id, service, name, day, seq, first_ts, last_ts, size, lines FROM files"
        rows = self.conn.execute(
            sql + (" WHERE service = ?" if service else "") + " ORDER BY service, id", (service,) if service else ()
        )
        return [FileRow(*r) for r in rows]

    def services(self) -> list[dict[str, object]]:
        rows = self.conn.execute(
            "SELECT service, COUNT(*), SUM(size), SUM(lines), MIN(first_ts), MAX(last_ts) FROM files "
            "GROUP BY service ORDER BY service"
        )
        return [
            {"service": r[0], "files": r[1], "bytes": r[2] or 0, "lines": r[3] or 0, "first_ts": r[4], "last_ts": r[5]}
            for r in rows
        ]
