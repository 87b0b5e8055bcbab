"""The static-file half of an `Exchange`: answer from a directory (validators, ranges, precompressed
variants) and stream the file with back-pressure, reading it in a worker thread. Functions of the
exchange: they read its request (method, headers, route) and answer through its methods
(`static_head`, `static_body`, `static_end`, `static_abort`), which own its response fields; the body goes
through the downstream's `flush`/`wait_writable`, the same for HTTP/1.1 and HTTP/2."""

from __future__ import annotations

import asyncio
import errno
import os
import stat
from typing import IO, TYPE_CHECKING

import structlog

from gate import static

if TYPE_CHECKING:
    from gate.exchange import Exchange

log = structlog.get_logger("gate.static")


def serve_static(ex: Exchange, root: str, spa: bool) -> None:
    """Answer `ex` from the directory `root` (`spa`: unknown paths get index.html)."""
    if ex.method not in (b"GET", b"HEAD"):
        ex.error(405, f"{ex.method.decode()} is not allowed on static files", headers=((b"Allow", b"GET, HEAD"),))
        return
    rt = ex.rt
    assert rt is not None
    # Hidden, unreadable and missing files all answer the same 404: a 403 would confirm that a secret
    # (a .env, a 0600 key) exists at that path.
    f = static.pick_file(
        root,
        ex.upstream_target,
        ex.header(b"accept-encoding").decode("latin-1"),
        spa=spa,
        dotfiles=rt.route.spec.static_dotfiles == "allow",
    )
    if f is None:
        ex.error(404, "no such file")
        return
    hdrs = [
        (b"Content-Type", f.content_type.encode()),
        (b"ETag", f.etag.encode()),
        (b"Last-Modified", f.last_modified.encode()),
        (b"Accept-Ranges", b"bytes"),
        (b"Vary", b"Accept-Encoding"),
    ]
    if f.encoding:
        hdrs.append((b"Content-Encoding", f.encoding.encode()))
    hdrs += rt.policies.response_headers(ex.client.scheme, rt.route.spec.policies.hsts_max_age_s)
    if static.not_modified(
        f, ex.header(b"if-none-match").decode("latin-1"), ex.header(b"if-modified-since").decode("latin-1")
    ):
        ex.static_head(304, hdrs, None)
        ex.static_end()
        return
    rng = static.plan_range(ex.header(b"range").decode("latin-1"), f.size)
    if rng is False:
        ex.error(416, "the requested range is outside the file", headers=((b"Content-Range", b"bytes */%d" % f.size),))
        return
    start, end = (0, f.size - 1) if rng is None or rng is True else rng
    status = 200
    if rng is not None and rng is not True:
        status = 206
        hdrs.append((b"Content-Range", b"bytes %d-%d/%d" % (start, end, f.size)))
    length = max(0, end - start + 1)
    if ex.method == b"HEAD" or length == 0:
        ex.static_head(status, hdrs, length)
        ex.static_end()
        return
    try:
        fh = open_checked(f)  # before the head: a file that fails here is answered like a missing one
    except OSError as e:
        log.warning("static file changed after its checks; answered 404", path=f.path, error=str(e))
        ex.error(404, "no such file")
        return
    ex.static_head(status, hdrs, length)
    ex.state.tasks.spawn("static", _send_file(ex, fh, f.path, start, length))


def open_checked(f: static.StaticFile) -> IO[bytes]:
    """Open the file `pick_file` chose and checked, and only that file: a local user who can write in the
    site may swap a symlink (to /etc/shadow, say) in for it or for a directory above it between the
    checks and the open. The last component is opened without following symlinks, and the opened file
    must be the same inode, still world-readable; otherwise OSError."""
    fd = os.open(f.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (f.dev, f.ino) or not st.st_mode & stat.S_IROTH:
            raise OSError(errno.ESTALE, "the file changed between its checks and its opening")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


async def _send_file(ex: Exchange, fh: IO[bytes], path: str, start: int, length: int) -> None:
    client = ex.client
    client.flush()
    try:
        with fh:
            pos, left = start, length
            while left > 0 and not client.closed:
                data = await asyncio.to_thread(_read_at, fh, pos, min(left, 256 * 1024))
                if not data:
                    break  # the file shrank while we sent it; the client sees a short body
                ex.static_body(data)  # (a static body is never chunked)
                client.flush()
                pos += len(data)
                left -= len(data)
                if client.write_paused:
                    await client.wait_writable()
    except OSError as e:
        log.warning("static file read failed", path=path, error=str(e))
        left = 1
    if client.closed or ex.finished:
        return
    if left > 0:
        ex.static_abort()
        return
    ex.static_end()
    client.flush()


def _read_at(fh: IO[bytes], pos: int, n: int) -> bytes:
    fh.seek(pos)
    return fh.read(n)
