"""Health probes: `http` (GET answered 2xx/3xx), `tcp` (a connection is accepted), `exec` (exits 0).

Each probe is one awaitable bounded by its timeout; it never raises, it returns a `HealthResult`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class HealthResult:
    ok: bool
    detail: str
    duration_ms: float
    at: float = 0.0  # wall clock, for history

    def to_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "detail": self.detail, "duration_ms": round(self.duration_ms, 1), "at": self.at}


async def probe_http(url: str, timeout_s: float) -> tuple[bool, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False, f"{url!r} is not an http(s) URL"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    ctx = None
    if parts.scheme == "https":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # a local instance's own certificate: reachability is what counts
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    writer = None
    try:
        reader, writer = await asyncio.open_connection(parts.hostname, port, ssl=ctx)
        host = parts.netloc.rsplit("@", 1)[-1]
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: infracore-health\r\n"
            "Connection: close\r\nAccept: */*\r\n\r\n".encode()
        )
        await writer.drain()
        line = await reader.readline()
        fields = line.decode("latin-1").split(" ", 2)
        if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
            return False, f"not an HTTP answer: {line[:60]!r}"
        code = int(fields[1])
        return 200 <= code < 400, f"HTTP {code}"
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def probe_tcp(target: str, timeout_s: float) -> tuple[bool, str]:
    host, _, port = target.rpartition(":")
    if not port.isdigit():
        return False, f"{target!r} is not HOST:PORT"
    _, writer = await asyncio.open_connection(host.strip("[]") or "127.0.0.1", int(port))
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return True, "connected"


async def probe_exec(argv: list[str], env: Mapping[str, str], cwd: str | None) -> tuple[bool, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **env},
        cwd=cwd,
        start_new_session=True,
    )
    try:
        out, _ = await proc.communicate()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            await asyncio.shield(proc.wait())
        raise
    tail = out.decode(errors="replace").strip().splitlines()[-1:] if out else []
    msg = f"exit code {proc.returncode}" + (f": {tail[0][:200]}" if tail else "")
    return proc.returncode == 0, msg


async def run_probe(
    kind: str,
    target: str | list[str],
    timeout_s: float,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    exec_in: Callable[[list[str]], Awaitable[tuple[bool, str]]] | None = None,
) -> HealthResult:
    """One probe of `kind` against `target` (URL, HOST:PORT, or argv), bounded by `timeout_s`. An `exec`
    probe runs through `exec_in` when given (inside a container), else as a child on the host."""
    t0 = time.monotonic()
    at = time.time()
    try:
        async with asyncio.timeout(timeout_s):
            if kind == "http":
                ok, detail = await probe_http(str(target), timeout_s)
            elif kind == "tcp":
                ok, detail = await probe_tcp(str(target), timeout_s)
            else:
                argv = shlex.split(target) if isinstance(target, str) else list(target)
                ok, detail = await (exec_in(argv) if exec_in is not None else probe_exec(argv, env or {}, cwd))
    except TimeoutError:
        ok, detail = False, f"no answer within {timeout_s:g}s"
    except OSError as e:
        ok, detail = False, os.strerror(e.errno) if e.errno else (str(e) or type(e).__name__)
    except (asyncio.IncompleteReadError, ValueError, UnicodeError) as e:
        ok, detail = False, f"{type(e).__name__}: {e}"
    return HealthResult(ok, detail, (time.monotonic() - t0) * 1000, at)
