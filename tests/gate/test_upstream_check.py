"""Warnings about a route's upstreams: unknown services and ports (a table), host names resolved through
the real resolver `fsctl` wires (getaddrinfo off the loop), and a lookup that hangs past the deadline."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from fsctl.wire_gate import resolve_host
from gate.upstream_check import names_to_resolve, service_problems, upstream_warnings

SERVICES = {"web": ["http", "admin"], "db": []}


@pytest.mark.parametrize(
    ("upstreams", "expected"),
    [
        (["service:web"], []),
        (["service:web:admin"], []),
        (["service:doesnotexist"], ["orch has no service named 'doesnotexist' (known: db, web)"]),
        (["service:web:metrics"], ["service 'web' has no port named 'metrics' (its ports: admin, http)"]),
        (["service:db:http"], ["service 'db' has no port named 'http' (its ports: none)"]),
        (["127.0.0.1:80", "app:8080"], []),  # not services: for the resolver
    ],
)
def test_service_problems(upstreams, expected):
    found = service_problems(upstreams, SERVICES)
    assert len(found) == len(expected)
    for text, part in zip(found, expected, strict=True):
        assert part in text


def test_names_to_resolve_skips_literals_and_services():
    assert names_to_resolve(["127.0.0.1:1", "[::1]:2", "service:web", "app:8080", "App.example:1", "app:9"]) == [
        "app",
        "App.example",
    ]


async def test_real_resolver_warns_for_names_that_do_not_resolve():
    # `.invalid` never resolves (RFC 6761); `localhost` always does.
    out = await upstream_warnings(
        ["localhost:80", "nothing-here.invalid:8080", "127.0.0.1:1"], services=None, resolve=resolve_host, timeout_s=5.0
    )
    assert len(out) == 1 and "'nothing-here.invalid'" in out[0], out
    assert "does not resolve" in out[0] or "did not resolve within" in out[0]


async def test_a_hanging_lookup_is_bounded_and_the_loop_stays_free():
    loop = asyncio.get_running_loop()

    def blocking_lookup(host: str) -> object:  # a resolver that hangs, in a thread like getaddrinfo's
        time.sleep(1.5)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def slow(host: str) -> object:
        return await loop.run_in_executor(None, blocking_lookup, host)

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    t = asyncio.create_task(ticker())
    started = time.monotonic()
    out = await upstream_warnings(["app:8080"], services=lambda: SERVICES, resolve=slow, timeout_s=0.3)
    took = time.monotonic() - started
    t.cancel()
    assert took < 1.2 and ticks >= 5  # answered at the deadline; the loop kept running meanwhile
    assert out == [
        "upstream host 'app' did not resolve within 0.3 s; check the name (requests get 502 while it does not resolve)"
    ]


def test_slow_lookups_of_the_checks_do_not_delay_an_upstream_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    """Saving routes whose names are slow to fail must not hold the getaddrinfo threads an upstream
    connect needs. `socket.getaddrinfo` is replaced by a fake of the OS resolver that takes 3 s for
    `*.slow.test` and is the real one otherwise. The loop here is asyncio's own, whose shared lookup
    threads are its default executor (uvloop's are libuv's four: the same sharing, which cannot be
    faked from Python); the checks' `resolve_host` must not use them."""
    real = socket.getaddrinfo

    def fake_getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if isinstance(host, str) and host.endswith(".slow.test"):
            time.sleep(3.0)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)

    async def main() -> tuple[float, list[str]]:
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        names = [f"r{i}.slow.test:80" for i in range(12)]  # more than any shared pool's threads
        checks = asyncio.ensure_future(upstream_warnings(names, services=None, resolve=resolve_host, timeout_s=1.0))
        await asyncio.sleep(0.2)  # the checks' lookups are under way
        started = time.monotonic()
        # What the gate's upstream does for a `host:port` target: a connect by name.
        _, writer = await asyncio.wait_for(asyncio.open_connection("localhost", port, family=socket.AF_INET), 10)
        took = time.monotonic() - started
        writer.close()
        out = await checks
        server.close()
        return took, out

    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        took, out = runner.run(main())
    assert took < 1.0, f"an upstream connect waited {took:.2f} s behind the route checks' lookups"
    assert len(out) == 12
    assert sum("was not checked" in w for w in out) == 2, out  # 2 running + 8 waiting; the rest refused at once
    assert all("r" in w and ("did not resolve within 1 s" in w or "was not checked" in w) for w in out), out
