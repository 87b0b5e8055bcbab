"""The writer thread: takes batches from the intake, appends records to each service's current file
(one `writev` per service per batch), rolls files by UTC day and size, and keeps the block index in step.

Theory of operation. Items are tuples `(service, instance, token, ts, payload, lines)`; `payload` is
complete lines (bytes; the gate's access log arrives rendered, a batch at a time). One line becomes a
line record; more become chunk records (`logbus.records`): a header, then the payload's bytes as they
are — the ingest hot path copies nothing and adds no per-line bytes. A chunk is cut between lines where
a block fills up, so blocks stay about `block_bytes` and a block always starts at a record boundary.
Per service the writer keeps its open file and the
*open block*: the index row being extended while it is under `block_bytes`. A batch is written to the
files first and its index rows committed after, in one transaction, so the index never points past
what is in the files. Timestamps are clamped so a service's lines only move forward in time, which is
what lets a query trust block order. Only this thread writes files or the index; retention runs here
too, so a file is never deleted under a write. After each commit, batches of services someone is
tailing are handed to `on_written` (which must be thread-safe: the service posts them to the loop).
Opening runs the crash recovery of `logbus.recovery` (index brought in line with the files, torn tails mended).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from core.clock import Clock
from logbus.config import LogbusConfig
from logbus.format import day_of, file_name, round_ts
from logbus.index import connect
from logbus.intake import Intake
from logbus.records import chunk_header, expand
from logbus.recovery import recover
from logbus.retention import FileStat, plan_retention

log = structlog.get_logger("logbus.writer")

_BATCH_BYTES = 8 * 1024 * 1024  # under load: fewer, larger writev calls and index commits
_IOV_MAX = min(os.sysconf("SC_IOV_MAX"), 1024) if hasattr(os, "sysconf") else 1024


@dataclass
class _Block:
    id: int | None
    file_id: int
    start: int
    end: int
    first_ts: float
    last_ts: float
    lines: int


@dataclass
class _ServiceFile:
    """The file a service is being written to, and its open block."""

    service: str
    file_id: int | None = None
    fd: int | None = None
    day: str = ""
    seq: int = -1
    size: int = 0
    lines: int = 0
    first_ts: float | None = None
    last_ts: float = 0.0
    block: _Block | None = None
    closed_blocks: list[_Block] = field(default_factory=list)
    pending: list[bytes | memoryview] = field(default_factory=list)
    pending_lines: int = 0
    lost_lines: int = 0  # lines a failed write lost; a marker says so once writing works again
    lost_reason: str = ""
    pending_marker: bool = False  # the batch being written carries the `lost N lines` marker
    pending_start: int = 0


class _IsoCache:
    """Epoch seconds → stored timestamp bytes, formatting the seconds part once per second."""

    def __init__(self) -> None:
        self._sec = -1
        self._head = b""

    def __call__(self, ts: float) -> bytes:
        us_total = round(ts * 1_000_000)
        sec, us = divmod(us_total, 1_000_000)
        if sec != self._sec:
            self._sec, self._head = sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)).encode()
        return b"%s.%06dZ" % (self._head, us)


class LogWriter:
    """Owns the files under `logs_dir` and the index; runs in its own thread (`start`/`stop`)."""

    def __init__(self, logs_dir: Path, config: LogbusConfig, intake: Intake, clock: Clock) -> None:
        self.dir = logs_dir
        self.cfg = config
        self.intake = intake
        self.clock = clock
        self.db_path = logs_dir / "index.db"
        self.on_written: Callable[[str, int, int, int, bytes], None] | None = None
        self.wants: Callable[[str], bool] = lambda service: False
        self._files: dict[str, _ServiceFile] = {}
        self._iso = _IsoCache()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._resume = threading.Event()
        self._resume.set()
        self._db: sqlite3.Connection | None = None
        self._next_retention = 0.0
        self.bytes_written = 0
        self.lines_written = 0
        self.failed: BaseException | None = None
        self.write_errors = 0
        self._error_logged: dict[str, float] = {}

    # --- lifecycle (called from the loop) ------------------------------------------------------

    def open(self) -> None:
        """Create the directory and index, and bring the index in line with the files (crash recovery)."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = connect(self.db_path)
        recover(self._db, self.dir, self.cfg.block_bytes)

    def start(self) -> None:
        self._next_retention = self.clock.monotonic() + self.cfg.retention_interval_s
        self._thread = threading.Thread(target=self._run, name="logbus-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float) -> bool:
        """Write what is queued (within `timeout_s`), close the files; True if everything was written."""
        self._resume.set()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                return False
        return True

    def pause(self) -> None:
        """Stop writing until `resume` (lines queue in memory, then are dropped): for maintenance of the
        disk, and for tests of the dropping path."""
        self._resume.clear()

    def resume(self) -> None:
        self._resume.set()

    def control(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run `fn` on the writer thread after everything queued before it; its result in the future."""
        fut: Future[Any] = Future()
        if self._thread is not None and not self._thread.is_alive():
            fut.set_exception(RuntimeError("the log writer is not running"))
            return fut
        self.intake.offer((None, None, None, 0.0, (fn, fut), 0), 0, force=True)
        return fut

    # --- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                self._resume.wait()
                batch = self.intake.take(_BATCH_BYTES, 0.2)
                if batch:
                    self._write_guarded(batch)
                now = self.clock.monotonic()
                if now >= self._next_retention:
                    self._next_retention = now + self.cfg.retention_interval_s
                    try:
                        self.retention()
                    except (OSError, sqlite3.Error) as e:
                        log.error("log retention failed", error=repr(e))
                if self._stop.is_set() and not self.intake.pending_bytes and not batch:
                    break
        except BaseException as e:  # the thread must say why it died; the service reports it
            self.failed = e
            log.error("log writer failed", error=repr(e), exc_info=e)
            raise
        finally:
            for sf in self._files.values():
                if sf.fd is not None:
                    os.close(sf.fd)
                    sf.fd = None
            if self._db is not None:
                self._db.close()
                self._db = None

    def _write_guarded(self, batch: list[Any]) -> None:
        """`_write`, then the batch's control calls; an unexpected error loses this batch (logged), not
        the writer: the next batch is written as usual."""
        try:
            self._write(batch)
        except Exception as e:
            self.write_errors += 1
            log.error("log writer batch failed; its lines are lost", error=repr(e), exc_info=e)
        for item in batch:
            if item[0] is None:
                fn, fut = item[4]
                try:
                    fut.set_result(fn())
                except Exception as e:
                    fut.set_exception(e)

    def _write(self, batch: list[Any]) -> None:
        touched: dict[str, _ServiceFile] = {}
        for service, inst, token, ts, payload, nlines in batch:
            if service is None:
                continue
            sf = self._files.get(service) or self._load(service)
            ts = round_ts(ts)
            if ts < sf.last_ts:
                ts = sf.last_ts
            day = day_of(ts)
            if sf.fd is None or day != sf.day or sf.size >= self.cfg.max_file_bytes:
                self._flush(sf)
                try:
                    self._roll(sf, day, ts)
                except (OSError, sqlite3.Error) as e:
                    self._lost(sf, payload.count(b"\n") if nlines is None else nlines, e)
                    continue
            if sf.lost_lines and service not in touched:
                marker = b"logbus: lost %d lines: cannot write (%s)\n" % (sf.lost_lines, sf.lost_reason.encode())
                self._add(sf, ts, b"sys", inst, marker, 1)
                sf.pending_marker = True
            self._add(sf, ts, token, inst, payload, nlines)
            touched[service] = sf
        for sf in touched.values():
            self._flush(sf)
        if touched:
            self._commit(touched.values())

    def _add(self, sf: _ServiceFile, ts: float, token: bytes, inst: bytes, payload: bytes, nlines: int | None) -> None:
        """Queue `payload` (`nlines` complete lines; None: two or more, not counted yet) for the
        service's next write: one line as a line record, more as chunk records of at most a block each
        (the bytes as read, not copied)."""
        if not sf.pending:
            sf.pending_start = sf.size
            sf.pending_lines = 0
            sf.pending_marker = False
        iso = self._iso(ts)
        if nlines == 1:
            head = b"%s %s %s " % (iso, token, inst)
            sf.pending += (head, payload)
            sf.pending_lines += 1
            self._extend_block(sf, len(head) + len(payload), ts, 1)
            return
        bb = self.cfg.block_bytes
        n = len(payload)
        p = 0
        while p < n:
            b = sf.block
            room = bb - (b.end - b.start) if b is not None else bb
            if room < bb // 8:
                room = bb  # not worth a chunk of its own: this one starts the next block
            if n - p <= room:
                e = n
            else:  # cut between lines, so a block holds about `block_bytes` (a longer line stays whole)
                e = payload.rfind(b"\n", p, p + room) + 1 or payload.find(b"\n", p + room) + 1 or n
            part = payload if p == 0 and e == n else memoryview(payload)[p:e]
            k = nlines if e == n and nlines is not None else payload.count(b"\n", p, e)
            head = chunk_header(iso, token, inst, e - p)
            sf.pending += (head, part)
            sf.pending_lines += k
            self._extend_block(sf, len(head) + e - p, ts, k)
            if nlines is not None:
                nlines -= k  # the last part: what is left
            p = e

    def _lost(self, sf: _ServiceFile, nlines: int, e: BaseException) -> None:
        """Lines that could not be written: counted for the marker, logged at most every 10 s."""
        sf.lost_lines += nlines
        sf.lost_reason = getattr(e, "strerror", None) or type(e).__name__
        self.write_errors += 1
        now = time.monotonic()
        if now - self._error_logged.get(sf.service, -1e9) >= 10.0:
            self._error_logged[sf.service] = now
            log.error("cannot write service log", service=sf.service, error=repr(e), lost_lines=sf.lost_lines)

    def _extend_block(self, sf: _ServiceFile, n: int, ts: float, nlines: int) -> None:
        b = sf.block
        if b is not None and b.end > b.start and b.end - b.start + n > self.cfg.block_bytes:
            sf.closed_blocks.append(b)
            b = None
        if b is None:
            assert sf.file_id is not None
            b = sf.block = _Block(None, sf.file_id, sf.size, sf.size, ts, ts, 0)
        b.end += n
        b.last_ts = ts
        b.lines += nlines
        sf.size += n
        sf.lines += nlines
        sf.last_ts = ts
        if sf.first_ts is None:
            sf.first_ts = ts

    def _flush(self, sf: _ServiceFile) -> None:
        """Write the service's pending records (one write) and tell tail subscribers about them."""
        if not sf.pending or sf.fd is None:
            return
        parts, sf.pending = sf.pending, []
        try:
            total = _write_all(sf.fd, parts)
        except OSError as e:  # disk full, file too large, I/O error: lose this batch, keep running
            self._unwrite(sf)
            self._lost(sf, sf.pending_lines - sf.pending_marker, e)
            return
        if sf.pending_marker:
            sf.lost_lines = 0
        self.bytes_written += total
        if self.on_written is not None and self.wants(sf.service):
            # Handed over before the commit of this batch's index rows, which follows in the same thread
            # before any other work; the tail dedupes against the index by position.
            assert sf.file_id is not None
            # Tail subscribers get line records only (`expand`), and where the batch ends in the file.
            self.on_written(sf.service, sf.file_id, sf.pending_start, sf.pending_start + total, expand(b"".join(parts)))

    def _unwrite(self, sf: _ServiceFile) -> None:
        """Forget a batch whose write failed: cut the file back to before it, and the blocks with it."""
        assert sf.fd is not None
        with contextlib.suppress(OSError):
            os.ftruncate(sf.fd, sf.pending_start)
        cut = sf.pending_start
        sf.size = cut
        kept = [b for b in [*sf.closed_blocks, sf.block] if b is not None and (b.start < cut or b.id is not None)]
        for b in kept:
            b.end = max(b.start, min(b.end, cut))
        sf.block = kept.pop() if kept else None
        sf.closed_blocks = kept

    def _commit(self, touched: Any) -> None:
        """This batch's index rows in one transaction. On failure (e.g. disk full) nothing is lost for
        good: the rows stay pending in memory and go in with a later commit (or a restart re-indexes)."""
        db = self._db
        assert db is not None
        inserted: list[_Block] = []
        try:
            db.execute("BEGIN IMMEDIATE")
            self._commit_rows(db, touched, inserted)
            db.execute("COMMIT")
        except sqlite3.Error as e:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            for b in inserted:
                b.id = None
            self.write_errors += 1
            now = time.monotonic()
            if now - self._error_logged.get("", -1e9) >= 10.0:
                self._error_logged[""] = now
                log.error("cannot update the log index", error=repr(e))
            return
        for sf in touched:
            sf.closed_blocks = []

    def _commit_rows(self, db: sqlite3.Connection, touched: Any, inserted: list[_Block]) -> None:
        for sf in touched:
            for b in [*sf.closed_blocks, sf.block]:
                if b is None:
                    continue
                if b.id is None:
                    cur = db.execute(
                        'INSERT INTO blocks (file_id, service, start, "end", first_ts, last_ts, lines) '
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (b.file_id, sf.service, b.start, b.end, b.first_ts, b.last_ts, b.lines),
                    )
                    b.id = cur.lastrowid
                    inserted.append(b)
                else:
                    db.execute(
                        'UPDATE blocks SET "end" = ?, last_ts = ?, lines = ? WHERE id = ?',
                        (b.end, b.last_ts, b.lines, b.id),
                    )
            if sf.file_id is not None:
                db.execute(
                    "UPDATE files SET size = ?, lines = ?, first_ts = ?, last_ts = ? WHERE id = ?",
                    (sf.size, sf.lines, sf.first_ts, sf.last_ts, sf.file_id),
                )

    # --- files ---------------------------------------------------------------------------------

    def _load(self, service: str) -> _ServiceFile:
        """The service's state on first sight: its newest file, reopened for appending."""
        sf = self._files[service] = _ServiceFile(service)
        assert self._db is not None
        row = self._db.execute(
            "SELECT id, name, day, seq, size, lines, first_ts, last_ts FROM files WHERE service = ? "
            "ORDER BY id DESC LIMIT 1",
            (service,),
        ).fetchone()
        if row is not None:
            file_id, name, day, seq, size, lines, first_ts, last_ts = row
            path = self.dir / service / name
            sf.file_id, sf.day, sf.seq, sf.size, sf.lines = file_id, day, seq, size, lines
            sf.first_ts, sf.last_ts = first_ts, last_ts or 0.0
            try:
                sf.fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            except OSError as e:  # gone or unwritable: the first write starts a new file instead
                log.warning("cannot reopen log file; starting a new one", service=service, file=name, error=repr(e))
                sf.fd = None
        return sf

    def _roll(self, sf: _ServiceFile, day: str, ts: float) -> None:
        """Start the service's next file: `<day>.log`, or `<day>.<n>.log` after a size roll."""
        self._close(sf)
        assert self._db is not None
        row = self._db.execute("SELECT MAX(seq) FROM files WHERE service = ? AND day = ?", (sf.service, day)).fetchone()
        seq = 0 if row[0] is None else row[0] + 1
        d = self.dir / sf.service
        d.mkdir(exist_ok=True, mode=0o700)
        while (d / file_name(day, seq)).exists():  # a stray file the index does not know: never append to it
            seq += 1
        name = file_name(day, seq)
        fd = os.open(d / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            cur = self._db.execute(
                "INSERT INTO files (service, name, day, seq, first_ts, last_ts, size, lines) "
                "VALUES (?, ?, ?, ?, ?, ?, 0, 0)",
                (sf.service, name, day, seq, ts, ts),
            )
        except sqlite3.Error:
            os.close(fd)
            raise
        sf.fd = fd
        sf.file_id, sf.day, sf.seq, sf.size, sf.lines, sf.first_ts = cur.lastrowid, day, seq, 0, 0, ts
        log.info("log file started", service=sf.service, file=name)

    def _close(self, sf: _ServiceFile) -> None:
        if sf.block is not None:
            sf.closed_blocks.append(sf.block)
            sf.block = None
        if sf.closed_blocks:
            self._commit([sf])
        if sf.fd is not None:
            os.close(sf.fd)
            sf.fd = None

    # --- retention -----------------------------------------------------------------------------

    def retention(self) -> list[str]:
        """Delete the files retention says to (index rows first, then the file); their names."""
        db = self._db
        assert db is not None
        rows = db.execute("SELECT id, service, name, first_ts, last_ts, size FROM files").fetchall()
        stats = [FileStat(r[0], r[1], r[3] or 0.0, r[4] or 0.0, r[5]) for r in rows]
        doomed = set(
            plan_retention(
                stats, now=self.clock.now(), max_age_s=self.cfg.max_age_s, max_total_bytes=self.cfg.max_total_bytes
            )
        )
        removed: list[str] = []
        for r in rows:
            if r[0] not in doomed:
                continue
            file_id, service, name = r[0], r[1], r[2]
            sf = self._files.get(service)
            if sf is not None and sf.file_id == file_id:
                self._close(sf)
                sf.file_id, sf.block, sf.day = None, None, ""
            if sf is not None:  # rows a failed commit left pending must not outlive their file
                sf.closed_blocks = [b for b in sf.closed_blocks if b.file_id != file_id]
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM blocks WHERE file_id = ?", (file_id,))
            db.execute("DELETE FROM files WHERE id = ?", (file_id,))
            db.execute("COMMIT")
            with contextlib.suppress(FileNotFoundError):
                (self.dir / service / name).unlink()
            removed.append(f"{service}/{name}")
        if removed:
            log.info("log retention deleted files", files=removed)
        return removed


def _write_all(fd: int, parts: list[bytes | memoryview]) -> int:
    """Write every buffer, in order, with as few `writev` calls as the kernel allows; the byte count."""
    total = 0
    i = 0
    while i < len(parts):
        group = parts[i : i + _IOV_MAX]
        want = sum(len(p) for p in group)
        n = os.writev(fd, group)
        total += n
        if n == want:
            i += len(group)
            continue
        # A short write (disk full, signal): finish this group buffer by buffer.
        for p in group:
            view = memoryview(p)
            if n >= len(view):
                n -= len(view)
                continue
            view = view[n:]
            n = 0
            while view:
                k = os.write(fd, view)
                view = view[k:]
                total += k
        i += len(group)
    return total
