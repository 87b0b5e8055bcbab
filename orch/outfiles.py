"""Output files of native instances: each instance's stdout and stderr are files it appends to (O_APPEND)
under `<data>/run/orch/out/`, shipped to the `LogSink` by one tailer thread. The child never depends on the
platform to write (no pipe to fill or break), so instances outlive `fsctl serve`.

Each instance has a manifest (`<name>.json`, written atomically) holding, per stream, the absolute stream
position the sink has *stored* (`stored`, confirmed through `LogSink.when_stored`) and how many bytes were
cut off the file's head (`base`): a new platform resumes exactly there, so output written while it was
down arrives once and in order. Only complete lines are shipped (the sink would hold a partial line in
memory), paced by `LogSink.room()` so a backlog never overflows the sink. The file is kept small by
removing the stored head with `FALLOC_FL_COLLAPSE_RANGE` (atomic with the child's appends); where the
file system cannot, the file is truncated once everything in it is stored (copytruncate: an append that
lands between the size check and the truncation is lost). A manifest whose process is gone is drained,
then deleted with its files. Pure decisions (`shippable`, `collapsible`) are tested directly.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import secrets
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from core.ports import LogSink, Stream

log = structlog.get_logger("orch.outfiles")

STREAMS: tuple[Stream, Stream] = ("stdout", "stderr")
CHUNK = 1024 * 1024  # most read and shipped per stream per pass
MAX_LINE = 64 * 1024  # a "line" this long without a newline is shipped as it is
_FALLOC_FL_COLLAPSE_RANGE = 0x08
_IN_MODIFY = 0x02
_libc = ctypes.CDLL(None, use_errno=True)
_fallocate = getattr(_libc, "fallocate", None)
if _fallocate is not None:
    _fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


def shippable(data: bytes, *, final: bool, max_line: int = MAX_LINE) -> int:
    """How many bytes of `data` (read from the stream's shipped position) to ship now: through the last
    newline; everything when the stream has ended (`final`) or when no newline came in `max_line` bytes."""
    if final:
        return len(data)
    n = data.rfind(b"\n") + 1
    if n == 0 and len(data) >= max_line:
        return len(data)
    return n


def collapsible(stored_off: int, size: int, max_bytes: int, block: int) -> int:
    """Bytes to cut off the file's head: the stored part, in whole blocks, once the stored part passes
    `max_bytes`; never up to EOF (the kernel refuses it). 0 when nothing is to be cut."""
    if stored_off < max_bytes or block <= 0:
        return 0
    n = min(stored_off, size - 1) // block * block
    return max(n, 0)


def _collapse(fd: int, length: int) -> bool:
    """Remove the first `length` bytes of the file; False when the file system cannot."""
    if _fallocate is None:
        return False
    if _fallocate(fd, _FALLOC_FL_COLLAPSE_RANGE, 0, length) == 0:
        return True
    err = ctypes.get_errno()
    if err not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
        log.warning("cannot cut an output file's head; truncating when shipped instead", error=os.strerror(err))
    return False


@dataclass
class _Stream:
    name: Stream
    path: Path
    fd: int
    base: int = 0  # bytes cut off the file's head so far: file offset = absolute position - base
    read: int = 0  # absolute position handed to the sink
    stored: int = 0  # absolute position the sink confirmed stored


@dataclass
class _Output:
    manifest: Path
    service: str
    instance: str
    pid: int | None
    start_ticks: int | None
    streams: dict[Stream, _Stream]
    ended: bool = False
    confirming: bool = False  # a `when_stored` call is in flight
    can_collapse: bool = True
    next_alive_check: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "instance": self.instance,
            "pid": self.pid,
            "start_ticks": self.start_ticks,
            "streams": {
                s.name: {"file": s.path.name, "base": s.base, "stored": s.stored} for s in self.streams.values()
            },
        }


@dataclass(frozen=True)
class NewOutput:
    """Files made for an instance about to start: the child's write ends (close them after the spawn)."""

    manifest: Path
    service: str
    instance: str
    paths: dict[Stream, Path]
    write_fds: dict[str, int]


class OutputFiles:
    """The tailer: ships every manifest's files in `dir` to `sink` on one thread. Thread-safe."""

    def __init__(
        self,
        sink: LogSink,
        dir: Path,
        *,
        max_bytes: int = 16 * 1024 * 1024,
        alive: Callable[[int, int | None], bool] | None = None,
        poll_s: float = 0.1,
    ) -> None:
        self.sink = sink
        self.dir = dir
        self.max_bytes = max_bytes
        self.poll_s = poll_s
        self._alive = alive or (lambda pid, ticks: True)
        self._outputs: dict[Path, _Output] = {}
        self._lock = threading.Lock()
        self._wake = _Wakeups()
        self._stop = False
        self._unstored = 0  # `when_stored` calls not answered yet
        self._thread: threading.Thread | None = None

    # --- the runtime's side ------------------------------------------------------------------------

    def start(self) -> None:
        """Pick up what the last run left (instances alive or not) and start shipping."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._wake.watch(self.dir)
        for manifest in sorted(self.dir.glob("*.json")):
            self.adopt(manifest)
        for path in self.dir.iterdir():  # a crash between creating files and recording them left these
            if (path.name.startswith(".") and path.name.endswith(".tmp")) or (
                path.suffix in (".stdout", ".stderr") and not path.with_suffix(".json").exists()
            ):
                log.warning("removing output file of no instance", path=str(path))
                path.unlink(missing_ok=True)
        self._thread = threading.Thread(target=self._run, name="orch-output", daemon=True)
        self._thread.start()

    def create(self, service: str, instance: str) -> NewOutput:
        """Empty files for a new instance of `service`, opened for the child to append to."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = f"{instance}-{secrets.token_hex(4)}"
        paths: dict[Stream, Path] = {s: self.dir / f"{name}.{s}" for s in STREAMS}
        fds: dict[str, int] = {}
        try:
            for s, p in paths.items():
                fds[s] = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        except OSError:
            for fd in fds.values():
                os.close(fd)
            for p in paths.values():
                p.unlink(missing_ok=True)
            raise
        return NewOutput(self.dir / f"{name}.json", service, instance, paths, fds)

    def discard(self, new: NewOutput) -> None:
        """The spawn failed: remove what `create` made."""
        for fd in new.write_fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        for p in new.paths.values():
            p.unlink(missing_ok=True)

    def started(self, new: NewOutput, pid: int, start_ticks: int | None) -> None:
        """The child runs (with its own copies of the write ends): record it and ship its output."""
        for fd in new.write_fds.values():
            os.close(fd)
        streams: dict[Stream, _Stream] = {}
        try:
            for s, p in new.paths.items():
                streams[s] = _Stream(s, p, os.open(p, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW))
            out = _Output(new.manifest, new.service, new.instance, pid, start_ticks, streams)
            _write_manifest(out)
        except OSError:  # (disk full, read-only) the caller stops the child: nothing of it is kept
            for st in streams.values():
                os.close(st.fd)
            for p in new.paths.values():
                p.unlink(missing_ok=True)
            raise
        with self._lock:
            self._outputs[out.manifest] = out
        self._wake.wake()

    def adopt(self, manifest: Path, *, ended: bool = False) -> bool:
        """Ship (from where the last run stopped) the output of an instance of an earlier run; `ended` when
        its process is known to be gone. False when the manifest is gone or unreadable (then it is removed)."""
        with self._lock:
            known = self._outputs.get(manifest)
        if known is not None:
            if ended:
                self.ended(manifest)
            return True
        streams: dict[Stream, _Stream] = {}
        if manifest.is_symlink() or not manifest.is_file():
            return False  # shipped and deleted already (or not a manifest at all)
        try:
            rec = json.loads(manifest.read_text())
            if not isinstance(rec, dict) or not isinstance(rec.get("streams"), dict):
                raise ValueError("not an output manifest")
            for s in STREAMS:
                st = rec["streams"][s]
                path = manifest.with_suffix(f".{s}")  # never a name from the file: it is cut and deleted
                if st.get("file") != path.name:
                    raise ValueError(f"{s} file is {st.get('file')!r}, expected {path.name!r}")
                base, stored = int(st["base"]), int(st["stored"])
                if not 0 <= base <= stored:
                    raise ValueError(f"{s} positions out of order (base {base}, stored {stored})")
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
                streams[s] = _Stream(s, path, fd, base, stored, stored)
            pid, ticks = rec.get("pid"), rec.get("start_ticks")
            if not isinstance(pid, int) or not isinstance(ticks, int | None):
                raise ValueError("pid/start_ticks are not numbers")
            out = _Output(manifest, str(rec["service"]), str(rec["instance"]), pid, ticks, streams, ended=ended)
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("ignoring unreadable output manifest", path=str(manifest), error=str(e))
            for st_ in streams.values():
                os.close(st_.fd)
            manifest.unlink(missing_ok=True)
            return False
        with self._lock:
            self._outputs[manifest] = out
        self._wake.wake()
        return True

    def ended(self, manifest: Path) -> None:
        """The instance's process is gone: ship the rest (a last partial line too), then delete its files."""
        with self._lock:
            out = self._outputs.get(manifest)
            if out is not None:
                out.ended = True
        self._wake.wake()

    def pending(self) -> int:
        """How many instances' outputs are being shipped (ended ones until their files are deleted)."""
        with self._lock:
            return len(self._outputs)

    def close(self, timeout_s: float = 6.0) -> None:
        """Ship what is there now, wait (up to `timeout_s`) until the sink stored it, and stop. What is left
        stays in the files for the next start."""
        self._stop = True
        self._wake.wake()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("output tailer did not finish in time")
                return
        with self._lock:
            outs, self._outputs = list(self._outputs.values()), {}
        self._wake.close()
        for out in outs:
            for st in out.streams.values():
                with contextlib.suppress(OSError):
                    os.close(st.fd)

    # --- the thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        deadline: float | None = None
        while True:
            if self._stop and deadline is None:
                # A chatty child always has more: what is left after a second is shipped at the next start.
                deadline = time.monotonic() + 1.0
            busy = backlog = False
            with self._lock:
                outs = list(self._outputs.values())
            for out in outs:
                try:
                    b, bl = self._pass(out)
                    busy, backlog = busy or b, backlog or bl
                except Exception as e:  # one instance's files must not stop the others' shipping
                    log.error(
                        "shipping instance output failed; its files stay for the next start",
                        instance=out.instance,
                        manifest=str(out.manifest),
                        error=repr(e),
                    )
                    with self._lock:
                        self._outputs.pop(out.manifest, None)
                    for st in out.streams.values():
                        with contextlib.suppress(OSError):
                            os.close(st.fd)
            if deadline is not None and (not busy or time.monotonic() > deadline):
                while self._unstored and time.monotonic() < deadline + 3.0:
                    time.sleep(0.01)
                return
            if backlog:
                continue  # full reads: ship the rest at once
            if busy:
                time.sleep(0.01)  # caught up with a chatty writer: let it fill the next read (fewer passes)
            else:  # until a file in the directory is written (inotify), or a second for liveness checks
                self._wake.wait(1.0 if self._wake.watching else self.poll_s)

    def _pass(self, out: _Output) -> tuple[bool, bool]:
        """Ship what is new in `out`'s files. Says whether to come back soon (something was shipped, or
        waits for room in the sink), and whether a backlog is readable now (come back at once)."""
        now = time.monotonic()
        if not out.ended and out.pid is not None and now >= out.next_alive_check:
            out.next_alive_check = now + 1.0
            if not self._alive(out.pid, out.start_ticks):
                out.ended = True
        ended = out.ended
        shipped: dict[str, int] = {}
        more = backlog = False
        for st in out.streams.values():
            n, left = self._ship(out, st, final=ended)
            if n:
                shipped[st.name] = st.read
            more, backlog = more or left, backlog or (left and n > 0)
        if not out.confirming and any(st.read > st.stored for st in out.streams.values()):
            # One confirmation in flight per instance: at most one manifest write per sink batch.
            self._confirm(out, {st.name: st.read for st in out.streams.values()})
        if ended and not more and not shipped and all(st.stored == st.read for st in out.streams.values()):
            self._delete(out)
            return False, False
        self._trim(out)
        unconfirmed = any(st.read > st.stored for st in out.streams.values())
        return more or bool(shipped) or unconfirmed, backlog

    def _ship(self, out: _Output, st: _Stream, *, final: bool) -> tuple[int, bool]:
        size = os.fstat(st.fd).st_size
        off = st.read - st.base
        if size < off:  # cut by someone else: start again at the file's head
            log.warning("instance output file shrank", instance=out.instance, stream=st.name, path=str(st.path))
            st.base = st.read  # what is in it now is new
            off = st.read - st.base
        waiting = size - off
        if waiting <= 0:
            return 0, False
        budget = CHUNK
        room = getattr(self.sink, "room", None)
        if room is not None:
            budget = min(budget, room() // 2)
            if budget < 4096:
                return 0, True  # the sink is full: try again shortly; nothing is dropped
        data = os.pread(st.fd, min(waiting, budget), off)
        n = shippable(data, final=final and len(data) == waiting)
        if n:
            chunk = data[:n]
            if final and not chunk.endswith(b"\n"):
                chunk += b"\n"  # a last partial line: the sink holds partial lines until their newline
            self.sink.append(out.service, out.instance, st.name, chunk)
            st.read += n
        return n, waiting - n > 0 and (n > 0 or len(data) < waiting)

    def _confirm(self, out: _Output, positions: dict[Stream, int]) -> None:
        """Persist `positions` once the sink says they are stored (a crash before: shipped again)."""
        with self._lock:
            self._unstored += 1
        out.confirming = True

        def stored() -> None:
            try:
                with out.lock:
                    for name, pos in positions.items():
                        st = out.streams[name]
                        st.stored = max(st.stored, pos)
                    if out.manifest.exists():
                        _write_manifest(out)
            except OSError as e:
                log.warning("cannot record shipped output position", instance=out.instance, error=str(e))
            finally:
                out.confirming = False
                with self._lock:
                    self._unstored -= 1
                self._wake.wake()

        when_stored = getattr(self.sink, "when_stored", None)
        if when_stored is None:
            stored()
        else:
            when_stored(stored)

    def _trim(self, out: _Output) -> None:
        """Keep each file under about `max_bytes` by cutting off what the sink has stored."""
        for st in out.streams.values():
            with out.lock:
                stored_off = st.stored - st.base
                if stored_off < self.max_bytes:
                    continue
                stat = os.fstat(st.fd)
                cut = (
                    collapsible(stored_off, stat.st_size, self.max_bytes, stat.st_blksize or 4096)
                    if out.can_collapse
                    else 0
                )
                if cut and _collapse(st.fd, cut):
                    st.base += cut
                elif cut or not out.can_collapse:
                    out.can_collapse = False
                    if st.read != st.stored or stat.st_size != st.read - st.base:
                        continue  # copytruncate only once everything in the file is stored
                    os.ftruncate(st.fd, 0)
                    st.base = st.read
                else:
                    continue
                _write_manifest(out)

    def _delete(self, out: _Output) -> None:
        with self._lock:
            self._outputs.pop(out.manifest, None)
        with out.lock:
            for st in out.streams.values():
                with contextlib.suppress(OSError):
                    os.close(st.fd)
                st.path.unlink(missing_ok=True)
            out.manifest.unlink(missing_ok=True)


class _Wakeups:
    """What wakes the tailer: a write to a file of the watched directory (inotify `IN_MODIFY`, so idle
    instances cost nothing between liveness checks), or `wake()`. Without inotify: polling."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._ifd = -1
        self._poll = select.poll()
        self._poll.register(self._r, select.POLLIN)
        self._lock = threading.Lock()  # `wake` (any thread) never writes to an fd number `close` freed

    @property
    def watching(self) -> bool:
        return self._ifd >= 0

    def watch(self, dir: Path) -> None:
        init, add = getattr(_libc, "inotify_init1", None), getattr(_libc, "inotify_add_watch", None)
        if init is None or add is None or self._ifd >= 0:
            return
        fd = init(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            return
        if add(fd, os.fsencode(dir), _IN_MODIFY) < 0:
            os.close(fd)
            return
        self._ifd = fd
        self._poll.register(fd, select.POLLIN)

    def wake(self) -> None:
        with self._lock, contextlib.suppress(BlockingIOError, OSError):
            if self._w >= 0:
                os.write(self._w, b"x")

    def wait(self, timeout_s: float) -> None:
        self._poll.poll(timeout_s * 1000)
        for fd in (self._r, self._ifd):
            with contextlib.suppress(BlockingIOError, OSError):
                while fd >= 0 and os.read(fd, 65536):
                    pass

    def close(self) -> None:
        with self._lock:
            for fd in (self._r, self._w, self._ifd):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._r = self._w = self._ifd = -1


def _write_manifest(out: _Output) -> None:
    tmp = out.manifest.with_name(f".{out.manifest.name}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(json.dumps(out.record()))
        os.replace(tmp, out.manifest)
    except OSError:
        tmp.unlink(missing_ok=True)  # a part written before the disk filled up
        raise
