"""The static-file half of an `Exchange`: answer from a directory (validators, ranges, precompressed
variants) and stream the file with back-pressure, reading it in a worker thread."""

from __future__ import annotations

import asyncio
from typing import IO, TYPE_CHECKING, Any

import structlog

from gate import static
from gate.h1 import ResponseFraming

if TYPE_CHECKING:
    from gate.exchange import Exchange

log = structlog.get_logger("gate.static")


class StaticResponder:
    """Mixed into `Exchange`; uses its fields (client, rt, method, framing, ...)."""

    __slots__ = ()

    def serve_static(self: Exchange, root: str, spa: bool) -> None:
        if self.method not in (b"GET", b"HEAD"):
            self.error(405, f"{self.method.decode()} is not allowed on static files",
                       headers=((b"Allow", b"GET, HEAD"),))
            return
        f = static.pick_file(root, self.upstream_target, self.header(b"accept-encoding").decode("latin-1"), spa=spa)
        if f is None:
            self.error(404, "no such file")
            return
        rt = self.rt
        assert rt is not None
        hdrs = [(b"Content-Type", f.content_type.encode()), (b"ETag", f.etag.encode()),
                (b"Last-Modified", f.last_modified.encode()), (b"Accept-Ranges", b"bytes"),
                (b"Vary", b"Accept-Encoding")]
        if f.encoding:
            hdrs.append((b"Content-Encoding", f.encoding.encode()))
        hdrs += rt.policies.response_headers(self.client.scheme, rt.route.spec.policies.hsts_max_age_s)
        if static.not_modified(f, self.header(b"if-none-match").decode("latin-1"),
                               self.header(b"if-modified-since").decode("latin-1")):
            self._static_head(304, hdrs, None)
            self._static_done()
            return
        rng = static.plan_range(self.header(b"range").decode("latin-1"), f.size)
        if rng is False:
            self.error(416, "the requested range is outside the file",
                       headers=((b"Content-Range", b"bytes */%d" % f.size),))
            return
        start, end = (0, f.size - 1) if rng is None or rng is True else rng
        status = 200
        if rng is not None and rng is not True:
            status = 206
            hdrs.append((b"Content-Range", b"bytes %d-%d/%d" % (start, end, f.size)))
        length = max(0, end - start + 1)
        self._static_head(status, hdrs, length)
        if self.method == b"HEAD" or length == 0:
            self._static_done()
            return
        self.state.tasks.spawn("static", self._send_file(f.path, start, length))

    def _static_head(self: Exchange, status: int, hdrs: list[tuple[bytes, bytes]], length: int | None) -> None:
        close = not self.keep_alive or self.client.closing or not self.req_ended
        self.framing = ResponseFraming(length is not None, length, False, False, close)
        self.client.send_head(status, b"", hdrs, self.framing, (), frozenset())
        self.status = status
        self.response_started = True

    def _static_done(self: Exchange) -> None:
        self._account()
        self.client.response_done(self, self.framing.close_after if self.framing else True)

    async def _send_file(self: Exchange, path: str, start: int, length: int) -> None:
        client = self.client
        client.flush()
        try:
            with open(path, "rb") as fh:
                pos, left = start, length
                while left > 0 and not client.closed:
                    data = await asyncio.to_thread(_read_at, fh, pos, min(left, 256 * 1024))
                    if not data:
                        break  # the file shrank while we sent it; the client sees a short body
                    client.transport.write(data)  # type: ignore[union-attr]
                    self.bytes_out += len(data)
                    pos += len(data)
                    left -= len(data)
                    if client.write_paused:
                        await client.wait_writable()
        except OSError as e:
            log.warning("static file read failed", path=path, error=str(e))
            left = 1
        if client.closed or self.finished:
            return
        if left > 0:
            self._account()
            client.abort()
            return
        self._static_done()
        client.flush()


def _read_at(fh: IO[bytes], pos: int, n: int) -> bytes:
    fh.seek(pos)
    return fh.read(n)


__all__: list[Any] = ["StaticResponder"]
