"""`gate._h2conn`, the gate's leaner HTTP/2 server connection, checked against h2 and hpack themselves:
its header-block decoder decodes (and fails) like hpack's, its encoder never touches a dynamic table,
and a scripted conversation produces the same events and frames as with h2's own connection."""

from __future__ import annotations

import pytest
from h2.connection import H2Connection
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes, Settings
from hpack import Decoder, Encoder, NeverIndexedHeaderTuple
from hpack.exceptions import HPACKError, OversizedHeaderListError
from hyperframe.frame import HeadersFrame
from hypothesis import given, settings
from hypothesis import strategies as st

from gate._h2conn import SENSITIVE, SERVER_CONFIG, GateH2Connection, HeaderBlockDecoder, HeaderBlockEncoder

_NAMES = [
    b":status",
    b":path",
    b"content-type",
    b"content-length",
    b"date",
    b"server",
    b"cache-control",
    b"set-cookie",
    b"cookie",
    b"authorization",
    b"x-request-id",
    b"x-custom-field",
    b"via",
]
_FIELD = st.tuples(
    st.sampled_from(_NAMES) | st.binary(min_size=1, max_size=20),
    st.sampled_from([b"", b"200", b"404", b"text/plain", b"gzip, deflate"]) | st.binary(max_size=300),
)


@settings(max_examples=300, deadline=None)
@given(
    blocks=st.lists(st.lists(st.tuples(_FIELD, st.booleans()), max_size=12), min_size=1, max_size=6),
    huffman=st.booleans(),
    table_size=st.sampled_from([4096, 200, 0]),
)
def test_header_block_decoder_decodes_like_hpack(blocks, huffman: bool, table_size: int):
    enc = Encoder()
    enc.header_table_size = table_size  # the first block starts with a table size update
    ref, ours = Decoder(), HeaderBlockDecoder()
    for block in blocks:
        data = enc.encode([(n, v, sensitive) for (n, v), sensitive in block], huffman=huffman)
        want = list(ref.decode(data, raw=True))
        got = ours.decode(data, raw=True)
        assert got == want
        never = [isinstance(h, NeverIndexedHeaderTuple) for h in want]
        assert [isinstance(h, NeverIndexedHeaderTuple) for h in got] == never  # never-indexed stay marked
        assert ours.header_table.dynamic_entries == ref.header_table.dynamic_entries
        assert ours.header_table_size == ref.header_table_size


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=80))
def test_header_block_decoder_fails_where_hpack_fails(data: bytes):
    """Arbitrary bytes: the same fields, or an error h2 turns into a connection error (COMPRESSION_ERROR)."""
    ref, ours = Decoder(max_header_list_size=200), HeaderBlockDecoder(max_header_list_size=200)
    for d in (ref, ours):
        d.max_allowed_table_size = 100
    try:
        want = list(ref.decode(data, raw=True))
    except (HPACKError, IndexError, TypeError, UnicodeDecodeError):
        want = None
    if want is None:
        with pytest.raises(HPACKError):
            ours.decode(data, raw=True)
    else:
        assert ours.decode(data, raw=True) == want


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\x80", "Invalid table index"),  # index 0
        (b"\xff\x00", "Invalid table index"),  # index 127: past the (empty) dynamic table
        (b"\x82\x3f\xe1\x1f", "not at the start"),  # a table size update after a field
        (b"\x3f\xe2\x1f", "max allowable"),  # a table size of 4097
        (b"\x40\x85abc", "Truncated"),  # a literal shorter than its length
        (b"\x00\x03abc\x7f\xff\xff\xff\xff\xff\x7f", "too long"),  # a runaway integer
    ],
)
def test_header_block_decoder_errors(data: bytes, error: str):
    with pytest.raises(HPACKError, match=error):
        HeaderBlockDecoder().decode(data, raw=True)


def test_header_block_decoder_limits_the_header_list():
    d = HeaderBlockDecoder(max_header_list_size=100)
    with pytest.raises(OversizedHeaderListError):
        d.decode(Encoder().encode([(b"x-a", b"v" * 40), (b"x-b", b"v" * 40)]), raw=True)


@settings(max_examples=200, deadline=None)
@given(fields=st.lists(_FIELD, max_size=12), resize=st.booleans(), huffman=st.booleans())
def test_header_block_encoder_never_touches_the_dynamic_table(fields, resize: bool, huffman: bool):
    enc, dec = HeaderBlockEncoder(), Decoder()
    if resize:
        enc.header_table_size = 100  # the peer changed SETTINGS_HEADER_TABLE_SIZE
        dec.max_allowed_table_size = 100
    for _ in range(2):  # the second time from the cache
        got = list(dec.decode(enc.encode(fields, huffman=huffman), raw=True))
        assert got == fields
        assert [isinstance(h, NeverIndexedHeaderTuple) for h in got] == [n in SENSITIVE for n, _ in fields]
        assert not dec.header_table.dynamic_entries
    assert dec.header_table_size == (0 if resize else 4096)


def _converse(server_cls: type[H2Connection]) -> list[str]:
    """One scripted conversation between an h2 client and a server connection of `server_cls`; what the
    client saw and what the server's calls raised, as text."""
    from h2.config import H2Configuration
    from h2.connection import H2Connection as Client

    client = Client(H2Configuration(client_side=True, header_encoding=None))
    server = server_cls(SERVER_CONFIG)
    seen: list[str] = []

    def exchange() -> None:
        for _ in range(4):
            server.receive_data(client.data_to_send())
            data = server.data_to_send()
            for ev in client.receive_data(data):
                seen.append(repr(ev))

    def call(fn, *a, **kw) -> None:
        try:
            fn(*a, **kw)
        except ProtocolError as e:
            seen.append(f"raised {type(e).__name__}")

    client.initiate_connection()
    client.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 100, SettingCodes.HEADER_TABLE_SIZE: 0})
    server.initiate_connection()
    req = [(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"https"), (b":authority", b"a.test")]
    for sid in (1, 3, 5, 7):
        client.send_headers(sid, req, end_stream=True)
    exchange()
    # headers spanning CONTINUATION frames, data, trailers; the encoder announced table size 0 first
    call(server.send_headers, 1, [(b":status", b"200"), (b"set-cookie", b"a=1"), (b"x-big", b"v" * 40000)])
    call(server.send_data, 1, b"x" * 60)
    call(server.send_data, 1, b"x" * 41)  # past the stream's window of 100
    call(server.send_headers, 1, [(b"x-trailer", b"t")], end_stream=True)
    call(server.send_data, 1, b"late")  # on a closed stream
    call(server.send_headers, 3, [(b":status", b"103"), (b"link", b"</a>")])  # informational: h2's own path
    call(server.send_headers, 3, [(b":status", b"204")], end_stream=True)
    call(server.send_headers, 5, [(b":status", b"200")])
    call(server.send_headers, 5, [(b"x-trailer", b"t")])  # trailers without END_STREAM
    call(server.end_stream, 5)
    call(server.end_stream, 5)  # twice
    call(server.send_data, 9, b"x")  # a stream that does not exist
    exchange()
    client.reset_stream(7)
    exchange()
    call(server.send_headers, 7, [(b":status", b"200")])  # reset by the client
    exchange()
    return seen


def test_gate_connection_sends_what_h2_sends():
    ours = _converse(GateH2Connection)
    assert ours == _converse(H2Connection)
    assert any("ResponseReceived" in s and "x-big" in s for s in ours)
    assert any("TrailersReceived" in s for s in ours) and any("InformationalResponseReceived" in s for s in ours)
    assert ours.count("raised FlowControlError") == 1 and ours.count("raised StreamClosedError") >= 2
    assert "raised ProtocolError" in ours and "raised NoSuchStreamError" in ours


def test_gate_connection_still_limits_concurrent_streams_and_forgets_closed_ones():
    from h2.config import H2Configuration
    from h2.connection import H2Connection as Client

    client = Client(H2Configuration(client_side=True, header_encoding=None))
    server = GateH2Connection()
    server.local_settings = Settings(client=False, initial_values={SettingCodes.MAX_CONCURRENT_STREAMS: 5})
    client.initiate_connection()
    server.initiate_connection()
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())  # the client now knows the limit of 5
    req = [(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"https"), (b":authority", b"a.test")]
    sid = 1
    for _ in range(40):  # streams answered and closed as they go: the limit is never reached
        client.send_headers(sid, req, end_stream=True)
        server.receive_data(client.data_to_send())
        server.send_headers(sid, [(b":status", b"204")], end_stream=True)
        client.receive_data(server.data_to_send())
        sid += 2
        assert len(server.streams) <= 5
    for _ in range(5):  # five left open: the sixth is refused
        client.send_headers(sid, req, end_stream=True)
        sid += 2
    server.receive_data(client.data_to_send())
    frame = HeadersFrame(sid, data=Encoder().encode(req), flags=["END_HEADERS", "END_STREAM"])
    with pytest.raises(ProtocolError, match="Max inbound streams is 5, 5 open"):
        server.receive_data(frame.serialize())


_enc_pool = Encoder()
_enc_pool.header_table_size = 120  # small: indexing evicts
_POOL = [
    _enc_pool.encode([(b":method", b"GET"), (b"x-a", b"1")]),  # indexes x-a: 1
    _enc_pool.encode([(b":method", b"GET"), (b"x-a", b"1")]),  # refers to it (index 62)
    _enc_pool.encode([(b"x-b", b"22"), (b"x-c", b"333")]),  # indexes two more: evicts
    b"\xbe",  # index 62: the newest dynamic entry, whatever it is now
    b"\xbe\xbf",  # 62 and 63
    b"\x82\xbe",
    b"\x20",  # table size update to 0: empties the table
    b"\x3f\x19",  # table size update to 56: room for one small entry
    b"\x3f\xe2\x1f",  # a table size of 4097: refused
    b"\x40\x03x-d\x01d",  # a literal indexing x-d: d
    b"\x00\x03x-e" + b"\x7f\x81\x01" + b"e" * 200,  # a 200-byte value: past a small header-list limit
]


@settings(max_examples=400, deadline=None)
@given(picks=st.lists(st.sampled_from(range(len(_POOL))), max_size=25), limit=st.sampled_from([65536, 150]))
def test_repeated_blocks_decode_like_hpack_as_the_table_changes(picks: list[int], limit: int):
    """The per-connection cache of decoded blocks: the same bytes again, before and after the dynamic
    table changes (entries added, evicted, the table resized or emptied), decode as hpack decodes them."""
    ref, ours = Decoder(max_header_list_size=limit), HeaderBlockDecoder(max_header_list_size=limit)
    for i in picks:
        try:
            want = list(ref.decode(_POOL[i], raw=True))
        except OversizedHeaderListError:
            with pytest.raises(OversizedHeaderListError):  # (h2: a DenialOfServiceError, not a decoding error)
                ours.decode(_POOL[i], raw=True)
            return
        except HPACKError:
            with pytest.raises(HPACKError):
                ours.decode(_POOL[i], raw=True)
            return
        assert ours.decode(_POOL[i], raw=True) == want
        assert ours.header_table.dynamic_entries == ref.header_table.dynamic_entries


def test_a_cached_block_is_decoded_again_when_the_table_or_the_limits_change():
    dec = HeaderBlockDecoder()
    dec.decode(b"\x40\x03x-a\x011", raw=True)  # x-a: 1 at index 62
    assert dec.decode(b"\xbe", raw=True) == [(b"x-a", b"1")]
    assert dec.decode(b"\xbe", raw=True) == [(b"x-a", b"1")]  # from the cache
    dec.decode(b"\x40\x03x-b\x012", raw=True)  # x-b: 2 is now 62
    assert dec.decode(b"\xbe", raw=True) == [(b"x-b", b"2")]
    got = dec.decode(b"\xbe", raw=True)
    got.append((b"x", b"y"))  # a caller changing what it got changes nothing cached
    assert dec.decode(b"\xbe", raw=True) == [(b"x-b", b"2")]
    dec.header_table_size = 0  # emptied from outside decode: the cached fields must not come back
    dec.header_table_size = 4096
    with pytest.raises(HPACKError, match="Invalid table index"):
        dec.decode(b"\xbe", raw=True)
    dec.decode(b"\x40\x03x-c\x013", raw=True)
    assert dec.decode(b"\xbe\xbe", raw=True) == [(b"x-c", b"3")] * 2
    dec.max_header_list_size = 50  # lowered after the block was cached: now past the limit
    with pytest.raises(OversizedHeaderListError):
        dec.decode(b"\xbe\xbe", raw=True)
    dec.max_header_list_size = 65536
    dec.max_allowed_table_size = 100  # our SETTINGS lowered the table below its size: refused
    with pytest.raises(HPACKError, match="did not shrink"):
        dec.decode(b"\xbe\xbe", raw=True)


def test_the_block_cache_stays_small_whatever_a_client_sends():
    dec = HeaderBlockDecoder()
    for i in range(1000):
        dec.decode(b"\x00\x03x-a" + bytes([4]) + b"%04d" % i, raw=True)  # a thousand different blocks
        assert len(dec._blocks) <= 32
    big = b"\x00\x03x-a\x7f\xbd\x04" + b"v" * 700  # a block past the size cached
    dec.decode(big, raw=True)
    assert big not in dec._blocks
