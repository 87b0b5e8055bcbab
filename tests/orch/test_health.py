"""Health probes against real loopback servers and real commands."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from orch.health import run_probe


@pytest.fixture
async def http_server() -> AsyncIterator[int]:
    """A tiny HTTP server: `/ok` → 200, `/bad` → 500, `/slow` never answers, anything else → 301."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        path = line.split()[1].decode()
        if path == "/slow":
            await reader.read()  # until the prober gives up and closes
        status = {"/ok": "200 OK", "/bad": "500 Internal Server Error"}.get(path, "301 Moved")
        writer.write(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("path", "ok", "detail"), [("/ok", True, "HTTP 200"), ("/bad", False, "HTTP 500"), ("/moved", True, "HTTP 301")]
)
async def test_http(http_server: int, path: str, ok: bool, detail: str) -> None:
    r = await run_probe("http", f"http://127.0.0.1:{http_server}{path}", 5)
    assert (r.ok, r.detail) == (ok, detail)


async def test_http_timeout_and_refused(http_server: int) -> None:
    r = await run_probe("http", f"http://127.0.0.1:{http_server}/slow", 0.3)
    assert not r.ok and r.detail == "no answer within 0.3s" and r.duration_ms < 5000
    r = await run_probe("http", f"http://127.0.0.1:{_closed_port()}/", 2)
    assert not r.ok and "refused" in r.detail.lower()


async def test_tcp(http_server: int) -> None:
    assert (await run_probe("tcp", f"127.0.0.1:{http_server}", 2)).ok
    assert not (await run_probe("tcp", f"127.0.0.1:{_closed_port()}", 2)).ok
    assert not (await run_probe("tcp", "nonsense", 2)).ok


async def test_exec() -> None:
    assert (await run_probe("exec", ["true"], 5)).ok
    r = await run_probe("exec", "sh -c 'echo broken; exit 2'", 5)
    assert not r.ok and r.detail == "exit code 2: broken"
    r = await run_probe("exec", ["sleep", "30"], 0.3)
    assert not r.ok and "no answer" in r.detail
    r = await run_probe("exec", ["no-such-program-xyz"], 5)
    assert not r.ok
