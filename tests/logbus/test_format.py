"""The record format and the line splitter: pure, table and property tests."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logbus.format import (
    LineSplitter,
    check_service_name,
    day_of,
    file_name,
    format_records,
    instance_token,
    iso,
    parse_file_name,
    parse_iso,
    parse_record,
)


def test_iso_is_fixed_width_utc_and_round_trips() -> None:
    assert iso(0) == "1970-01-01T00:00:00.000000Z"
    assert iso(1_700_000_000.25) == "2023-11-14T22:13:20.250000Z"
    assert iso(1_700_000_000.9999996) == "2023-11-14T22:13:21.000000Z"  # rounding carries into the second
    for ts in (1.5, 1_700_000_000.123456, 1_800_000_000.000001):
        assert parse_iso(iso(ts)) == pytest.approx(ts, abs=1e-6)
    with pytest.raises(ValueError):
        parse_iso("garbage")


def test_day_and_file_names() -> None:
    assert day_of(1_700_000_000) == "20231114"
    assert file_name("20231114", 0) == "20231114.log"
    assert file_name("20231114", 3) == "20231114.3.log"
    assert parse_file_name("20231114.3.log") == ("20231114", 3)
    assert parse_file_name("20231114.log") == ("20231114", 0)
    assert parse_file_name("index.db") is None


@pytest.mark.parametrize("name", ["web", "gate-access", "a.b_c-1", "X" * 64])
def test_service_names_allowed(name: str) -> None:
    assert check_service_name(name) == name


@pytest.mark.parametrize("name", ["", "..", "../etc", "a/b", "-x", ".hidden", "a b", "X" * 65, "é"])
def test_service_names_refused_with_reason(name: str) -> None:
    with pytest.raises(ValueError, match="letters, digits"):
        check_service_name(name)


def test_instance_token_has_no_whitespace() -> None:
    assert instance_token("web 1\t2") == b"web_1_2"
    assert instance_token("") == b"-"


def test_format_and_parse_records() -> None:
    data = format_records(b"2026-11-23T08:00:00.000000Z", b"err", b"web-1", b"one\n\ntwo \xff\n")
    lines = data.splitlines(keepends=True)
    assert len(lines) == 3
    recs = [parse_record(x) for x in lines]
    assert [r.text for r in recs] == ["one", "", "two \ufffd"]
    assert {r.stream for r in recs} == {"stderr"}
    assert recs[0].instance == "web-1" and recs[0].ts == "2026-11-23T08:00:00.000000Z"
    cont = parse_record(b"2026-11-23T08:00:00.000000Z out+ w abc\n")
    assert cont.continued and cont.stream == "stdout"
    assert parse_record(b"2026-11-23T08:00:00.000000Z sys w logbus: dropped 5 lines\n").stream == "logbus"


def test_splitter_holds_partial_lines() -> None:
    s = LineSplitter(100)
    assert s.feed(b"hel") == []
    out = s.feed(b"lo\nwor")
    assert [(p.data, p.lines, p.continued) for p in out] == [(b"hello\n", 1, False)]
    assert s.feed(b"ld\n\n")[0].data == b"world\n\n"
    assert s.flush() == []
    s.feed(b"tail without newline")
    assert s.flush()[0].data == b"tail without newline\n"


def test_splitter_cuts_long_lines_and_marks_the_pieces() -> None:
    s = LineSplitter(10)
    out = s.feed(b"short\n" + b"x" * 25 + b"\nnext\n")
    assert [(p.data, p.continued) for p in out] == [
        (b"short\n", False),
        (b"x" * 10 + b"\n", True),
        (b"x" * 10 + b"\n", True),
        (b"x" * 5 + b"\n", False),
        (b"next\n", False),
    ]


def test_splitter_bounds_memory_of_an_endless_line() -> None:
    s = LineSplitter(1000)
    for _ in range(100):
        s.feed(b"y" * 777)
        assert len(s.carry) <= 1000
    s.feed(b"\n")


def test_splitter_does_not_cut_inside_a_utf8_character() -> None:
    s = LineSplitter(10)
    text = ("é" * 12).encode()  # 2 bytes each
    out = s.feed(text + b"\n")
    for p in out:
        p.data.decode()  # every piece is valid UTF-8 on its own
    assert b"".join(p.data[:-1] for p in out) == text


@given(st.lists(st.binary(max_size=300), max_size=30), st.integers(min_value=8, max_value=64))
def test_splitter_loses_nothing(chunks: list[bytes], limit: int) -> None:
    s = LineSplitter(limit)
    pieces = [p for c in chunks for p in s.feed(c)] + s.flush()
    rebuilt = b""
    for p in pieces:
        assert p.data.endswith(b"\n")
        assert len(p.data) - 1 <= limit or p.lines > 1
        rebuilt += p.data[:-1] if p.continued else p.data
    joined = b"".join(chunks)
    expected = joined if joined.endswith(b"\n") or not joined else joined + b"\n"
    assert rebuilt == expected


@pytest.mark.parametrize(
    "line",
    [
        b"2026-11-23T08:00:00.000000Z out web-1 hello world\n",
        b"2026-11-23T08:00:00.000000Z err+ w \xff\xfe\n",
        b"2026-11-23T08:00:00.000000Z sys w logbus: dropped 3 lines",
        b"2026-11-23T08:00:00.000000Z out w \n",
        b"2026-11-23T08:00:00.000000Z out\n",
        b"garbage\n",
    ],
)
def test_record_dict_agrees_with_parse_record(line: bytes) -> None:
    from logbus.format import record_dict

    assert record_dict(line, "svc") == parse_record(line).to_dict("svc")
