"""Crash recovery for the log files and their block index, run once when the writer opens: the index is
brought in line with what the files hold (files gone or truncated, records written after the last
commit, files found on disk), and a write torn by a crash is mended at the end of its file.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import BinaryIO

import structlog

from logbus.format import parse_file_name, parse_iso
from logbus.records import chunk_header, complete_prefix, cut_blocks, parse_header, segments

log = structlog.get_logger("logbus.writer")


def recover(db: sqlite3.Connection, logs_dir: Path, block_bytes: int) -> None:
    """Bring the index in line with the files under `logs_dir`: forget files gone or truncated behind our
    back, index what was written after the last commit (or before a crash) and files found on disk."""
    known: set[tuple[str, str]] = set()
    for file_id, service, name in db.execute("SELECT id, service, name FROM files").fetchall():
        path = logs_dir / service / name
        if not path.exists():
            db.execute("DELETE FROM files WHERE id = ?", (file_id,))
            db.execute("DELETE FROM blocks WHERE file_id = ?", (file_id,))
            continue
        known.add((service, name))
        end = db.execute('SELECT COALESCE(MAX("end"), 0) FROM blocks WHERE file_id = ?', (file_id,)).fetchone()[0]
        size = path.stat().st_size
        if size < end:  # truncated behind our back: forget the blocks past the end
            db.execute('DELETE FROM blocks WHERE file_id = ? AND "end" > ?', (file_id, size))
            end = db.execute('SELECT COALESCE(MAX("end"), 0) FROM blocks WHERE file_id = ?', (file_id,)).fetchone()[0]
        if size != end:
            index_range(db, file_id, service, path, end, block_bytes)
    for d in sorted(p for p in logs_dir.iterdir() if p.is_dir()):
        # In (day, seq) order, so file ids (which order a service's blocks) follow time.
        found = sorted((parsed, path) for path in d.iterdir() if (parsed := parse_file_name(path.name)))
        for parsed, path in found:
            if (d.name, path.name) in known:
                continue
            cur = db.execute(
                "INSERT INTO files (service, name, day, seq) VALUES (?, ?, ?, ?)",
                (d.name, path.name, parsed[0], parsed[1]),
            )
            assert cur.lastrowid is not None
            index_range(db, cur.lastrowid, d.name, path, 0, block_bytes)
            log.info("indexed log file found on disk", service=d.name, file=path.name)


def index_range(db: sqlite3.Connection, file_id: int, service: str, path: Path, start: int, block_bytes: int) -> None:
    """Index the records of `path` from `start` (a record boundary) to its end, in blocks of about
    `block_bytes`. A torn write at the end (the process died mid-write) is mended first: an
    unterminated last line gets its newline, a chunk cut short gets the length of what it holds."""
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        fallback = path.stat().st_mtime
        want = max(4 * block_bytes, 1 << 20)
        pos = start
        while pos < size:
            f.seek(pos)
            buf = f.read(want)
            segs = segments(buf)
            end = complete_prefix(buf, segs)
            if end == 0:
                if pos + len(buf) < size:
                    want *= 2  # one record longer than the read
                else:
                    size = _mend_tail(f, pos, buf)
                continue
            for c in cut_blocks(buf, segs, end, block_bytes):
                first = _ts_or(c.first_ts, fallback)
                db.execute(
                    'INSERT INTO blocks (file_id, service, start, "end", first_ts, last_ts, lines) '
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        file_id,
                        service,
                        pos + c.start,
                        pos + c.end,
                        first,
                        max(first, _ts_or(c.last_ts, first)),
                        c.lines,
                    ),
                )
            pos += end
    row = db.execute(
        'SELECT MIN(first_ts), MAX(last_ts), COALESCE(SUM(lines), 0), COALESCE(MAX("end"), 0) '
        "FROM blocks WHERE file_id = ?",
        (file_id,),
    ).fetchone()
    db.execute(
        "UPDATE files SET first_ts = ?, last_ts = ?, lines = ?, size = ? WHERE id = ?",
        (row[0], row[1], row[2], row[3], file_id),
    )


def _mend_tail(f: BinaryIO, pos: int, buf: bytes) -> int:
    """Rewrite the torn record `buf` at `pos`, the end of the file: a chunk keeps the lines it holds (its
    length corrected, its last line terminated), a line record gets its newline. The file's new size."""
    nl = buf.find(b"\n")
    head = parse_header(buf[:nl]) if buf[:1] == b"@" and nl >= 0 else None
    if head is not None:
        body = buf[nl + 1 :]
        if body and not body.endswith(b"\n"):
            body += b"\n"
        data = chunk_header(head[0], head[1], head[2], len(body)) + body if body else b""
    else:
        data = buf + b"\n"
    f.truncate(pos)
    f.seek(pos)
    f.write(data)
    f.flush()
    log.warning("mended a torn write at the end of a log file", file=getattr(f, "name", "?"), at=pos)
    return pos + len(data)


def _ts_or(text: bytes, fallback: float) -> float:
    try:
        return parse_iso(text)
    except ValueError:
        return fallback
