"""Walking stored records: a log file is a sequence of *line records* and *chunk records*.

    2026-11-23T08:10:00.123456Z out web-1 one line of the service\\n              a line record
    @2026-11-23T08:10:00.123456Z out web-1 4096\\n                                a chunk record:
    <4096 bytes: complete lines, as the service wrote them>                     header + lines

A line record carries its own timestamp, stream token and instance (see `logbus.format`). A chunk
record's header carries them once for every line of its payload: the lines of one pipe read, which the
pump stamps with one time anyway. So the writer stores a read of thousands of lines as one header and
the bytes as read (no per-line copy, no per-line prefix), and readers learn each line's metadata from
its chunk.

Telling them apart: a line record starts with a digit (its timestamp); a header starts with `@`, and a
header's payload is skipped by its length, never looked at. So from any record boundary a reader finds
the next header of a run of line records with one C-level `find` of `\\n@`, and a block of big chunks
costs one Python step per chunk, not per line. Files written before chunk records existed are runs of
line records only and read exactly as before. A line starting with `@` that is not a valid header
(only a torn write can make one) is read as a damaged line record.

Pure: no I/O. Offsets are into the buffer given.
"""

from __future__ import annotations

from typing import NamedTuple

from logbus.format import TOKEN_STREAM, TS_LEN, format_records

_AT = ord("@")


class Seg(NamedTuple):
    """A chunk (`head` = (timestamp, token, instance)) or a run of line records (`head` None).

    Lines occupy [text, end); for a chunk `start` is where its header begins, for a run `text == start`.
    """

    start: int
    text: int
    end: int
    head: tuple[bytes, bytes, bytes] | None


def chunk_header(ts_iso: bytes, token: bytes, instance: bytes, nbytes: int) -> bytes:
    """The header of a chunk of `nbytes` of complete lines."""
    return b"@%s %s %s %d\n" % (ts_iso, token, instance, nbytes)


def parse_header(line: bytes) -> tuple[bytes, bytes, bytes, int] | None:
    """(timestamp, token, instance, payload bytes) of a header line (without its `\\n`), else None."""
    parts = line[1:].split(b" ")
    if len(parts) != 4 or line[:1] != b"@":
        return None
    ts, tok, inst, n = parts
    if len(ts) != TS_LEN or not n.isdigit() or not tok or not inst:
        return None
    return ts, tok, inst, int(n)


def segments(buf: bytes, lo: int = 0, hi: int | None = None) -> list[Seg]:
    """buf[lo:hi] (`lo` at a record boundary) as chunks and runs of line records, in order.

    A chunk whose payload runs past `hi` is cut there; `complete_prefix` says where whole records end.
    """
    hi = len(buf) if hi is None else hi
    out: list[Seg] = []
    p = lo
    while p < hi:
        q = p  # the run of line records starts at p; q: where to look for the next header from
        if buf[p] == _AT:
            nl = buf.find(b"\n", p, hi)
            head = parse_header(buf[p:nl]) if nl >= 0 else None
            if head is not None:
                e = min(nl + 1 + head[3], hi)
                out.append(Seg(p, nl + 1, e, head[:3]))
                p = e
                continue
            q = nl + 1 if nl >= 0 else hi  # a damaged line: a line record of its own
        k = _next_header(buf, q - 1 if q > p else p, hi) if q < hi else -1
        e = k + 1 if k >= 0 else hi
        if out and out[-1].head is None and out[-1].end == p:
            p0 = out.pop().start
            out.append(Seg(p0, p0, e, None))
        else:
            out.append(Seg(p, p, e, None))
        p = e
    return out


def _next_header(buf: bytes, start: int, hi: int) -> int:
    """`buf.find(b"\\n@", start, hi)`, faster: `@` alone is found with `memchr` (~50x faster than a
    two-byte `find`), so a run of line records without `@` in its text costs next to nothing. Text full
    of `@` (e-mail addresses) falls back to the two-byte `find` after a few false hits."""
    i = start + 1
    for _ in range(16):
        i = buf.find(b"@", i, hi)
        if i < 0:
            return -1
        if buf[i - 1] == 10:
            return i - 1
        i += 1
    return buf.find(b"\n@", i - 1, hi)


def complete_prefix(buf: bytes, segs: list[Seg]) -> int:
    """Where the whole records at the start of `buf` end (what `segments` found, minus a chunk cut short
    by the end of the buffer and an unterminated last line)."""
    end = 0
    for s in segs:
        if s.head is not None:
            h = parse_header(buf[s.start : s.text - 1])
            if h is None or s.text + h[3] > s.end:
                return end
            end = s.end
        else:
            k = buf.rfind(b"\n", s.start, s.end)
            if k + 1 < s.end:
                return k + 1 if k >= s.start else end
            end = s.end
    return end


def expand(buf: bytes, lo: int = 0, hi: int | None = None) -> bytes:
    """buf[lo:hi] (record boundaries) as line records only: the form downloads and live-tail batches
    use, which every line parser (`record_dict`, `Matcher.spans`) understands."""
    return expand_segs(buf, segments(buf, lo, hi), lo, len(buf) if hi is None else hi)


def expand_segs(buf: bytes, segs: list[Seg], lo: int, hi: int) -> bytes:
    """`expand` over segments already found, clipped to [lo, hi) (which may be line boundaries inside
    a chunk's lines). One C-level `replace` per chunk."""
    out: list[bytes] = []
    for s in segs:
        a, e = max(s.text, lo), min(s.end, hi)
        if a >= e:
            continue
        out.append(buf[a:e] if s.head is None else format_records(*s.head, buf[a:e]))
    return b"".join(out)


class LineMeta(NamedTuple):
    """A chunk's metadata decoded once for all of its lines: what the API's line dicts hold."""

    ts: str
    instance: str
    stream: str
    continued: bool


def line_meta(head: tuple[bytes, bytes, bytes]) -> LineMeta:
    ts, tok, inst = head
    return LineMeta(
        ts.decode("ascii", "replace"),
        inst.decode("utf-8", "replace"),
        TOKEN_STREAM.get(tok, "unknown"),
        tok.endswith(b"+"),
    )


def chunk_line_dict(text: bytes, service: str, meta: LineMeta) -> dict[str, object]:
    """The API's dict for one line of a chunk (`text` without its `\\n`); the keys of `record_dict`."""
    d: dict[str, object] = {
        "ts": meta.ts,
        "service": service,
        "instance": meta.instance,
        "stream": meta.stream,
        "text": text.decode("utf-8", "replace"),
    }
    if meta.continued:
        d["continued"] = True
    return d


def seek(buf: bytes, segs: list[Seg], iso: bytes, lo: int = 0) -> int:
    """Offset of the first line at or after `lo` whose timestamp is ≥ `iso` (the buffer's end if none).

    Lines only move forward in time, so whole chunks are passed by their header and runs of line
    records are bisected (`seek_ts`)."""
    for s in segs:
        if s.end <= lo:
            continue
        if s.head is not None:
            if s.head[0] >= iso:
                return max(s.start, lo)
            continue
        k = buf.rfind(b"\n", s.start, s.end - 1)
        k = k + 1 if k >= 0 else s.start  # the run's last line
        if buf[k : k + TS_LEN] < iso:
            continue
        return seek_ts(buf, iso, max(s.start, lo), s.end)
    return len(buf)


def seek_ts(buf: bytes, iso: bytes, lo: int = 0, hi: int | None = None) -> int:
    """Offset of the first line record in buf[lo:hi] whose timestamp is ≥ `iso` (hi if none); lines are
    in time order, so this bisects on byte positions. `lo` must be a line start."""
    a, b = lo, len(buf) if hi is None else hi
    end = b
    # Invariant: every line before `a` is earlier than `iso`; `b` is `end` or a line start at/after it.
    while a < b:
        mid = (a + b) // 2
        k = buf.rfind(b"\n", a, mid)
        ls = k + 1 if k >= 0 else a
        if buf[ls : ls + TS_LEN] < iso:
            a = buf.find(b"\n", ls, end) + 1 or end
        else:
            b = ls
    return a


class BlockCut(NamedTuple):
    """One index row's worth of records: [start, end) with the first and last line's timestamp text."""

    start: int
    end: int
    first_ts: bytes
    last_ts: bytes
    lines: int


def cut_blocks(buf: bytes, segs: list[Seg], end: int, block_bytes: int) -> list[BlockCut]:
    """buf[:end] (whole records, `segs` found over it) in blocks of about `block_bytes`, each starting at
    a record boundary: chunks are never split, runs of line records are split between lines."""
    out: list[BlockCut] = []
    start = -1
    first = last = b""
    lines = 0

    def close(at: int) -> None:
        nonlocal start, lines
        if start >= 0 and at > start:
            out.append(BlockCut(start, at, first, last, lines))
        start, lines = -1, 0

    for s in segs:
        if s.start >= end:
            break
        if s.head is not None:
            if start < 0:
                start, first = s.start, s.head[0]
            last = s.head[0]
            lines += buf.count(b"\n", s.text, s.end)
            if s.end - start >= block_bytes:
                close(s.end)
            continue
        p, e = s.start, min(s.end, end)
        while p < e:
            if start < 0:
                start, first = p, buf[p : p + TS_LEN]
            room = max(1, block_bytes - (p - start))
            cut = e if e - p <= room else (buf.rfind(b"\n", p, p + room) + 1 or buf.find(b"\n", p + room, e) + 1 or e)
            k = buf.rfind(b"\n", p, cut - 1)
            k = k + 1 if k >= 0 else p
            last = buf[k : k + TS_LEN]
            lines += buf.count(b"\n", p, cut)
            p = cut
            if p - start >= block_bytes:
                close(p)
    close(end)
    return out
