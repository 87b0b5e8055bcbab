"""Conversations with the gate's HTTP/1.1 shells, as tables (see `playbook.py`): what the client sends,
what the origin answers, and the bytes each side must see — deterministic, no sockets, no sleeps."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.gate.playbook import Conversation

H = b"Host: app.test\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
OK2 = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbye"

# A step: (actor, argument). Actors: "client" sends bytes; "origin" answers on the newest upstream
# connection; "origin_closes"; "advance" moves the clock (the sweeper runs); "pool" puts a used keep-alive
# connection in the pool. Checks: "client_gets" (exact bytes since the last check, or a compiled regex),
# "origin_gets" (regex on what the newest upstream connection received), "upstream_conns" (upstream
# connections so far, pooled or dialed), "client_closed" (bool).
CASES: dict[str, tuple[dict[str, Any], list[tuple[str, Any]]]] = {
    "pipelined requests are answered in order, the second sent upstream after the first's response": (
        {},
        [
            ("client", b"GET /1 HTTP/1.1\r\n" + H + b"\r\nGET /2 HTTP/1.1\r\n" + H + b"\r\n"),
            ("origin_gets", re.compile(rb"\AGET /1 HTTP/1.1\r\n(?!.*GET /2)", re.S)),
            ("client_gets", b""),
            ("origin", OK),
            ("client_gets", OK),
            ("origin_gets", re.compile(rb"\AGET /2 HTTP/1.1\r\n")),
            ("origin", OK2),
            ("client_gets", OK2),
            ("upstream_conns", 1),
        ],
    ),
    "100-continue: the gate answers 100 while it buffers the body, then sends the whole request": (
        {},
        [
            ("client", b"POST /up HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n"),
            ("client_gets", b"HTTP/1.1 100 Continue\r\n\r\n"),
            ("upstream_conns", 0),
            ("client", b"hello"),
            ("origin_gets", re.compile(rb"\APOST /up HTTP/1.1\r\n(?!.*[Ee]xpect).*\r\n\r\nhello\Z", re.S)),
            ("origin", OK),
            ("client_gets", OK),
        ],
    ),
    "websocket upgrade: the 101 is relayed and bytes flow both ways": (
        {},
        [
            ("client", b"GET /ws HTTP/1.1\r\n" + H + b"Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
            ("origin_gets", re.compile(rb"\AGET /ws HTTP/1.1\r\n.*Upgrade: websocket\r\n", re.S)),
            ("origin", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nHELLO"),
            (
                "client_gets",
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nHELLO",
            ),
            ("client", b"ping"),
            ("origin_gets", re.compile(rb"\Aping\Z")),
            ("origin", b"pong"),
            ("client_gets", b"pong"),
            ("origin_closes", None),
            ("client_closed", True),
        ],
    ),
    "an upgrade answered with a protocol not asked for is refused with 502": (
        {},
        [
            ("client", b"GET /ws HTTP/1.1\r\n" + H + b"Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
            ("origin", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"),
            ("client_gets", re.compile(rb"\AHTTP/1.1 502 ")),
            ("client_closed", True),
        ],
    ),
    "a pooled connection closed as the request went out is retried once on a new one": (
        {},
        [
            ("pool", None),
            ("client", b"GET /a HTTP/1.1\r\n" + H + b"\r\n"),
            ("origin_gets", re.compile(rb"\AGET /a HTTP/1.1\r\n")),
            ("origin_closes", None),
            ("upstream_conns", 2),
            ("origin_gets", re.compile(rb"\AGET /a HTTP/1.1\r\n")),
            ("origin", OK),
            ("client_gets", OK),
        ],
    ),
    "a fresh connection closed without an answer is a 502 (no retry)": (
        {},
        [
            ("client", b"GET /a HTTP/1.1\r\n" + H + b"\r\n"),
            ("origin_closes", None),
            ("upstream_conns", 1),
            ("client_gets", re.compile(rb"\AHTTP/1.1 502 ")),
        ],
    ),
    "a POST is not retried on a stale pooled connection": (
        {"request_buffer_bytes": 0},
        [
            ("pool", None),
            ("client", b"POST /a HTTP/1.1\r\n" + H + b"Content-Length: 2\r\n\r\nab"),
            ("origin_closes", None),
            ("upstream_conns", 1),
            ("client_gets", re.compile(rb"\AHTTP/1.1 502 ")),
        ],
    ),
    "a chunked body passing the route's limit mid-way: 413 and the connection closes": (
        {"max_body_bytes": 8},
        [
            ("client", b"POST /a HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"),
            ("client_gets", b""),
            ("client", b"5\r\nworld\r\n"),
            ("client_gets", re.compile(rb"\AHTTP/1.1 413 .*Connection: close\r\n", re.S)),
            ("upstream_conns", 0),
        ],
    ),
    "a Content-Length over the limit: 413 before any body byte": (
        {"max_body_bytes": 8},
        [
            ("client", b"POST /a HTTP/1.1\r\n" + H + b"Content-Length: 9\r\n\r\n"),
            ("client_gets", re.compile(rb"\AHTTP/1.1 413 ")),
            ("upstream_conns", 0),
        ],
    ),
    "a head not finished within the header timeout: 408": (
        {},
        [
            ("client", b"GET /a HTTP/1.1\r\nHost: app"),
            ("advance", 9.0),
            ("client_gets", b""),
            ("advance", 2.0),
            ("client_gets", re.compile(rb"\AHTTP/1.1 408 ")),
        ],
    ),
    "a body stalled past the body timeout: 408": (
        {},
        [
            ("client", b"POST /a HTTP/1.1\r\n" + H + b"Content-Length: 10\r\n\r\nhello"),
            ("advance", 59.0),
            ("client", b"wo"),
            ("advance", 59.0),
            ("client_gets", b""),
            ("advance", 2.0),
            ("client_gets", re.compile(rb"\AHTTP/1.1 408 ")),
            ("upstream_conns", 0),
        ],
    ),
    "an idle keep-alive connection closes silently after its timeout": (
        {},
        [
            ("client", b"GET /a HTTP/1.1\r\n" + H + b"\r\n"),
            ("origin", OK),
            ("client_gets", OK),
            ("advance", 76.0),
            ("client_gets", b""),
            ("client_closed", True),
        ],
    ),
}


@pytest.fixture
def conv_factory() -> Iterator[Any]:
    made: list[Conversation] = []

    def make(spec: dict[str, Any]) -> Conversation:
        c = Conversation(spec=spec)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.mark.parametrize("name", list(CASES))
def test_conversation(name: str, conv_factory: Any) -> None:
    spec, steps = CASES[name]
    c = conv_factory(spec)
    for i, (actor, arg) in enumerate(steps):
        where = f"step {i} ({actor})"
        if actor == "client":
            c.send(arg)
        elif actor == "origin":
            c.reply(arg)
        elif actor == "origin_closes":
            c.upstream_closes()
        elif actor == "advance":
            c.advance(arg)
        elif actor == "pool":
            c.pooled()
        elif actor == "client_gets":
            got = c.received()
            if isinstance(arg, re.Pattern):
                assert arg.search(got), f"{where}: {got!r}"
            else:
                assert got == arg, f"{where}: {got!r}"
        elif actor == "origin_gets":
            got = c.sent_upstream()
            assert arg.search(got), f"{where}: {got!r}"
        elif actor == "upstream_conns":
            assert len(c.upstreams()) == arg, where
        elif actor == "client_closed":
            assert c.client_t.closed == arg, where
        else:  # pragma: no cover
            raise AssertionError(actor)
