"""The logbus component: pumps, writer, index and live tail behind one object, which is also the
`LogSink` orch hands pipes to and the `AccessLogSink` the gate records requests into."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import structlog

from core.clock import Clock, SystemClock
from core.errors import StartupError
from core.ports import Stream
from logbus.config import LogbusConfig
from logbus.format import check_service_name
from logbus.index import IndexReader
from logbus.intake import Intake
from logbus.pump import PumpThread, Source
from logbus.search import Query, Result, read_window, run_query
from logbus.tail import TailHub, TailSubscription
from logbus.writer import LogWriter

log = structlog.get_logger("logbus")

ACCESS_SERVICE = "gate-access"
_ACCESS_ITEM_OVERHEAD = 64


class LogbusService:
    """Start with `start()`; `attach`/`append`/`record` may be called before that (they queue)."""

    name = "logbus"

    def __init__(self, logs_dir: Path, config: LogbusConfig | None = None, clock: Clock | None = None) -> None:
        self.dir = logs_dir
        self.config = config or LogbusConfig()
        self.clock: Clock = clock or SystemClock()
        self.intake = Intake(self.config.buffer_bytes)
        self.writer = LogWriter(logs_dir, self.config, self.intake, self.clock)
        self.pumps = PumpThread(self.intake, self.clock)
        self.hub = TailHub(self.config.tail_buffer_bytes)
        self._sources: dict[tuple[str, str, str], Source] = {}
        self._lock = threading.Lock()
        self._access = Source(ACCESS_SERVICE, b"gate", b"out", self.config.max_line_bytes)
        # How the gate batches its access log for us (`core.ports.AccessLogSink`): a batch is joined and
        # encoded on the loop, so clients' long request targets bound it by size too, not just by count.
        self.access_batch_lines = self.config.access_batch_lines
        # The intake takes a batch as one item (refused whole past buffer_bytes) and the writer publishes
        # what it merged to tail clients at once: bounded by both, so a batch is never dropped whole for
        # its size and a merged write of a few batches mostly fits a tail client's buffer.
        self.access_batch_chars = min(512 * 1024, self.config.tail_buffer_bytes // 2, self.config.buffer_bytes // 4)
        self.access_batch_s = self.config.access_batch_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = False

    # --- component -----------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await asyncio.to_thread(self.writer.open)
        except (OSError, RuntimeError) as e:
            raise StartupError(
                f"logbus cannot use {self.dir}: {e}", hint="check the data dir's permissions and free space"
            ) from e
        self._loop = asyncio.get_running_loop()
        self.writer.wants = self.hub.wants
        self.writer.on_written = self._on_written
        self.writer.start()
        self.pumps.start()
        self._running = True
        log.info("logbus started", dir=str(self.dir), buffer_bytes=self.config.buffer_bytes)

    async def stop(self, drain_timeout_s: float) -> None:
        self.hub.close_all()
        if not self._running:
            return
        self._running = False  # (the gate stopped before us: its last batch is in the intake)
        if self._access.dropped:  # the count of a drop not marked yet is not lost either
            self._access.mark_dropped(self.intake, self.clock.now(), force=True)
        await asyncio.to_thread(self.pumps.stop, drain_timeout_s / 2)
        now = self.clock.now()
        with self._lock:
            for src in self._sources.values():
                src.offer(self.intake, src.splitter.flush(), now)
        done = await asyncio.to_thread(self.writer.stop, drain_timeout_s / 2)
        if not done:
            log.error(
                "log writer did not finish in time; recent lines may be lost", pending_bytes=self.intake.pending_bytes
            )

    def _on_written(self, service: str, file_id: int, start: int, end: int, data: bytes) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.hub.publish, service, file_id, start, end, data)

    # --- LogSink -------------------------------------------------------------------------------

    def attach(self, service: str, instance: str, stream: Stream, fd: int) -> None:
        """Pump `fd` (a pipe's read end; logbus owns and closes it) until EOF. Returns at once.
        ValueError for a name that cannot be a log directory (the fd is closed all the same)."""
        try:
            check_service_name(service)
        except ValueError:
            os.close(fd)
            raise
        self.pumps.attach(fd, Source.of(service, instance, stream, self.config.max_line_bytes))

    def append(self, service: str, instance: str, stream: Stream, data: bytes) -> None:
        """Output the caller already read; partial lines are held until their newline. Never blocks."""
        check_service_name(service)
        key = (service, instance, stream)
        with self._lock:
            src = self._sources.get(key)
            if src is None:
                src = self._sources[key] = Source.of(service, instance, stream, self.config.max_line_bytes)
            src.offer(self.intake, src.splitter.feed(data), self.clock.now())

    def room(self) -> int:
        """Bytes the intake takes now before `append` starts dropping lines."""
        return max(0, self.intake.max_bytes - self.intake.pending_bytes)

    def when_stored(self, fn: Callable[[], None]) -> None:
        """`fn()` on the writer thread once what was appended before is written and indexed."""

        def done(fut: Any) -> None:
            if fut.exception() is None:
                fn()

        self.writer.control(lambda: None).add_done_callback(done)

    # --- AccessLogSink -------------------------------------------------------------------------

    def record_lines(self, lines: list[str], at: float) -> None:
        """A batch of the gate's access log (its JSON lines, rendered and batched by the gate), queued as
        one chunk of `gate-access` stamped `at`; counted as dropped, with the marker, when the intake is
        full. Called on the gate's loop thread. O(batch), never raises."""
        src = self._access
        try:
            data = "".join(lines).encode()
            if src.dropped:
                src.mark_dropped(self.intake, at)
            if src.dropped or not self.intake.offer(
                (ACCESS_SERVICE, b"gate", b"out", at, data, len(lines)), len(data) + _ACCESS_ITEM_OVERHEAD
            ):
                src.dropped += len(lines)
        except Exception as e:  # the proxy's path must never see a logging failure
            src.dropped += len(lines)
            log.error("access log batch failed", error=repr(e), entries=len(lines))

    def record(self, line: str) -> None:
        """One access-log line on its own (a batch of one, stamped now)."""
        self.record_lines([line], self.clock.now())

    # --- queries -------------------------------------------------------------------------------

    def _reader(self) -> IndexReader:
        return IndexReader(self.writer.db_path, self.dir)

    def _query_sync(self, q: Query) -> Result:
        reader = self._reader()
        try:
            return run_query(reader, q)
        finally:
            reader.close()

    async def query(self, q: Query) -> Result:
        """Lines matching `q` (see `logbus.search.Query`); raises ValueError for a bad regex/keyword."""
        for s in q.services:
            check_service_name(s)
        return await asyncio.to_thread(self._query_sync, q)

    async def services(self) -> list[dict[str, Any]]:
        def run() -> list[dict[str, Any]]:
            reader = self._reader()
            try:
                return reader.services()
            finally:
                reader.close()

        return await asyncio.to_thread(run)

    async def files(self, service: str | None = None) -> list[dict[str, Any]]:
        def run() -> list[dict[str, Any]]:
            reader = self._reader()
            try:
                return [r.__dict__ for r in reader.files(service)]
            finally:
                reader.close()

        return await asyncio.to_thread(run)

    async def download(self, service: str, from_ts: float | None, to_ts: float | None) -> AsyncIterator[bytes]:
        """The stored lines of `service` in [from_ts, to_ts), in pieces of about 1 MiB."""
        check_service_name(service)
        reader = await asyncio.to_thread(self._reader)
        gen = read_window(reader, service, from_ts, to_ts)
        try:
            while True:
                piece = await asyncio.to_thread(next, gen, None)
                if piece is None:
                    return
                yield piece
        finally:
            await asyncio.to_thread(gen.close)
            reader.close()

    def subscribe(self, service: str) -> TailSubscription:
        check_service_name(service)
        return self.hub.subscribe(service)

    # --- maintenance ---------------------------------------------------------------------------

    async def flush(self) -> None:
        """Wait until everything queued so far is written and indexed."""
        await asyncio.wrap_future(self.writer.control(lambda: None))

    async def run_retention(self) -> list[str]:
        """Apply retention now (it also runs every `retention_interval_s`); the files deleted."""
        return await asyncio.wrap_future(self.writer.control(self.writer.retention))

    def stats(self) -> dict[str, Any]:
        with self._lock:
            sources = list(self._sources.values())
        dropped = sum(s.dropped for s in sources) + self._access.dropped
        return {
            "pumps": self.pumps.attached,
            "buffered_bytes": self.intake.pending_bytes,
            "buffer_bytes": self.config.buffer_bytes,
            "bytes_written": self.writer.bytes_written,
            "dropped_unmarked_lines": dropped,  # dropped lines whose marker is not written yet
            "write_errors": self.writer.write_errors,
            "tail_clients": len(self.hub),
            "writer_running": self._running and self.writer.failed is None,
            "at": time.time(),
        }
