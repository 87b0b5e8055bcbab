"""`GateH2Connection`'s inbound fast path (HEADERS frames opening new streams, parsed without h2's
frame buffer) against h2's own path in the same class: for any byte stream a client (or an attacker)
sends, cut anywhere, both give the same events, the same error, the same bytes to send and the same
connection, stream and HPACK table state."""

from __future__ import annotations

from typing import Any

import pytest
from h2.connection import H2Connection
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes, Settings
from hpack import Encoder
from hypothesis import given, settings
from hypothesis import strategies as st

from gate._h2conn import GateH2Connection

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
REQ = [(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"https"), (b":authority", b"a.test")]


class SlowPath(GateH2Connection):
    """The same connection with h2's own `receive_data` (every frame through h2's frame buffer)."""

    receive_data = H2Connection.receive_data


def frame(kind: int, flags: int, sid: int, payload: bytes, length: int | None = None) -> bytes:
    n = len(payload) if length is None else length
    return n.to_bytes(3, "big") + bytes((kind, flags)) + sid.to_bytes(4, "big") + payload


def settings_frame(values: dict[int, int]) -> bytes:
    return frame(4, 0, 0, b"".join(k.to_bytes(2, "big") + v.to_bytes(4, "big") for k, v in values.items()))


def _server(cls: type[GateH2Connection], max_streams: int = 4) -> GateH2Connection:
    c = cls()
    c.local_settings = Settings(
        client=False,
        initial_values={SettingCodes.MAX_CONCURRENT_STREAMS: max_streams, SettingCodes.MAX_HEADER_LIST_SIZE: 600},
    )
    c.decoder.max_header_list_size = 600
    c.initiate_connection()
    c.data_to_send()
    return c


def _event(ev: Any) -> str:
    fields = {}
    for k, v in sorted(vars(ev).items()):
        if k == "headers" and v is not None:
            v = [(type(h).__name__ if type(h) is not tuple else "", bytes(h[0]), bytes(h[1])) for h in v]
        elif hasattr(v, "__dict__") and k != "error_code":
            v = _event(v)
        fields[k] = v
    return f"{type(ev).__name__}{fields}"


def _state(c: GateH2Connection) -> tuple:
    return (
        c.state_machine.state,
        c.highest_inbound_stream_id,
        sorted((sid, s.state_machine.state, s._expected_content_length) for sid, s in c.streams.items()),
        list(c.decoder.header_table.dynamic_entries),
        c.decoder.header_table.maxsize,
    )


def _run(cls: type[GateH2Connection], chunks: list[bytes]) -> list[Any]:
    c = _server(cls)
    seen: list[Any] = []
    for chunk in chunks:
        try:
            seen.append([_event(ev) for ev in c.receive_data(chunk)])
        except ProtocolError as e:
            seen.append(f"raised {type(e).__name__}: {e}")
            seen.append(c.data_to_send())
            seen.append(_state(c))
            return seen
        seen.append(c.data_to_send())
        seen.append(_state(c))
    return seen


def _same(chunks: list[bytes]) -> list[Any]:
    fast = _run(GateH2Connection, chunks)
    assert fast == _run(SlowPath, chunks)
    return fast


_enc = Encoder()
_BLOCKS = [
    _enc.encode(REQ),  # indexes its fields into the dynamic table
    _enc.encode(REQ),  # refers to them
    Encoder().encode([*REQ, (b"content-length", b"5")]),
    Encoder().encode([*REQ, (b"content-length", b"x5")]),  # not digits
    Encoder().encode([*REQ, (b"content-length", b"5"), (b"content-length", b"6")]),  # conflicting
    Encoder().encode([(b":status", b"103")]),  # an informational "request"
    Encoder().encode([(b":method", b"HEAD"), (b":path", b"/"), (b":scheme", b"https")]),
    Encoder().encode([*REQ, (b"x-big", b"v" * 700)]),  # past the header-list limit (600)
    b"\x3f\xe2\x1f",  # a table-size update to 4096 + 1: past what we allow
    b"\x3f\xe1\x0f",  # a table-size update within it, then nothing
    b"\x82\x3f\xe1\x0f",  # a table-size update after a field
    b"\xff\xff\xff\xff\xff\xff\xff\x7f",  # a runaway index
    b"\xbf",  # index 63: past the tables
    b"\x40\x85abc",  # a literal shorter than its length
    b"",
]
_SIDS = [1, 3, 5, 7, 9, 11, 2, 0, 0x80000001, 0x7FFFFFFF]
_HEADERS_FLAGS = [0x5, 0x4, 0x5, 0x4, 0x1, 0x0, 0xD, 0x24, 0x25, 0x2D, 0xF5]
_frames = st.one_of(
    st.builds(
        lambda sid, flags, block: frame(1, flags, sid, block),
        st.sampled_from(_SIDS),
        st.sampled_from(_HEADERS_FLAGS),
        st.sampled_from(_BLOCKS) | st.binary(max_size=30),
    ),
    # HEADERS with padding or priority fields (well- or ill-formed)
    st.builds(
        lambda sid, pad, block: frame(1, 0x0D, sid, bytes((pad,)) + block + b"\0" * min(pad, 3)),
        st.sampled_from(_SIDS),
        st.integers(0, 8),
        st.sampled_from(_BLOCKS[:2]),
    ),
    st.builds(lambda sid, block: frame(9, 0x4, sid, block), st.sampled_from(_SIDS), st.sampled_from(_BLOCKS[:3])),
    st.builds(
        lambda sid, data, fl: frame(0, fl, sid, data),
        st.sampled_from(_SIDS),
        st.binary(max_size=8),
        st.sampled_from([0, 1, 8, 9]),
    ),
    st.builds(lambda sid: frame(3, 0, sid, b"\0\0\0\x08"), st.sampled_from(_SIDS)),  # RST_STREAM(CANCEL)
    st.builds(lambda sid: frame(8, 0, sid, b"\0\0\x01\0"), st.sampled_from([0, 1, 3])),  # WINDOW_UPDATE
    st.builds(lambda v: settings_frame({SettingCodes.HEADER_TABLE_SIZE: v}), st.sampled_from([0, 100, 4096])),
    st.just(frame(1, 0x5, 13, _BLOCKS[0], length=20000)),  # longer than the max frame size
    st.just(frame(6, 0, 0, b"12345678")),  # PING
    st.just(frame(0xFA, 0, 1, b"unknown")),  # an unknown frame type
    st.just(frame(7, 0, 0, b"\0\0\0\x01\0\0\0\0")),  # GOAWAY
)


@settings(max_examples=400, deadline=None)
@given(frames=st.lists(_frames, max_size=14), cuts=st.lists(st.integers(0, 400), max_size=4))
def test_fast_path_matches_h2s_own_path(frames: list[bytes], cuts: list[int]):
    data = PREFACE + settings_frame({}) + b"".join(frames)
    chunks, last = [], 0
    for cut in sorted(cuts):
        chunks.append(data[last:cut])
        last = max(last, cut)
    chunks.append(data[last:])
    _same(chunks)


def _headers(sid: int, block: bytes, flags: int = 0x5) -> bytes:
    return frame(1, flags, sid, block)


@pytest.mark.parametrize(
    ("burst", "expect"),
    [
        # the common case: a batch of requests, the later ones referring to the first's indexed fields
        (b"".join(_headers(sid, _BLOCKS[0] if sid == 1 else _BLOCKS[1]) for sid in (1, 3, 5, 7)), "RequestReceived"),
        # a stream id reused: RST_STREAM(STREAM_CLOSED) on it
        (_headers(1, _BLOCKS[0]) + _headers(1, _BLOCKS[1]), b"\0\0\x04\x03\0\0\0\0\x01\0\0\0\x05"),
        (_headers(3, _BLOCKS[0]) + _headers(1, _BLOCKS[0]), "StreamIDTooLowError"),  # ids going down
        (_headers(2, _BLOCKS[2]), "Invalid stream ID for peer"),  # an even (server) id
        (b"".join(_headers(sid, _BLOCKS[2]) for sid in (1, 3, 5, 7, 9)), "Max inbound streams is 4, 4 open"),
        (_headers(1, _BLOCKS[7]), "DenialOfServiceError"),  # an HPACK bomb: past the header-list limit
        (_headers(1, _BLOCKS[8]), "max allowable"),  # table-size abuse
        (_headers(1, _BLOCKS[11]), "Error decoding header block"),
        (_headers(1, _BLOCKS[3]), "Invalid content-length"),
        (_headers(1, _BLOCKS[5], 0x4), "Invalid input StreamInputs.RECV_INFORMATIONAL_HEADERS"),
        (_headers(1, b"\x82", 0x05 | 0x08), "invalid padding"),  # PADDED with a pad length past the payload
        (_headers(1, _BLOCKS[0], 0x1) + frame(0, 0, 1, b"x"), "Invalid frame during header block"),
        (frame(1, 0x5, 1, _BLOCKS[0], length=16385), None),  # an overlong frame (incomplete here)
        (frame(1, 0x5, 1, b"\0" * 16385), "Received overlong frame"),
    ],
)
def test_hostile_header_frames_get_what_h2_gives(burst: bytes, expect: str | bytes | None):
    seen = _same([PREFACE + settings_frame({}), burst])
    text = repr(seen)
    if isinstance(expect, bytes):
        assert expect in b"".join(x for x in seen if isinstance(x, bytes))
    elif expect is not None:
        assert expect in text
    if not isinstance(expect, str) or expect == "RequestReceived":
        assert "raised" not in text


def test_fast_path_handles_the_common_batch_and_h2_the_rest():
    """A batch of new requests never reaches h2's frame buffer; a frame it does not take (here a DATA
    frame) and everything after it goes through h2, in order."""
    c = _server(GateH2Connection, max_streams=10)
    c.receive_data(PREFACE + settings_frame({}))
    calls: list[int] = []
    original = H2Connection.receive_data

    def counting(self: H2Connection, data: Any) -> Any:
        calls.append(len(data))
        return original(self, data)

    H2Connection.receive_data = counting  # type: ignore[method-assign]
    try:
        evs = c.receive_data(_headers(1, _BLOCKS[0]) + _headers(3, _BLOCKS[1]) + _headers(5, _BLOCKS[1]))
        assert [type(e).__name__ for e in evs] == ["RequestReceived", "StreamEnded"] * 3 and calls == []
        tail = frame(0, 1, 7, b"hi")
        evs = c.receive_data(_headers(7, _BLOCKS[1], 0x4) + tail + _headers(9, _BLOCKS[1]))
        assert calls == [len(tail) + 9 + len(_BLOCKS[1])]
        assert [type(e).__name__ for e in evs] == [
            "RequestReceived",
            "DataReceived",
            "StreamEnded",
            "RequestReceived",
            "StreamEnded",
        ]
    finally:
        H2Connection.receive_data = original  # type: ignore[method-assign]


_late = st.sampled_from(
    [
        frame(3, 0, 1, b"\0\0\0\x08"),  # RST_STREAM on the finished stream
        frame(8, 0, 1, b"\0\0\x01\0"),  # WINDOW_UPDATE on it
        frame(0, 1, 1, b"late"),  # DATA on it
        frame(1, 0x5, 1, _BLOCKS[1]),  # HEADERS on it again
        frame(2, 0, 1, b"\0\0\0\0\x10"),  # PRIORITY on it
        frame(1, 0x5, 3, _BLOCKS[1]),  # a new stream
        frame(3, 0, 3, b"\0\0\0\x08"),
    ]
)


def _finished(cls: type[GateH2Connection], retire: bool) -> GateH2Connection:
    c = _server(cls)
    c.receive_data(PREFACE + settings_frame({}) + _headers(1, _BLOCKS[0]))
    c.send_headers(1, [(b":status", b"204")], end_stream=True)
    c.data_to_send()
    if retire:
        c.retire(1)
        assert 1 not in c.streams and c._closed_streams[1] is not None
    else:
        c._open_streams(1)  # what h2 does to closed streams whenever it counts open ones
    return c


@settings(max_examples=200, deadline=None)
@given(late=st.lists(_late, min_size=1, max_size=6))
def test_a_retired_stream_is_handled_as_h2_handles_streams_it_has_forgotten(late: list[bytes]):
    seen = []
    for retire in (True, False):
        c = _finished(GateH2Connection, retire)
        out: list[Any] = []
        for f in late:
            try:
                out.append([_event(ev) for ev in c.receive_data(f)])
            except ProtocolError as e:
                out.append(f"raised {type(e).__name__}: {e}")
                break
            finally:
                out.append(c.data_to_send())
                out.append(_state(c))
        seen.append(out)
    assert seen[0] == seen[1]


def test_retire_keeps_open_streams_and_h2s_limit_on_remembered_streams():
    c = _server(GateH2Connection, max_streams=10)
    c.receive_data(PREFACE + settings_frame({}) + _headers(1, _BLOCKS[0]) + _headers(3, _BLOCKS[1], 0x4))
    c.retire(3)  # still open (the request has no end yet): kept
    c.retire(1)  # open until answered: kept
    assert sorted(c.streams) == [1, 3]
    c.send_headers(1, [(b":status", b"204")], end_stream=True)
    c.retire(1)
    c.retire(99)  # unknown: nothing
    assert sorted(c.streams) == [3] and list(c._closed_streams) == [1]
    limit = c._closed_streams._size_limit  # type: ignore[attr-defined]
    sid = 5
    for _ in range(limit + 5):
        c.receive_data(_headers(sid, _BLOCKS[1]))
        c.send_headers(sid, [(b":status", b"204")], end_stream=True)
        c.retire(sid)
        sid += 2
    assert len(c._closed_streams) == limit and 1 not in c._closed_streams  # the oldest forgotten first
    assert sorted(c.streams) == [3]


def _outcome(step: Any, sm: Any) -> tuple:
    try:
        events = step()
        got: Any = [type(e).__name__ for e in events]
    except ProtocolError as e:
        got = f"{type(e).__name__}: {e}"
    return got, sm.state


def test_the_state_steps_are_h2s_process_input():
    """Every (state, input) the gate steps itself, from every state: the same next state, events and
    errors as h2's `process_input` (the per-input tables hold exactly h2's transitions)."""
    from h2.connection import ConnectionInputs, ConnectionState, H2ConnectionStateMachine
    from h2.stream import H2StreamStateMachine, StreamInputs, StreamState

    from gate import _h2conn as c

    stream_inputs = [
        (c._S_RECV_HEADERS, StreamInputs.RECV_HEADERS),
        (c._S_RECV_END_STREAM, StreamInputs.RECV_END_STREAM),
        (c._S_SEND_HEADERS, StreamInputs.SEND_HEADERS),
        (c._S_SEND_DATA, StreamInputs.SEND_DATA),
        (c._S_SEND_END_STREAM, StreamInputs.SEND_END_STREAM),
    ]
    for table, inp in stream_inputs:
        for state in StreamState:
            for client in (False, True):
                ours, theirs = H2StreamStateMachine(1), H2StreamStateMachine(1)
                for sm in (ours, theirs):
                    sm.state, sm.client = state, client
                want = _outcome(lambda sm=theirs, inp=inp: sm.process_input(inp), theirs)
                assert _outcome(lambda sm=ours, t=table, inp=inp: c._stream_step(sm, t, inp), ours) == want
                assert vars(ours) == vars(theirs)
    conn_inputs = [
        (c._C_RECV_HEADERS, ConnectionInputs.RECV_HEADERS),
        (c._C_SEND_HEADERS, ConnectionInputs.SEND_HEADERS),
        (c._C_SEND_DATA, ConnectionInputs.SEND_DATA),
    ]
    for table, cinp in conn_inputs:
        for cstate in ConnectionState:
            cours, ctheirs = H2ConnectionStateMachine(), H2ConnectionStateMachine()
            cours.state = ctheirs.state = cstate
            want = _outcome(lambda sm=ctheirs, i=cinp: sm.process_input(i), ctheirs)
            assert _outcome(lambda sm=cours, t=table, i=cinp: c._conn_step(sm, t, i), cours) == want
