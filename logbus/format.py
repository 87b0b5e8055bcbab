"""The on-disk line record and the pure line splitter.

Files are `<data>/logs/<service>/<YYYYMMDD>[.<n>].log` (UTC days). A *line record* is one line:

    2026-11-23T08:10:00.123456Z out web-1 the service's own bytes, as written\n

(a read of several lines is stored as one *chunk record* instead, whose header carries these fields
once for all its lines: see `logbus.records`; every reader of files goes through that module).

- a fixed-width UTC timestamp (27 bytes), so timestamps order as bytes and a time bound is a byte
  comparison; lines of one service only move forward in time (the writer clamps);
- the stream token: `out` / `err`, with a `+` (`out+`) when the record is a piece of a longer line that
  continues in the next record of that stream; `sys` for logbus's own markers (`dropped N lines`);
- the instance name (no whitespace), then the text: the raw bytes, never re-encoded, so invalid UTF-8
  is kept and only shown with replacement characters.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

TS_LEN = 27
TOKEN_STREAM = {b"out": "stdout", b"err": "stderr", b"out+": "stdout", b"err+": "stderr", b"sys": "logbus"}
SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_WS = re.compile(rb"\s")


def check_service_name(name: str) -> str:
    """`name` if it can be a directory of logs, else ValueError saying what is allowed."""
    if not SERVICE_NAME.match(name):
        raise ValueError(
            f"{name!r} is not a valid service name: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def instance_token(instance: str) -> bytes:
    """The instance name as stored: whitespace replaced, never empty."""
    raw = instance.encode("utf-8", "replace")[:64]
    return _WS.sub(b"_", raw) or b"-"


def round_ts(ts: float) -> float:
    """Timestamps are kept to the microsecond, so the index's floats and the lines' text agree."""
    return round(ts, 6)


def iso(ts: float) -> str:
    """`2026-11-23T08:10:00.123456Z` for epoch seconds `ts` (UTC, fixed width)."""
    us_total = round(ts * 1_000_000)
    sec, us = divmod(us_total, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{us:06d}Z"


def iso_bytes(ts: float) -> bytes:
    return iso(ts).encode()


def parse_iso(text: str | bytes) -> float:
    """Epoch seconds of a stored timestamp; ValueError if it is not one."""
    s = text.decode() if isinstance(text, bytes) else text
    if len(s) != TS_LEN or not s.endswith("Z"):
        raise ValueError(f"{s!r} is not a stored timestamp")
    return datetime.fromisoformat(s[:-1]).replace(tzinfo=UTC).timestamp()


def day_of(ts: float) -> str:
    """The UTC day `YYYYMMDD` a timestamp's line is filed under."""
    return time.strftime("%Y%m%d", time.gmtime(int(ts)))


def file_name(day: str, seq: int) -> str:
    return f"{day}.log" if seq == 0 else f"{day}.{seq}.log"


_FILE_NAME = re.compile(r"^(\d{8})(?:\.(\d+))?\.log$")


def parse_file_name(name: str) -> tuple[str, int] | None:
    m = _FILE_NAME.match(name)
    return (m.group(1), int(m.group(2) or 0)) if m else None


def format_parts(ts_iso: bytes, token: bytes, instance: bytes, lines: bytes) -> tuple[bytes, memoryview]:
    """Each line of `lines` (complete lines, each ending in `\\n`) prefixed with timestamp, token and
    instance, as two buffers to write one after the other (`os.writev`): line records for the lines of
    a chunk. One C-level `replace`, not a Python loop per line.
    """
    prefix = b"%s %s %s " % (ts_iso, token, instance)
    body = lines.replace(b"\n", b"\n" + prefix)  # ends with one prefix too many: cut off by the view
    return prefix, memoryview(body)[: len(body) - len(prefix)]


def format_records(ts_iso: bytes, token: bytes, instance: bytes, lines: bytes) -> bytes:
    """`format_parts` as one bytes object."""
    head, body = format_parts(ts_iso, token, instance, lines)
    return head + bytes(body)


@dataclass(frozen=True)
class Record:
    """One stored line, parsed for display."""

    ts: str
    stream: str
    instance: str
    text: str
    continued: bool = False

    def to_dict(self, service: str) -> dict[str, object]:
        d: dict[str, object] = {
            "ts": self.ts,
            "service": service,
            "instance": self.instance,
            "stream": self.stream,
            "text": self.text,
        }
        if self.continued:
            d["continued"] = True
        return d


def record_dict(line: bytes, service: str) -> dict[str, object]:
    """`parse_record(line).to_dict(service)` without the intermediate object: the query hot path."""
    end = len(line) - 1 if line.endswith(b"\n") else len(line)
    i = line.find(b" ", TS_LEN + 1, end)
    j = line.find(b" ", i + 1, end) if i >= 0 else -1
    if j < 0:
        return parse_record(line).to_dict(service)
    token = line[TS_LEN + 1 : i]
    d: dict[str, object] = {
        "ts": line[:TS_LEN].decode("ascii", "replace"),
        "service": service,
        "instance": line[i + 1 : j].decode("utf-8", "replace"),
        "stream": TOKEN_STREAM.get(token, "unknown"),
        "text": line[j + 1 : end].decode("utf-8", "replace"),
    }
    if token.endswith(b"+"):
        d["continued"] = True
    return d


def parse_record(line: bytes) -> Record:
    """A stored line (with or without its `\\n`) → Record; text decoded with replacement characters."""
    if line.endswith(b"\n"):
        line = line[:-1]
    ts = line[:TS_LEN].decode("ascii", "replace")
    parts = line[TS_LEN + 1 :].split(b" ", 2)
    while len(parts) < 3:
        parts.append(b"")
    token, inst, text = parts
    return Record(
        ts=ts,
        stream=TOKEN_STREAM.get(token, "unknown"),
        instance=inst.decode("utf-8", "replace"),
        text=text.decode("utf-8", "replace"),
        continued=token.endswith(b"+"),
    )


def record_text_start(line: bytes, start: int = 0) -> int:
    """Offset in `line` (a buffer) where the text of the record beginning at `start` begins."""
    i = line.find(b" ", start + TS_LEN + 1)  # after the token
    if i < 0:
        return len(line)
    j = line.find(b" ", i + 1)  # after the instance
    return len(line) if j < 0 else j + 1


def _utf8_cut(data: bytes, limit: int) -> int:
    """A cut point ≤ limit that does not split a UTF-8 sequence (when the data is UTF-8 at all)."""
    cut = limit
    for _ in range(3):
        if cut > 1 and (data[cut] & 0xC0) == 0x80:
            cut -= 1
        else:
            break
    return cut if (data[cut] & 0xC0) != 0x80 else limit


def _has_long_line(buf: bytes, limit: int) -> bool:
    """Whether a line of `buf` (complete lines) is longer than `limit` bytes.

    A line of more than `limit` bytes covers a whole aligned window of (limit + 1) // 2 bytes, so when
    every such window holds a newline there is none: a few `find`s per MiB instead of a split.
    """
    step = (limit + 1) // 2
    n = len(buf)
    for p in range(0, n - step + 1, step):
        if buf.find(b"\n", p, p + step) < 0:
            return max(map(len, buf.split(b"\n"))) > limit
    return False


class Piece:
    """Complete lines (each ending in `\\n`) ready to store; `continued` means: one piece of a longer
    line, whose rest follows in the next piece of the same stream.

    The line count of a multi-line piece is left to whoever needs it (`lines` counts on first use): the
    pump hands pieces on uncounted and the writer thread counts while the pump is back reading.
    """

    __slots__ = ("_lines", "continued", "data")

    def __init__(self, data: bytes, lines: int | None = None, continued: bool = False) -> None:
        self.data = data
        self._lines = lines
        self.continued = continued

    @property
    def lines(self) -> int:
        if self._lines is None:
            self._lines = self.data.count(b"\n")
        return self._lines

    @property
    def known_lines(self) -> int | None:
        """The count if known without counting: 1 for a single line, else None (two or more)."""
        return self._lines

    def __repr__(self) -> str:
        return f"Piece({self.data[:40]!r}, lines={self._lines}, continued={self.continued})"


class LineSplitter:
    """Bytes from a pipe, in whatever pieces reads return, → complete lines; a line longer than
    `max_line_bytes` is cut into pieces marked as continued. Memory held: at most one partial line.

    Pure: no I/O, no clock. Not thread-safe; one per (instance, stream).
    """

    def __init__(self, max_line_bytes: int) -> None:
        self.max = max_line_bytes
        self.carry = b""

    def feed(self, data: bytes) -> list[Piece]:
        buf = self.carry + data if self.carry else data
        cut = buf.rfind(b"\n") + 1
        complete, rest = buf[:cut], buf[cut:]
        out: list[Piece] = []
        if complete:
            if len(complete) <= self.max + 1 or not _has_long_line(complete, self.max):
                # One line or more: `find` (memchr) answers that without counting them all.
                out.append(Piece(complete, 1 if complete.find(b"\n") == cut - 1 else None))
            else:
                self._split_long(complete, out)
        while len(rest) > self.max:
            c = _utf8_cut(rest, self.max)
            out.append(Piece(rest[:c] + b"\n", 1, True))
            rest = rest[c:]
        self.carry = rest
        return out

    def flush(self) -> list[Piece]:
        """At end of stream: the unterminated last line, if any."""
        if not self.carry:
            return []
        piece, self.carry = Piece(self.carry + b"\n", 1), b""
        return [piece]

    def _split_long(self, complete: bytes, out: list[Piece]) -> None:
        run: list[bytes] = []
        for line in complete[:-1].split(b"\n"):
            if len(line) <= self.max:
                run.append(line)
                continue
            if run:
                out.append(Piece(b"\n".join(run) + b"\n", len(run)))
                run = []
            while len(line) > self.max:
                c = _utf8_cut(line, self.max)
                out.append(Piece(line[:c] + b"\n", 1, True))
                line = line[c:]
            out.append(Piece(line + b"\n", 1))
        if run:
            out.append(Piece(b"\n".join(run) + b"\n", len(run)))
