"""Pumps: one reader thread drains every attached pipe with `epoll`, cuts the bytes into lines and
offers them to the intake. It never waits for the disk: when the intake is full, lines are counted as
dropped and a `dropped N lines` marker goes in as soon as there is room again (or at end of stream).

Reading happens off the event loop (a thread, `os.read` releases the GIL), so a service writing
100 MB/s costs the loop nothing but GIL time; the child is only ever slowed by the speed of `read`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import selectors
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from core.clock import Clock
from logbus.format import LineSplitter, Piece, instance_token
from logbus.intake import Intake

log = structlog.get_logger("logbus.pump")

# 256 KiB per read: measured ~1.5x faster to drain a flooding pipe than 1 MiB reads here (the buffers
# stay in the allocator's heap and the CPU cache); each read becomes one chunk record.
READ_BYTES = 256 * 1024
PIPE_BYTES = 1024 * 1024
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_ITEM_OVERHEAD = 64


@dataclass
class Source:
    """One producer of lines: a service instance's stream (pipe or `append`), or the access log."""

    service: str
    instance: bytes
    token: bytes  # b"out" / b"err"
    max_line_bytes: int
    splitter: LineSplitter = field(init=False)
    dropped: int = 0
    bytes_in: int = 0

    def __post_init__(self) -> None:
        self.splitter = LineSplitter(self.max_line_bytes)

    @classmethod
    def of(cls, service: str, instance: str, stream: str, max_line_bytes: int) -> Source:
        token = b"err" if stream == "stderr" else b"out"
        return cls(service, instance_token(instance), token, max_line_bytes)

    def offer(self, intake: Intake, pieces: list[Piece], ts: float) -> None:
        """Queue pieces read at `ts`; never waits. Counts what does not fit."""
        if self.dropped:
            self.mark_dropped(intake, ts)
        for p in pieces:
            self.bytes_in += len(p.data)
            token = self.token + b"+" if p.continued else self.token
            if self.dropped or not intake.offer(
                (self.service, self.instance, token, ts, p.data, p.known_lines), len(p.data) + _ITEM_OVERHEAD
            ):
                self.dropped += p.lines

    def mark_dropped(self, intake: Intake, ts: float, *, force: bool = False) -> None:
        """Queue the `dropped N lines` marker once there is room (always, with `force`)."""
        text = b"logbus: dropped %d lines from %s (buffer full)\n" % (self.dropped, self.token)
        if intake.offer((self.service, self.instance, b"sys", ts, text, 1), len(text) + _ITEM_OVERHEAD, force=force):
            log.warning(
                "dropped log lines",
                service=self.service,
                instance=self.instance.decode(errors="replace"),
                stream=self.token.decode(),
                lines=self.dropped,
            )
            self.dropped = 0


class PumpThread:
    """Reads every attached fd until EOF; `attach` may be called from any thread, before or after start."""

    def __init__(self, intake: Intake, clock: Clock) -> None:
        self.intake = intake
        self.clock = clock
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._pending: list[tuple[int, Source]] = []
        self._lock = threading.Lock()
        self._sources: dict[int, Source] = {}
        self._stop = False
        self._thread: threading.Thread | None = None
        self.on_eof: Callable[[Source], None] | None = None

    @property
    def attached(self) -> int:
        return len(self._sources) + len(self._pending)

    def attach(self, fd: int, source: Source) -> None:
        os.set_blocking(fd, False)
        # A deeper pipe (1 MiB, the unprivileged maximum) gives the child slack while this thread
        # waits for the GIL; not a pipe (a socket, a pty): nothing to do.
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_BYTES)
        with self._lock:
            self._pending.append((fd, source))
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"x")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="logbus-pump", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float) -> None:
        """Read what the pipes hold now, close them, and end the thread."""
        self._stop = True
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout_s)
        with self._lock:
            pending, self._pending = self._pending, []
        for fd, _ in pending:
            os.close(fd)

    def _run(self) -> None:
        try:
            while not self._stop:
                for key, _ in self._sel.select(0.5):
                    if key.data is None:
                        self._take_pending()
                    else:
                        self._read(key.fd, key.data)
                self._retry_markers()
            for fd, src in list(self._sources.items()):
                self._read(fd, src)
                if fd in self._sources:  # still open: keep what was read, including a partial last line
                    ts = self.clock.now()
                    src.offer(self.intake, src.splitter.flush(), ts)
                    if src.dropped:
                        src.mark_dropped(self.intake, ts, force=True)
        finally:
            for fd in list(self._sources):
                self._close(fd)
            self._sel.close()
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _take_pending(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass
        with self._lock:
            pending, self._pending = self._pending, []
        for fd, src in pending:
            try:
                self._sel.register(fd, selectors.EVENT_READ, src)
                self._sources[fd] = src
            except (ValueError, OSError) as e:
                log.error("cannot pump this fd", service=src.service, fd=fd, error=repr(e))
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _read(self, fd: int, src: Source) -> None:
        # A bounded number of reads per wakeup, so one flooding pipe cannot starve the others.
        for _ in range(8):
            try:
                data = os.read(fd, READ_BYTES)
            except BlockingIOError:
                return
            except OSError as e:
                log.warning("log pipe read failed", service=src.service, error=repr(e))
                data = b""
            ts = self.clock.now()
            if not data:
                src.offer(self.intake, src.splitter.flush(), ts)
                if src.dropped:
                    src.mark_dropped(self.intake, ts, force=True)
                self._close(fd)
                if self.on_eof is not None:
                    self.on_eof(src)
                return
            src.offer(self.intake, src.splitter.feed(data), ts)

    def _close(self, fd: int) -> None:
        if self._sources.pop(fd, None) is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(fd)
            os.close(fd)

    def _retry_markers(self) -> None:
        for src in self._sources.values():
            if src.dropped:
                src.mark_dropped(self.intake, self.clock.now())
