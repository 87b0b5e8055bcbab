"""The gate's server-side `h2` connection: `h2.H2Connection` with the per-frame and per-field work the
gate does not need taken out, measured with `bench/bench_gate_tls.py --micro` (see
docs/benchmarks/gate-tls.md):

- `open_inbound_streams` that scans h2's streams only when the count can matter (see there);
- `_receive_frame` without the `repr(frame)` h2 builds for a trace log line on every frame even though
  the configured logger discards it;
- `receive_data` that handles HEADERS frames opening new streams itself (h2's checks and state, none
  of its frame buffer and event chain), and `retire` for streams the gate is done with (see there);
- state-machine steps through h2's transition tables re-keyed by the state's id (`_stream_step`);
- `send_headers` (final responses and trailers), `send_data` and `end_stream` that move the same
  connection and stream state machines and flow-control windows as h2 does, then append the frame
  bytes directly instead of building hyperframe objects (with a `Flags` set each) and serializing
  them; anything unusual (informational responses, padding, priority, a stream h2 does not know) goes
  to h2's own method;
- `HeaderBlockDecoder`: hpack's decoder with the per-field debug logging, `memoryview` slicing and
  copying taken out of the hot loop; same wire semantics and the same limits (header-list size,
  table-size updates only first, the table size within what we announced), reusing the fields of a
  repeated block while the dynamic table is unchanged;
- `HeaderBlockEncoder`: a stateless HPACK encoder that never inserts into the dynamic table (nginx
  does not compress responses with it either: it writes literals and never refers back to them).
  Each (name, value) encodes to the same bytes on every connection, so the bytes are cached
  process-wide; sensitive fields (cookies, credentials) are sent as "never indexed" literals and
  never cached. No compression state means nothing a client can probe (HPACK/CRIME-style attacks)
  and nothing to keep per connection; the cost is a few dozen bytes more per response than an
  indexing encoder.

Some overridden methods and attributes are h2's private ones (written against h2 4.4.1 / hpack
4.2.0); `tests/gate/test_h2.py` compares this connection with plain `H2Connection` and the codecs
with hpack's, so an upgrade that changes what they rely on fails there rather than in production.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

from h2.config import H2Configuration
from h2.connection import (
    AllowedStreamIDs,
    ConnectionInputs,
    ConnectionState,
    H2Connection,
    H2ConnectionStateMachine,
    _decode_headers,
)
from h2.errors import ErrorCodes
from h2.exceptions import (
    FlowControlError,
    FrameTooLargeError,
    ProtocolError,
    StreamClosedError,
    StreamIDTooLowError,
    TooManyStreamsError,
)
from h2.stream import StreamInputs, StreamState
from h2.stream import _transitions as _stream_transitions
from h2.utilities import is_informational_response
from hpack import Decoder, NeverIndexedHeaderTuple
from hpack.exceptions import HPACKDecodingError, InvalidTableSizeError, OversizedHeaderListError
from hpack.hpack import decode_integer, encode_integer
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.huffman_table import decode_huffman
from hpack.table import HeaderTable
from hyperframe.frame import Frame, RstStreamFrame

# h2's own header validation and normalization are off both ways: inbound fields are checked in one
# pass by `gate._h2rules.h2_request` (h2's chain of per-byte generators cost ~15 % of the CPU per
# request), outbound fields are built lowercase and without connection-specific fields by
# `gate._h2rules.h2_response_headers`.
SERVER_CONFIG = H2Configuration(
    client_side=False,
    header_encoding=None,
    validate_inbound_headers=False,
    normalize_inbound_headers=False,
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
)

_STATIC = HeaderTable.STATIC_TABLE
_STATIC_LEN = len(_STATIC)
_STATIC_NAMES = {name: idx for idx, (name, _) in reversed(list(enumerate(_STATIC, 1)))}
_STATIC_FIELDS = {field: idx for idx, field in reversed(list(enumerate(_STATIC, 1)))}
_HUFFMAN = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)

# Fields never cached and sent as "never indexed" literals (RFC 7541 §7.1.3).
SENSITIVE = frozenset({b"authorization", b"proxy-authorization", b"cookie", b"set-cookie"})
_CACHE_MAX_ENTRIES = 4096
_CACHE_MAX_FIELD_BYTES = 256
_cache: dict[tuple[bytes, bytes], bytes] = {}


def _string(data: bytes, huffman: bool) -> bytes:
    if huffman:
        packed = _HUFFMAN.encode(data)
        if len(packed) < len(data):
            n = encode_integer(len(packed), 7)
            n[0] |= 0x80
            return bytes(n) + packed
    return bytes(encode_integer(len(data), 7)) + data


def encode_field(name: bytes, value: bytes, *, never_indexed: bool = False, huffman: bool = True) -> bytes:
    """One field as an HPACK representation that leaves the dynamic table alone: the static table's
    index for a full match, else a literal without indexing (or never indexed) with the static
    table's name index when there is one."""
    if not never_indexed:
        idx = _STATIC_FIELDS.get((name, value))
        if idx is not None:
            n = encode_integer(idx, 7)
            n[0] |= 0x80
            return bytes(n)
    idx = _STATIC_NAMES.get(name, 0)
    if idx:
        n = encode_integer(idx, 4)
        if never_indexed:
            n[0] |= 0x10
        return bytes(n) + _string(value, huffman)
    return (b"\x10" if never_indexed else b"\x00") + _string(name, huffman) + _string(value, huffman)


class HeaderBlockEncoder:
    """Stateless HPACK encoder with h2's `Encoder` interface (`encode`, `header_table_size`).

    The dynamic table is never used; when the peer changes SETTINGS_HEADER_TABLE_SIZE we announce a
    table size of 0 at the start of the next block (RFC 7541 §4.2), which fits any limit."""

    __slots__ = ("_size_update",)

    def __init__(self) -> None:
        self._size_update = False

    @property
    def header_table_size(self) -> int:
        return 0

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        self._size_update = True

    def encode(self, headers: Iterable[tuple[bytes, bytes]], huffman: bool = True) -> bytes:
        cache = _cache
        parts: list[bytes] = []
        if self._size_update:
            self._size_update = False
            parts.append(b"\x20")  # dynamic table size update: 0
        for field in headers:
            # (The cache is keyed by the plain field: a caller wanting "never indexed" for a field that
            # is not in SENSITIVE must not send it as a plain tuple too. The gate never does either.)
            b = cache.get(field) if huffman else None
            if b is None:
                name, value = field
                if name in SENSITIVE or isinstance(field, NeverIndexedHeaderTuple):
                    b = encode_field(name, value, never_indexed=True, huffman=huffman)
                else:
                    b = encode_field(name, value, huffman=huffman)
                    if huffman and len(name) + len(value) <= _CACHE_MAX_FIELD_BYTES:
                        if len(cache) >= _CACHE_MAX_ENTRIES:
                            cache.clear()  # unique values (ids, dates) churn through; the common ones come back
                        cache[(name, value)] = b
            parts.append(b)
        return b"".join(parts)


_BLOCK_CACHE_ENTRIES = 32  # per connection
_BLOCK_CACHE_MAX_BYTES = 512


class HeaderBlockDecoder(Decoder):
    """hpack's `Decoder` with a leaner `decode(data, raw=True)` (the only form h2 calls). Fields come
    back as plain `(name, value)` tuples (an indexed one is the table's own tuple), except those sent
    "never indexed", which stay `NeverIndexedHeaderTuple`s.

    Clients send the same header block again and again (a browser's or h2load's requests differ in
    nothing, or only in `:path`, and refer to the dynamic table for the rest): a block that leaves the
    table alone (no literal with incremental indexing, no table-size update) decodes to the same fields
    for as long as the table is unchanged, so its fields are kept (a few dozen blocks per connection,
    small ones) and reused while the table's generation (counted up on every change made while
    decoding), its size and maximum, and the limits are those the block was decoded under."""

    def __init__(self, max_header_list_size: int = 65536) -> None:
        super().__init__(max_header_list_size=max_header_list_size)
        self._generation = 0
        self._blocks: dict[bytes, tuple[tuple[int, int, int, int, int], list[tuple[bytes, bytes]]]] = {}

    def decode(self, data: bytes, raw: bool = False) -> list[tuple[bytes, bytes]]:  # type: ignore[override]
        if not raw:
            self._generation += 1
            return list(super().decode(data, raw))
        table = self.header_table
        limit = self.max_header_list_size
        data = bytes(data)
        end = len(data)
        key = (self._generation, table._maxsize, table._current_size, self.max_allowed_table_size, limit)
        hit = self._blocks.get(data)
        if hit is not None and hit[0] == key:
            return hit[1][:]
        headers = self._decode(data, end, table, limit)
        if end <= _BLOCK_CACHE_MAX_BYTES and key[0] == self._generation:  # (the table was left alone)
            blocks = self._blocks
            if len(blocks) >= _BLOCK_CACHE_ENTRIES:
                blocks.clear()
            blocks[data] = (key, headers[:])
        return headers

    def _decode(self, data: bytes, end: int, table: HeaderTable, limit: int) -> list[tuple[bytes, bytes]]:
        dynamic = table.dynamic_entries
        headers: list[tuple[bytes, bytes]] = []
        size = 0
        i = 0
        while i < end:
            b = data[i]
            if b & 0x80:  # indexed field
                idx = b & 0x7F
                if idx < 0x7F:
                    i += 1
                else:
                    idx, used = decode_integer(data[i : i + 8], 7)
                    i += used
                header = _table_entry(idx, dynamic)  # the table's own (name, value) tuple: nothing to build
            elif b & 0x20 and not b & 0x40:  # dynamic table size update
                if headers:
                    raise HPACKDecodingError("Table size update not at the start of the block")
                new_size, used = decode_integer(data[i : i + 8], 5)
                if new_size > self.max_allowed_table_size:
                    raise InvalidTableSizeError("Encoder exceeded max allowable table size")
                self._generation += 1
                table.maxsize = new_size
                i += used
                continue
            else:  # literal: with incremental indexing (01), without indexing (0000), never indexed (0001)
                indexing = bool(b & 0x40)
                prefix = 6 if indexing else 4
                idx = b & (0x3F if indexing else 0x0F)
                if idx:
                    if idx == (1 << prefix) - 1:
                        idx, used = decode_integer(data[i : i + 8], prefix)
                    else:
                        used = 1
                    i += used
                    name = _table_entry(idx, dynamic)[0]
                else:
                    name, i = _read_string(data, i + 1, end)
                value, i = _read_string(data, i, end)
                if b & 0x10 and not indexing:
                    header = NeverIndexedHeaderTuple(name, value)
                else:
                    header = (name, value)
                    if indexing:
                        self._generation += 1
                        table.add(name, value)
            headers.append(header)
            size += 32 + len(header[0]) + len(header[1])
            if size > limit:
                raise OversizedHeaderListError(f"A header list larger than {limit} has been received")
        if table.maxsize > self.max_allowed_table_size:
            raise InvalidTableSizeError("Encoder did not shrink table size to within the max")
        return headers


def _table_entry(idx: int, dynamic: Sequence[tuple[bytes, bytes]]) -> tuple[bytes, bytes]:
    """The (name, value) at HPACK index `idx`: the static table first, then the dynamic one."""
    if 0 < idx <= _STATIC_LEN:
        return _STATIC[idx - 1]
    if _STATIC_LEN < idx <= _STATIC_LEN + len(dynamic):
        return dynamic[idx - _STATIC_LEN - 1]
    raise HPACKDecodingError(f"Invalid table index {idx}")


def _read_string(data: bytes, i: int, end: int) -> tuple[bytes, int]:
    """An HPACK string literal at `data[i:]`: (its bytes, the index after it)."""
    if i >= end:
        raise HPACKDecodingError("Truncated header block")
    b = data[i]
    length = b & 0x7F
    if length < 0x7F:
        i += 1
    else:
        length, used = decode_integer(data[i : i + 8], 7)
        i += used
    s = data[i : i + length]
    if len(s) != length:
        raise HPACKDecodingError("Truncated header block")
    if b & 0x80:
        s = decode_huffman(s)
    return s, i + length


# h2's state machines look up (state, input) in a dict keyed by two enum members, and a 3.11 enum
# hashes in Python: ~8 lookups per request. These tables hold the same transitions, per input, keyed by
# the state member's id (enum members are singletons); `_stream_step` / `_conn_step` are h2's
# `process_input` over them (same transitions, same callbacks, same errors).
def _per_input(table: dict, input_: object) -> dict[int, tuple[Any, Any]]:
    return {id(state): t for (state, inp), t in table.items() if inp is input_}


_S_RECV_HEADERS = _per_input(_stream_transitions, StreamInputs.RECV_HEADERS)
_S_RECV_END_STREAM = _per_input(_stream_transitions, StreamInputs.RECV_END_STREAM)
_S_SEND_HEADERS = _per_input(_stream_transitions, StreamInputs.SEND_HEADERS)
_S_SEND_DATA = _per_input(_stream_transitions, StreamInputs.SEND_DATA)
_S_SEND_END_STREAM = _per_input(_stream_transitions, StreamInputs.SEND_END_STREAM)
_C_RECV_HEADERS = _per_input(H2ConnectionStateMachine._transitions, ConnectionInputs.RECV_HEADERS)
_C_SEND_HEADERS = _per_input(H2ConnectionStateMachine._transitions, ConnectionInputs.SEND_HEADERS)
_C_SEND_DATA = _per_input(H2ConnectionStateMachine._transitions, ConnectionInputs.SEND_DATA)


def _stream_step(sm: Any, table: dict[int, tuple[Any, Any]], input_: StreamInputs) -> list:
    state = sm.state
    t = table.get(id(state))
    if t is None:
        sm.state = StreamState.CLOSED
        raise ProtocolError(f"Invalid input {input_} in state {state}")
    func, sm.state = t
    if func is None:
        return []
    try:
        return func(sm, state)
    except ProtocolError:
        sm.state = StreamState.CLOSED
        raise
    except AssertionError as err:  # (as h2 does)
        sm.state = StreamState.CLOSED
        raise ProtocolError(err) from err


def _conn_step(sm: Any, table: dict[int, tuple[Any, Any]], input_: ConnectionInputs) -> list:
    state = sm.state
    t = table.get(id(state))
    if t is None:
        sm.state = ConnectionState.CLOSED
        raise ProtocolError(f"Invalid input {input_} in state {state}")
    func, sm.state = t
    return func() if func is not None else []


def _frame_header(length: int, kind: int, flags: int, sid: int) -> bytes:
    return ((((length << 8) | kind) << 8 | flags) << 32 | sid).to_bytes(9, "big")


_odict_setitem = OrderedDict.__setitem__
_HEADERS, _CONTINUATION, _DATA = 0x1, 0x9, 0x0
_END_STREAM, _END_HEADERS, _PADDED, _PRIORITY = 0x1, 0x4, 0x8, 0x20


class GateH2Connection(H2Connection):
    """`H2Connection` for the gate's server side: lean HPACK both ways, no per-frame trace `repr`,
    response frames written as bytes."""

    def __init__(self, config: H2Configuration = SERVER_CONFIG) -> None:
        super().__init__(config=config)
        self.encoder = HeaderBlockEncoder()  # type: ignore[assignment]
        self.decoder = HeaderBlockDecoder()
        self.decoder.max_header_list_size = self.DEFAULT_MAX_HEADER_LIST_SIZE

    @property
    def open_inbound_streams(self) -> int:
        """h2 counts open streams (for MAX_CONCURRENT_STREAMS) by scanning every stream it holds and
        forgetting the closed ones, on every new stream. While it holds fewer streams than the limit,
        that count is below the limit whatever it is, so this returns the number held (an upper bound)
        and scans only once the limit is reached: the same admit/refuse decision, one scan per ~limit
        new streams instead of one per stream, and still never more than ~limit streams held."""
        streams = self.streams
        if len(streams) < self.local_settings.max_concurrent_streams:
            return len(streams)
        return self._open_streams(int(not self.config.client_side))

    def receive_data(self, data: bytes) -> list:  # type: ignore[override]
        """h2's `receive_data`, with the frames every request starts with handled here: a run of HEADERS
        frames that each open a new stream with a whole header block (END_HEADERS; no padding, no
        priority) is parsed without h2's frame buffer, hyperframe objects or generic event chain, and
        moves the same state (the decoder's table, the connection and stream state machines, the
        stream's expected content length, the highest stream id) with the same checks in the same
        order (stream limit, header block, connection state, stream id). The first frame of any other
        kind, and everything after it, goes to h2's own `receive_data`, as does everything while h2's
        buffer holds a partial frame, the connection preface or an unfinished header block."""
        buf = self.incoming_buffer
        if buf._preamble_len or buf._data or buf._headers_buffer:
            return super().receive_data(data)
        n = len(data)
        i = 0
        events: list = []
        maxf = self.max_inbound_frame_size
        try:
            while i + 9 <= n:
                length = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2]
                flags = data[i + 4]
                end = i + 9 + length
                if (
                    data[i + 3] != _HEADERS
                    or not flags & _END_HEADERS
                    or flags & (_PADDED | _PRIORITY)
                    or length > maxf
                    or end > n
                ):
                    break
                sid = int.from_bytes(data[i + 5 : i + 9], "big") & 0x7FFFFFFF
                if not sid & 1 or sid <= self.highest_inbound_stream_id:
                    break  # an even id (refused by h2) or an existing or closed stream: h2's own path
                events += self._receive_new_stream(sid, data[i + 9 : end], flags & _END_STREAM)
                i = end
        except ProtocolError as e:  # as h2's `receive_data` does: GOAWAY queued, then raise
            self._terminate_connection(e.error_code)
            raise
        if i < n:
            events += super().receive_data(data[i:] if i else data)
        return events

    def _receive_new_stream(self, sid: int, block: bytes, end_stream: int) -> list:
        # h2's `_receive_headers_frame` + `_get_or_create_stream` + `H2Stream.receive_headers` for a
        # HEADERS frame opening stream `sid` (> every inbound id so far, odd), with header validation,
        # normalization and decoding off (SERVER_CONFIG).
        max_open = self.local_settings.max_concurrent_streams
        value = self.open_inbound_streams
        if value + 1 > max_open:
            raise TooManyStreamsError(f"Max inbound streams is {max_open}, {value} open")
        headers = _decode_headers(self.decoder, block)
        events = _conn_step(self.state_machine, _C_RECV_HEADERS, ConnectionInputs.RECV_HEADERS)
        stream = self._begin_new_stream(sid, AllowedStreamIDs.ODD)
        if is_informational_response(headers):
            _, stream_events = stream.receive_headers(headers, bool(end_stream), self.config.header_encoding)
            return events + stream_events
        sm = stream.state_machine
        stream_events = _stream_step(sm, _S_RECV_HEADERS, StreamInputs.RECV_HEADERS)
        ev: Any = stream_events[0]  # a RequestReceived
        if end_stream:
            ended = _stream_step(sm, _S_RECV_END_STREAM, StreamInputs.RECV_END_STREAM)
            ev.stream_ended = ended[0]
            stream_events += ended
        stream._initialize_content_length(headers)
        ev.headers = headers
        return events + stream_events if events else stream_events

    def retire(self, stream_id: int) -> None:
        """Move a closed stream out of `streams` now, as h2's `_open_streams` does for every closed stream
        each time it counts (remembering how it was closed, for frames that still arrive on it). The
        gate calls this when it is done with a stream, so h2 holds only live streams and its count
        (`open_inbound_streams`) never has to scan finished ones: ~1.5 % of a request's instructions."""
        stream = self.streams.get(stream_id)
        if stream is not None and stream.state_machine.state == StreamState.CLOSED:
            del self.streams[stream_id]
            # h2's `SizeLimitDict.__setitem__`, without its two Python-level calls per stream
            closed: Any = self._closed_streams  # (an h2 SizeLimitDict, an OrderedDict)
            _odict_setitem(closed, stream_id, stream.state_machine.stream_closed_by)
            limit = closed._size_limit
            if limit is not None:
                while len(closed) > limit:
                    closed.popitem(last=False)

    def _receive_frame(self, frame: Frame) -> list:
        # h2 4.x's `_receive_frame` minus `logger.trace("Received frame: %s", repr(frame))`.
        try:
            frames, events = self._frame_dispatch_table[frame.__class__](frame)
        except StreamClosedError as e:
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = e.error_code
                self._prepare_for_sending([f])
                events = e._events
            else:
                raise
        except StreamIDTooLowError as e:
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = ErrorCodes.STREAM_CLOSED
                self._prepare_for_sending([f])
                events = []
            elif self._stream_is_closed_by_end(e.stream_id):
                raise StreamClosedError(e.stream_id) from e
            else:
                raise
        else:
            self._prepare_for_sending(frames)
        return events

    # --- output: same state transitions as h2, frames written as bytes ------------------------------------

    def send_headers(
        self,
        stream_id: int,
        headers: Iterable[Any],
        end_stream: bool = False,
        priority_weight: int | None = None,
        priority_depends_on: int | None = None,
        priority_exclusive: bool | None = None,
    ) -> None:
        stream = self.streams.get(stream_id)
        if (
            stream is None
            or type(headers) is not list
            or not headers
            or priority_weight is not None
            or priority_depends_on is not None
            or priority_exclusive is not None
            or (headers[0][0] == b":status" and headers[0][1][:1] == b"1")
        ):
            super().send_headers(
                stream_id, headers, end_stream, priority_weight, priority_depends_on, priority_exclusive
            )
            return
        _conn_step(self.state_machine, _C_SEND_HEADERS, ConnectionInputs.SEND_HEADERS)
        sm = stream.state_machine
        _stream_step(sm, _S_SEND_HEADERS, StreamInputs.SEND_HEADERS)
        block = self.encoder.encode(headers)
        if end_stream:
            _stream_step(sm, _S_SEND_END_STREAM, StreamInputs.SEND_END_STREAM)
        elif sm.trailers_sent:
            raise ProtocolError("Trailers must have END_STREAM set.")
        stream.request_method = None  # (h2 records the :method of what it sends: a response has none)
        es = _END_STREAM if end_stream else 0
        maxf = self.max_outbound_frame_size
        out = self._data_to_send
        n = len(block)
        if n <= maxf:
            out += _frame_header(n, _HEADERS, es | _END_HEADERS, stream_id)
            out += block
            return
        out += _frame_header(maxf, _HEADERS, es, stream_id)
        out += block[:maxf]
        for i in range(maxf, n, maxf):
            piece = block[i : i + maxf]
            out += _frame_header(len(piece), _CONTINUATION, _END_HEADERS if i + maxf >= n else 0, stream_id)
            out += piece

    def send_data(
        self, stream_id: int, data: bytes | memoryview, end_stream: bool = False, pad_length: int | None = None
    ) -> None:
        stream = self.streams.get(stream_id)
        if stream is None or pad_length is not None:
            super().send_data(stream_id, data, end_stream, pad_length)
            return
        n = len(data)
        if n and (n > self.outbound_flow_control_window or n > stream.outbound_flow_control_window):
            window = min(self.outbound_flow_control_window, stream.outbound_flow_control_window)
            raise FlowControlError(f"Cannot send {n} bytes, flow control window is {window}")
        if n > self.max_outbound_frame_size:
            raise FrameTooLargeError(f"Cannot send frame size {n}, max frame size is {self.max_outbound_frame_size}")
        _conn_step(self.state_machine, _C_SEND_DATA, ConnectionInputs.SEND_DATA)
        sm = stream.state_machine
        _stream_step(sm, _S_SEND_DATA, StreamInputs.SEND_DATA)
        if end_stream:
            _stream_step(sm, _S_SEND_END_STREAM, StreamInputs.SEND_END_STREAM)
        stream.outbound_flow_control_window -= n
        self.outbound_flow_control_window -= n
        out = self._data_to_send
        out += _frame_header(n, _DATA, _END_STREAM if end_stream else 0, stream_id)
        out += data

    def end_stream(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is None:
            super().end_stream(stream_id)
            return
        _conn_step(self.state_machine, _C_SEND_DATA, ConnectionInputs.SEND_DATA)
        _stream_step(stream.state_machine, _S_SEND_END_STREAM, StreamInputs.SEND_END_STREAM)
        self._data_to_send += _frame_header(0, _DATA, _END_STREAM, stream_id)
