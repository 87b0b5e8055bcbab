"""The attacker side of `bench/bench_attacks.py`, run in its own process (`--run-attack NAME`): each
`attack_NAME` sends one attack of issue 13 to a `fsctl serve` until `end`, counting what it sent and
what came back, and `run_attack` prints that as one JSON line."""

from __future__ import annotations

import asyncio
import base64
import json
import resource
import ssl
import time
from typing import Any

# 7 levels of 9 aliases: expanding it fully is 9**7 ≈ 4.8 million nodes (295 bytes as sent).
YAML_BOMB = (
    "\n".join(
        [
            'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
            "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]",
            "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]",
            "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]",
            "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]",
            "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]",
            "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]",
            "name: bomb",
            "image: [*g]",
        ]
    )
    + "\n"
)


class Tally:
    def __init__(self) -> None:
        self.requests = 0
        self.statuses: dict[str, int] = {}
        self.errors = 0

    def status(self, code: int | str) -> None:
        self.statuses[str(code)] = self.statuses.get(str(code), 0) + 1


async def _status_of(reader: asyncio.StreamReader) -> tuple[int, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, keep = 0, True
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        n = name.strip().lower()
        if n == b"content-length":
            length = int(value)
        elif n == b"connection" and b"close" in value.lower():
            keep = False
    if length:
        await reader.readexactly(length)
    return status, keep


async def attack_basic_auth(p: dict[str, Any], end: float, t: Tally) -> None:
    cred = base64.b64encode(b"admin:wrong-password").decode()
    req = f"GET / HTTP/1.1\r\nHost: auth.bench\r\nAuthorization: Basic {cred}\r\n\r\n".encode()

    async def worker() -> None:
        while time.monotonic() < end:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", p["http_port"])
                try:
                    while time.monotonic() < end:
                        writer.write(req)
                        status, keep = await _status_of(reader)
                        t.requests += 1
                        t.status(status)
                        if not keep:
                            break
                finally:
                    writer.close()
            except (OSError, asyncio.IncompleteReadError):
                t.errors += 1
                await asyncio.sleep(0.01)

    await _run_until(end, [worker() for _ in range(8)])


async def attack_yaml_bomb(p: dict[str, Any], end: float, t: Tally) -> None:
    body = YAML_BOMB.encode()
    req = (
        f"POST /api/services HTTP/1.1\r\nHost: 127.0.0.1:{p['console_port']}\r\n"
        f"Authorization: Bearer {p['token']}\r\nContent-Type: application/yaml\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body

    async def worker() -> None:
        while time.monotonic() < end:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", p["console_port"])
                try:
                    writer.write(req)
                    status, _ = await _status_of(reader)
                    t.requests += 1
                    t.status(status)
                finally:
                    writer.close()
            except (OSError, asyncio.IncompleteReadError):
                t.errors += 1
                await asyncio.sleep(0.05)

    await _run_until(end, [worker() for _ in range(2)])


async def attack_aborted_bodies(p: dict[str, Any], end: float, t: Tally) -> None:
    head = b"POST /upload HTTP/1.1\r\nHost: upload.bench\r\nContent-Length: 1000000\r\n\r\n"
    part = b"x" * 70_000  # past the gate's default 64 KiB request buffer: the upstream is engaged

    async def worker() -> None:
        while time.monotonic() < end:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", p["http_port"])
                writer.write(head + part)
                await writer.drain()
                await asyncio.sleep(0.05)
                writer.transport.abort()
                t.requests += 1
            except OSError:
                t.errors += 1
            await asyncio.sleep(0.05)

    await _run_until(end, [worker() for _ in range(20)])


async def attack_slow_bodies(p: dict[str, Any], end: float, t: Tally) -> None:
    head = b"POST /upload HTTP/1.1\r\nHost: upload.bench\r\nContent-Length: 1000\r\n\r\n"

    async def worker(i: int) -> None:
        await asyncio.sleep(i * 0.005)  # spread the opens over a second
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", p["http_port"])
        except OSError:
            t.errors += 1
            return
        t.requests += 1
        try:
            writer.write(head)
            sent = 0
            while time.monotonic() < end and sent < 1000 and not reader.at_eof():
                writer.write(b"x")
                sent += 1
                await asyncio.sleep(0.5)
        except OSError:
            t.errors += 1
        finally:
            writer.transport.abort()

    await _run_until(end, [worker(i) for i in range(200)])


async def attack_h2_rapid_reset(p: dict[str, Any], end: float, t: Tally) -> None:
    from h2.config import H2Configuration
    from h2.connection import H2Connection
    from h2.errors import ErrorCodes
    from h2.events import ConnectionTerminated

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    headers = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"upload.bench"), (b":path", b"/probe")]

    async def worker() -> None:
        while time.monotonic() < end:
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", p["https_port"], ssl=ctx, server_hostname="upload.bench"
                )
            except OSError:
                t.errors += 1
                await asyncio.sleep(0.05)
                continue
            conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
            conn.initiate_connection()
            try:
                while time.monotonic() < end:
                    for _ in range(500):
                        sid = conn.get_next_available_stream_id()
                        conn.send_headers(sid, headers, end_stream=True)
                        conn.reset_stream(sid, ErrorCodes.CANCEL)
                        t.requests += 1
                    writer.write(conn.data_to_send())
                    await writer.drain()
                    try:  # read what came back (GOAWAY ends this connection); paced so that the attacker,
                        # on the same 2 cores, does not simply starve the probe process
                        data = await asyncio.wait_for(reader.read(65536), 0.02)
                    except TimeoutError:
                        continue
                    if not data:
                        t.status("closed")
                        break
                    try:
                        events = conn.receive_data(data)
                    except Exception:
                        t.status("protocol_error")
                        break
                    if any(isinstance(e, ConnectionTerminated) for e in events):
                        t.status("goaway")
                        break
            except (OSError, ConnectionError):
                t.errors += 1
            finally:
                writer.transport.abort()

    await _run_until(end, [worker()])


async def _run_until(end: float, coros: list[Any]) -> None:
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.wait(tasks, timeout=max(0.0, end - time.monotonic()) + 1.0)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def run_attack(name: str, params: str, seconds: float) -> None:
    import uvloop

    p = json.loads(params)
    t = Tally()

    async def main() -> None:
        end = time.monotonic() + seconds
        await globals()[f"attack_{name}"](p, end, t)

    uvloop.run(main())
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "requests": t.requests,
                "statuses": t.statuses,
                "errors": t.errors,
                "cpu_s": round(cpu.ru_utime + cpu.ru_stime, 2),
            }
        )
    )
