"""The fallback `LogSink` used when logbus is not wired: each instance's output to
`<data_dir>/logs/<service>/<YYYYMMDD>.log`, one line per output line with time, instance and stream."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from core.ports import Stream

log = structlog.get_logger("orch.logfiles")

_MAX_LINE = 64 * 1024


class FileLogSink:
    """Pumps pipes on the loop (non-blocking reads, appends to small files); never slows the writer."""

    def __init__(self, logs_dir: Path) -> None:
        self.logs_dir = logs_dir
        self._fds: dict[int, tuple[str, str, Stream, bytearray]] = {}

    def attach(self, service: str, instance: str, stream: Stream, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fds[fd] = (service, instance, stream, bytearray())
        asyncio.get_running_loop().add_reader(fd, self._readable, fd)

    def append(self, service: str, instance: str, stream: Stream, data: bytes) -> None:
        self._write(service, instance, stream, data.splitlines())

    def room(self) -> int:
        return 1 << 30  # writes synchronously: never drops

    def when_stored(self, fn: Callable[[], None]) -> None:
        fn()  # `append` wrote before returning

    def _readable(self, fd: int) -> None:
        service, instance, stream, buf = self._fds[fd]
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._close(fd)
            return
        buf += chunk
        *lines, rest = bytes(buf).split(b"\n")
        if len(rest) > _MAX_LINE:
            lines.append(rest)
            rest = b""
        buf[:] = rest
        if lines:
            self._write(service, instance, stream, lines)

    def _close(self, fd: int) -> None:
        service, instance, stream, buf = self._fds.pop(fd)
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(fd)
        os.close(fd)
        if buf:
            self._write(service, instance, stream, [bytes(buf)])

    def _write(self, service: str, instance: str, stream: Stream, lines: list[bytes]) -> None:
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
        d = self.logs_dir / service
        try:
            d.mkdir(parents=True, exist_ok=True)
            with open(d / f"{time.strftime('%Y%m%d', time.gmtime(now))}.log", "ab") as f:
                f.write(b"".join(f"{stamp} {instance} {stream} ".encode() + line + b"\n" for line in lines))
        except OSError as e:
            log.warning("cannot write service output", service=service, error=e.strerror)

    def close(self) -> None:
        for fd in list(self._fds):
            self._close(fd)
