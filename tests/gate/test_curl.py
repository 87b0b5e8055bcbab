"""curl, a real-world client, through the gate: chunked upload from stdin, HTTP/1.0, keep-alive reuse."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from tests.gate.conftest import Origin

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


async def curl(*args: str, stdin: bytes | None = None) -> tuple[int, bytes, bytes]:
    p = await asyncio.create_subprocess_exec(
        "curl",
        "-sS",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(p.communicate(stdin), 30)
    return p.returncode or 0, out, err


async def test_curl_chunked_upload_and_http10(gate_factory, origin: Origin):
    g = await gate_factory()
    g.set_routes({"host": "a.test", "upstreams": [origin.addr]})
    url = f"http://127.0.0.1:{g.port}"
    rc, out, err = await curl(
        "-H",
        "Host: a.test",
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        "@-",
        f"{url}/upload",
        stdin=b"z" * 300_000,
    )
    assert rc == 0, err
    assert out == b'{"received": 300000}'
    rc, out, err = await curl("--http1.0", "-i", "-H", "Host: a.test", f"{url}/stream?n=3&size=2")
    assert rc == 0, err
    assert out.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in out and out.endswith(b"AABBCC")
    rc, out, err = await curl("-H", "Host: a.test", f"{url}/echo/1", f"{url}/echo/2", f"{url}/echo/3")
    assert rc == 0 and out.count(b'"method": "GET"') == 3
    assert g.state.metrics.connections_total == 3  # the three URLs shared one keep-alive connection
