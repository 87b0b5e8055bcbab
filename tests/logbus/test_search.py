"""Matching and seeking over stored records: pure, against buffers built with the real formatter."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logbus.format import format_records, iso_bytes, parse_record
from logbus.search import Matcher, decode_cursor, encode_cursor, seek_ts


def buf_of(*lines: tuple[float, bytes, str]) -> bytes:
    return b"".join(format_records(iso_bytes(ts), tok, b"web-1", text.encode() + b"\n") for ts, tok, text in lines)


def texts(m: Matcher, buf: bytes) -> list[str]:
    return [parse_record(buf[a:b]).text for a, b in m.spans(buf, 0, len(buf))]


BUF = buf_of(
    (1.0, b"out", "GET /index Error here"),
    (2.0, b"err", "error: disk full"),
    (3.0, b"out", "all fine"),
    (4.0, b"out", "outlier 2026"),
    (5.0, b"sys", "logbus: dropped 3 lines"),
    (6.0, b"err+", "ERRORS continue"),
)


def test_keyword_is_case_insensitive_and_ignores_the_prefix() -> None:
    assert texts(Matcher("error"), BUF) == ["GET /index Error here", "error: disk full", "ERRORS continue"]
    assert texts(Matcher("out"), BUF) == ["outlier 2026"]  # not every `out` stream token
    assert texts(Matcher("web-1"), BUF) == []  # the instance is not text
    assert texts(Matcher("1970"), BUF) == []  # nor the timestamp


def test_regex_fast_and_anchored_paths() -> None:
    assert texts(Matcher(regex=r"dis[kc] \w+"), BUF) == ["error: disk full"]
    assert texts(Matcher(regex=r"^all"), BUF) == ["all fine"]  # anchors apply to the text
    assert texts(Matcher(regex=r"\d{4}$"), BUF) == ["outlier 2026"]
    assert texts(Matcher(regex=r"\d+"), BUF) == ["outlier 2026", "logbus: dropped 3 lines"]
    assert texts(Matcher(regex=r"(?i)error"), BUF) == ["GET /index Error here", "error: disk full", "ERRORS continue"]


def test_keyword_and_regex_and_stream_together() -> None:
    m = Matcher("error", r"disk", frozenset({"stderr"}))
    assert texts(m, BUF) == ["error: disk full"]
    only_out = texts(Matcher(streams=frozenset({"stdout"})), BUF)
    assert only_out == ["GET /index Error here", "all fine", "outlier 2026", "logbus: dropped 3 lines"]


def test_non_ascii_keyword() -> None:
    b = buf_of((1.0, b"out", "Grüße aus KÖLN"), (2.0, b"out", "nothing"))
    assert texts(Matcher("köln"), b) == ["Grüße aus KÖLN"]


def test_bad_regex_is_a_precise_error() -> None:
    with pytest.raises(ValueError, match=r"regex '\(unclosed' is invalid"):
        Matcher(regex="(unclosed")


@given(
    st.lists(st.floats(min_value=0, max_value=1000), min_size=1, max_size=40), st.floats(min_value=-1, max_value=1001)
)
def test_seek_finds_the_first_line_at_or_after(tss: list[float], bound: float) -> None:
    tss = sorted(round(t, 6) for t in tss)
    b = buf_of(*[(t, b"out", f"line {i}") for i, t in enumerate(tss)])
    pos = seek_ts(b, iso_bytes(max(bound, 0)))
    before = b[:pos].count(b"\n")
    assert before == sum(1 for t in tss if iso_bytes(t) < iso_bytes(max(bound, 0)))
    assert pos == len(b) or b[pos - 1 : pos] in (b"", b"\n")


def test_cursor_round_trip_and_garbage() -> None:
    c = encode_cursor({"web": (3, 1024), "db": (1, 0)})
    assert decode_cursor(c) == {"web": (3, 1024), "db": (1, 0)}
    for bad in ("!!!", "eyJ4Ijo1fQ", "bm90IGpzb24"):
        with pytest.raises(ValueError, match="cursor"):
            decode_cursor(bad)


@pytest.mark.parametrize("pattern", ["(a+)+$", "(x*)*y", "(?:\\d+)+", "(r{1,})+o"])
def test_nested_quantifiers_are_fine_with_re2(pattern: str) -> None:
    """Once refused as catastrophic-backtracking shapes; RE2 matches them in linear time (test_pattern).
    On these short lines Python's `re` is quick, and the answers agree."""
    every = [parse_record(BUF[a:b]).text for a, b in Matcher().spans(BUF, 0, len(BUF))]
    assert texts(Matcher(regex=pattern), BUF) == [t for t in every if re.search(pattern, t)]


def test_overlong_regex_is_refused() -> None:
    with pytest.raises(ValueError, match="at most 500"):
        Matcher(regex="a" * 501)


def test_keyword_without_letters_and_with_a_regex() -> None:
    b = buf_of((1.0, b"out", "took 500ms"), (2.0, b"out", "code 500"), (3.0, b"out", "5 0 0"))
    assert texts(Matcher("500"), b) == ["took 500ms", "code 500"]
    assert texts(Matcher("500", r"^code"), b) == ["code 500"]


def test_keyword_search_across_cache_windows_and_over_long_lines() -> None:
    rows = [(float(i), b"out", f"row {i} {'Needle' if i % 333 == 0 else 'hay' * 20}") for i in range(3000)]
    rows.insert(1500, (1499.5, b"out", "x" * 100_000 + " needle at the end of a very long line"))
    b = buf_of(*rows)
    assert len(b) > 4 * 64 * 1024
    got = texts(Matcher("NEEDLE"), b)
    expected = [f"row {i} Needle" for i in range(0, 3000, 333)]
    expected.insert(5, "x" * 100_000 + " needle at the end of a very long line")
    assert got == expected
