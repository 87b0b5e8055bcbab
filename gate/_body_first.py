"""Parser callbacks that put a request's body before the rest of its connection: used after the gate
dropped a request's `Upgrade` (h2c) while the request has a body (`ClientConnection._resume_plain`).
Rare, so not compiled."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gate.proxy import ClientConnection


class BodyFirst:
    """Parser callbacks for a connection whose request's Upgrade was dropped while it has a body: the
    body (after a synthetic head carrying its framing) goes to that request, then everything is passed
    through to the connection as usual. Rare (clients seldom ask for h2c with a body), so the extra
    call per callback on such a connection does not matter."""

    __slots__ = ("conn", "live")

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.live = False

    def on_message_begin(self) -> None:
        if self.live:
            self.conn.on_message_begin()

    def on_url(self, url: bytes) -> None:
        if self.live:
            self.conn.on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.live:
            self.conn.on_header(name, value)

    def on_headers_complete(self) -> None:
        if self.live:
            self.conn.on_headers_complete()

    def on_body(self, data: bytes) -> None:
        self.conn.on_body(data)

    def on_message_complete(self) -> None:
        self.conn.on_message_complete()
        self.live = True
