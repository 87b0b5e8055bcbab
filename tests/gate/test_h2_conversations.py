"""Conversations with the gate's HTTP/2 front, as tables (see `playbook.H2Conversation`): what an h2
client sends, what the origin answers, and what each side sees — real frames, no sockets, no sleeps."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.gate.playbook import H2Conversation

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
BIG = 300 * 1024  # over the gate's per-stream receive window (256 KiB): the client must wait for WINDOW_UPDATEs

# A step: (actor, argument). Moves: "request" (stream id, keyword args of `H2Conversation.request`),
# "body" (stream id, bytes, end), "trailers" (stream id, fields), "reset" (stream id), "origin" (bytes
# on the newest upstream connection), "origin_closes", "refuse_dials" (the next dials fail). Checks:
# "stream" (stream id, {field: expected} of `H2StreamSeen`: status, data, ended, reset, trailers),
# "origin_gets" (regex on what the newest upstream connection received since the last check),
# "upstream_conns", "upstream_closed" (bool, the newest), "window_updates" (stream id: at least one
# WINDOW_UPDATE for it), "goaway" (an error code, or None for no GOAWAY), "client_closed" (bool);
# "open_streams" (n GETs in one write, ignoring the limit the gate announced).
CASES: dict[str, tuple[dict[str, Any], list[tuple[str, Any]]]] = {
    "a simple GET": (
        {},
        [
            ("request", (1, {})),
            ("origin_gets", re.compile(rb"\AGET /x HTTP/1.1\r\n(?=.*[Hh]ost: app.test\r\n)", re.S)),
            ("stream", (1, {"status": 0})),  # nothing yet
            ("origin", OK),
            ("stream", (1, {"status": 200, "data": b"hi", "ended": True, "reset": None})),
            ("goaway", None),
        ],
    ),
    "a POST larger than the stream window flows as the gate opens it": (
        {"request_buffer_bytes": 0},
        [
            ("request", (1, {"method": "POST", "end": False, "extra": (("content-length", str(BIG)),)})),
            ("body", (1, b"x" * BIG, True)),
            ("window_updates", 1),
            ("origin_gets", re.compile(rb"\APOST /x HTTP/1.1\r\n.*\r\n\r\nx{%d}\Z" % BIG, re.S)),
            ("origin", OK),
            ("stream", (1, {"status": 200, "data": b"hi", "ended": True})),
        ],
    ),
    "a body passing the route's limit mid-way: 413, nothing sent upstream": (
        {"max_body_bytes": 8},
        [
            ("request", (1, {"method": "POST", "end": False})),
            ("body", (1, b"hello", False)),
            ("stream", (1, {"status": 0})),
            ("body", (1, b"world", False)),
            ("stream", (1, {"status": 413, "ended": True})),
            ("upstream_conns", 0),
            ("goaway", None),
        ],
    ),
    "bodies cut off by a 413 give their connection-window credit back": (
        {"max_body_bytes": 8},
        [
            ("request", (1, {"method": "POST", "end": False})),
            ("body", (1, b"x" * 16_000, False)),  # one frame: the 413 closes the stream inside it
            ("stream", (1, {"status": 413, "ended": True})),
            ("request", (3, {"method": "POST", "end": False})),
            ("body", (3, b"y" * 16_000, False)),
            ("stream", (3, {"status": 413, "ended": True})),
            ("window_back", None),  # lost, ~65 such answers would stall every upload; doubled, floods pass
        ],
    ),
    "RST_STREAM from the client mid-response closes the upstream connection": (
        {},
        [
            ("request", (1, {})),
            ("origin", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"),
            ("stream", (1, {"status": 200, "data": b"abc", "ended": False})),
            ("reset", 1),
            ("upstream_closed", True),
            ("goaway", None),
            ("request", (3, {})),  # the connection goes on
            ("upstream_conns", 2),
            ("origin", OK),
            ("stream", (3, {"status": 200, "data": b"hi", "ended": True})),
        ],
    ),
    "response trailers reach the client in a HEADERS frame": (
        {},
        [
            ("request", (1, {"extra": (("te", "trailers"),)})),
            (
                "origin",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: grpc-status\r\n\r\n"
                b"2\r\nhi\r\n0\r\ngrpc-status: 0\r\n\r\n",
            ),
            ("stream", (1, {"status": 200, "data": b"hi", "trailers": {b"grpc-status": b"0"}, "ended": True})),
        ],
    ),
    "request trailers go upstream as the chunked body's trailer section": (
        {"request_buffer_bytes": 0},
        [
            ("request", (1, {"method": "POST", "end": False})),
            ("body", (1, b"hello", False)),
            ("trailers", (1, [("x-checksum", "abc")])),
            ("origin_gets", re.compile(rb"\r\n\r\n5\r\nhello\r\n0\r\nx-checksum: abc\r\n\r\n\Z", re.S)),
            ("origin", OK),
            ("stream", (1, {"status": 200, "ended": True})),
        ],
    ),
    "an upstream that refuses the connection: 502": (
        {},
        [
            ("refuse_dials", None),
            ("request", (1, {})),
            ("stream", (1, {"status": 502, "ended": True})),
            ("goaway", None),
        ],
    ),
    "an upstream that closes without answering: 502": (
        {},
        [
            ("request", (1, {})),
            ("origin_closes", None),
            ("stream", (1, {"status": 502, "ended": True})),
        ],
    ),
    "as many concurrent streams as announced (100) are taken": (
        {},
        [
            ("open_streams", 100),
            ("goaway", None),
            ("client_closed", False),
        ],
    ),
    "one stream past the announced limit ends the connection: GOAWAY(PROTOCOL_ERROR)": (
        {},
        [
            ("open_streams", 101),
            ("goaway", 1),
            ("client_closed", True),
        ],
    ),
}


@pytest.fixture
def conv_factory() -> Iterator[Any]:
    made: list[H2Conversation] = []

    def make(spec: dict[str, Any]) -> H2Conversation:
        c = H2Conversation(spec=spec)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def play(c: H2Conversation, steps: list[tuple[str, Any]]) -> None:
    for i, (actor, arg) in enumerate(steps):
        where = f"step {i} ({actor})"
        if actor == "request":
            sid, kw = arg
            c.request(sid, **kw)
        elif actor == "body":
            c.body(arg[0], arg[1], end=arg[2])
        elif actor == "trailers":
            c.trailers(*arg)
        elif actor == "reset":
            c.reset(arg)
        elif actor == "origin":
            c.reply(arg)
        elif actor == "origin_closes":
            c.upstream_closes()
        elif actor == "open_streams":
            c.open_streams(arg)
        elif actor == "client_closed":
            assert c.client_t.closed == arg, where
        elif actor == "refuse_dials":
            c.loop.refuse = True
        elif actor == "stream":
            sid, want = arg
            seen = c.seen.get(sid)
            got = {k: getattr(seen, k) if seen is not None else None for k in want}
            if seen is None:
                got = {k: 0 if k == "status" else None for k in want}
            assert got == want, f"{where}: {got!r}"
        elif actor == "origin_gets":
            got = c.sent_upstream()
            assert arg.search(got), f"{where}: {got[:300]!r}…{got[-100:]!r}"
        elif actor == "upstream_conns":
            assert len(c.upstreams()) == arg, where
        elif actor == "upstream_closed":
            assert c.upstream().closed == arg, where
        elif actor == "window_updates":
            from h2.events import WindowUpdated

            assert any(isinstance(e, WindowUpdated) and e.stream_id == arg for e in c.events), where
        elif actor == "window_back":
            # Every byte the gate received is credited back to the connection window exactly once: h2
            # sends the WINDOW_UPDATE lazily (at half the window), so the gate's own books are read.
            books = c.front.h2._inbound_flow_control_window_manager
            assert books.current_window_size + books._bytes_processed == books.max_window_size, where
        elif actor == "goaway":
            code = c.goaway.error_code if c.goaway is not None else None
            assert code == arg, f"{where}: {c.goaway!r}"
        else:  # pragma: no cover
            raise AssertionError(actor)


@pytest.mark.parametrize("name", list(CASES))
def test_h2_conversation(name: str, conv_factory: Any) -> None:
    spec, steps = CASES[name]
    play(conv_factory(spec), steps)
