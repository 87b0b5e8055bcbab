"""Chunk records and line records side by side: walking, expanding, seeking and cutting into blocks.
Pure; buffers are built with the real formatters."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from logbus.format import format_records, iso_bytes, parse_record
from logbus.records import (
    chunk_header,
    complete_prefix,
    cut_blocks,
    expand,
    parse_header,
    seek,
    segments,
)

INST = b"web-1"

# (timestamp, token, lines, as a chunk?)
Item = tuple[float, bytes, list[bytes], bool]


def build(items: list[Item]) -> tuple[bytes, bytes]:
    """The stored form of `items`, and the same lines as line records only (what `expand` must give)."""
    stored, expanded = [], []
    for ts, tok, lines, chunked in items:
        payload = b"".join(x + b"\n" for x in lines)
        iso = iso_bytes(ts)
        if chunked:
            stored.append(chunk_header(iso, tok, INST, len(payload)) + payload)
        else:
            stored.append(format_records(iso, tok, INST, payload))
        expanded.append(format_records(iso, tok, INST, payload))
    return b"".join(stored), b"".join(expanded)


ITEMS: list[Item] = [
    (1.0, b"out", [b"plain line"], False),
    (2.0, b"out", [b"one", b"@not a header: payload is skipped", b"2026-01-01T00:00:00.000000Z out x fake"], True),
    (3.0, b"err", [b"an error"], False),
    (4.0, b"err", [b"a", b"b"], True),
    (5.0, b"out", [b"@2026-01-01T00:00:00.000000Z out x 5", b"looks like a header, is text"], True),
    (6.0, b"sys", [b"logbus: dropped 3 lines"], False),
]


def test_segments_tell_chunks_from_line_records() -> None:
    buf, expanded = build(ITEMS)
    segs = segments(buf)
    kinds = [(s.head[1] if s.head else None) for s in segs]
    assert kinds == [None, b"out", None, b"err", b"out", None]
    assert segs[1].head == (iso_bytes(2.0), b"out", INST)
    assert (
        buf[segs[1].text : segs[1].end] == b"one\n@not a header: payload is skipped\n"
        b"2026-01-01T00:00:00.000000Z out x fake\n"
    )
    assert segs[0].end == segs[1].start and segs[-1].end == len(buf)
    assert expand(buf) == expanded
    assert [parse_record(x).text for x in expanded.splitlines()][1:3] == ["one", "@not a header: payload is skipped"]


def test_a_damaged_header_line_is_read_as_a_line_record() -> None:
    buf = b"@torn header\n" + build([(1.0, b"out", [b"x", b"y"], True)])[0] + b"@2026 also bad\nrest\n"
    segs = segments(buf)
    assert [s.head is None for s in segs] == [True, False, True]
    assert buf[segs[0].start : segs[0].end] == b"@torn header\n"
    assert buf[segs[2].start : segs[2].end] == b"@2026 also bad\nrest\n"


def test_runs_with_many_at_signs_still_find_the_next_header() -> None:
    run = b"".join(format_records(iso_bytes(1.0), b"out", INST, b"mail a@b.c @ x@y\n") for _ in range(40))
    chunk = build([(2.0, b"out", [b"p", b"q"], True)])[0]
    buf = run + chunk + run
    segs = segments(buf)
    assert [(s.start, s.end, s.head is None) for s in segs] == [
        (0, len(run), True),
        (len(run), len(run) + len(chunk), False),
        (len(run) + len(chunk), len(buf), True),
    ]


def test_header_round_trip_and_refusals() -> None:
    h = chunk_header(iso_bytes(1.0), b"err", INST, 42)
    assert parse_header(h[:-1]) == (iso_bytes(1.0), b"err", INST, 42)
    for bad in (
        b"@x out w 1",
        b"@" + iso_bytes(1.0) + b" out w",
        b"@" + iso_bytes(1.0) + b" out w -1",
        iso_bytes(1.0) + b" out w 1",
    ):
        assert parse_header(bad) is None


def test_complete_prefix_stops_before_a_torn_record() -> None:
    buf, expanded = build(ITEMS)
    ends, at = [], 0  # where each record ends: each line record, each chunk
    for item in ITEMS:
        if item[3]:
            at += len(build([item])[0])
            ends.append(at)
        else:
            for x in item[2]:
                at += len(build([(item[0], item[1], [x], False)])[0])
                ends.append(at)
    for cut in range(len(buf) + 1):
        part = buf[:cut]
        got = complete_prefix(part, segments(part))
        assert got == max([e for e in ends if e <= cut], default=0), cut
        assert expanded.startswith(expand(buf[:got]))


@st.composite
def items(draw: st.DrawFn) -> list[Item]:
    out: list[Item] = []
    ts = 1_700_000_000.0
    line = st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")) | st.sampled_from(
        [b"@", b"@x", b"@" + iso_bytes(1.0) + b" out w 3", b"", b"2026-01-01T00:00:00.000000Z out x y"]
    )
    for _ in range(draw(st.integers(0, 25))):
        ts += draw(st.sampled_from([0.0, 0.5, 1.0, 7.0]))
        chunked = draw(st.booleans())
        lines = draw(st.lists(line, min_size=2 if chunked else 1, max_size=6 if chunked else 1))
        out.append((round(ts, 6), draw(st.sampled_from([b"out", b"err", b"sys", b"out+"])), lines, chunked))
    return out


@settings(max_examples=200, deadline=None)
@given(items(), st.integers(min_value=16, max_value=400), st.floats(min_value=1_699_999_999, max_value=1_700_000_200))
def test_walk_expand_seek_and_blocks_agree_with_the_lines(its: list[Item], block: int, bound: float) -> None:
    buf, expanded = build(its)
    segs = segments(buf)
    assert expand(buf) == expanded
    # Every line's timestamp, in file order, from the segments.
    stamps: list[bytes] = []
    for s in segs:
        n = buf.count(b"\n", s.text, s.end)
        if s.head is not None:
            stamps += [s.head[0]] * n
        else:
            stamps += [x[:27] for x in buf[s.start : s.end].split(b"\n")[:-1]]
    assert stamps == [x[:27] for x in expanded.split(b"\n")[:-1]]
    # seek: the lines before the offset are exactly those earlier than the bound.
    iso = iso_bytes(bound)
    pos = seek(buf, segs, iso)
    before = expand(buf, 0, pos).count(b"\n") if pos < len(buf) else len(stamps)
    assert before == sum(1 for t in stamps if t < iso)
    # Blocks: contiguous, at record boundaries, with the right counts and first/last stamps.
    cuts = cut_blocks(buf, segs, len(buf), block)
    assert [c.start for c in cuts[1:]] == [c.end for c in cuts[:-1]]
    assert (cuts[0].start if cuts else 0) == 0 and (cuts[-1].end if cuts else 0) == len(buf)
    assert sum(c.lines for c in cuts) == len(stamps)
    seen = 0
    for c in cuts:
        part = expand(buf[c.start : c.end])
        assert part.count(b"\n") == c.lines
        assert (c.first_ts, c.last_ts) == (stamps[seen], stamps[seen + c.lines - 1])
        seen += c.lines
