"""429/rateLimited handling: the server's Retry-After moves the next attempt; nothing is served less.

Pebble never rate-limits, so these tests use a fake ACME server (aiohttp on 127.0.0.1) that answers
the directory, nonce and account requests and refuses every order with 429 + Retry-After — the one
thing the real server here cannot do.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from certd import AcmeOrderFailed
from certd.acme_client import parse_retry_after

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 5 ", 5.0),
        ("0", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("\u00b2", None),
        ("\u0663", None),  # digits to str.isdigit, not to float(): a hostile CA header
        (email.utils.formatdate(NOW + 90, usegmt=True), 90.0),
        (email.utils.formatdate(NOW - 90, usegmt=True), 0.0),  # a date in the past: retry now
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, NOW) == seconds


@pytest.fixture
async def rate_limited_acme() -> AsyncIterator[dict]:
    nonces = itertools.count(1)
    seen: dict = {"orders": 0}

    def headers(**extra: str) -> dict[str, str]:
        return {"Replay-Nonce": f"nonce{next(nonces)}", "Cache-Control": "no-store", **extra}

    async def directory(request: web.Request) -> web.Response:
        base = f"http://{request.host}"
        return web.json_response(
            {"newNonce": f"{base}/nonce", "newAccount": f"{base}/acct", "newOrder": f"{base}/order"}
        )

    async def nonce(request: web.Request) -> web.Response:
        return web.Response(headers=headers())

    async def account(request: web.Request) -> web.Response:
        return web.json_response(
            {"status": "valid"}, status=201, headers=headers(Location=f"http://{request.host}/acct/1")
        )

    async def order(request: web.Request) -> web.Response:
        seen["orders"] += 1
        problem = {
            "type": "urn:ietf:params:acme:error:rateLimited",
            "detail": "too many certificates (5) already issued for this exact set of identifiers",
        }
        return web.json_response(
            problem, status=429, content_type="application/problem+json", headers=headers(**{"Retry-After": "3600"})
        )

    app = web.Application()
    app.router.add_get("/dir", directory)
    app.router.add_route("HEAD", "/nonce", nonce)
    app.router.add_post("/acct", account)
    app.router.add_post("/order", order)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    seen["directory"] = f"http://127.0.0.1:{port}/dir"
    yield seen
    await runner.cleanup()


async def test_rate_limited_order_waits_for_retry_after(rate_limited_acme, certd_factory) -> None:
    h = await certd_factory(directory=rate_limited_acme["directory"], certd={"backoff_base": "10s"})
    before = time.time()
    with pytest.raises(AcmeOrderFailed) as exc:
        await h.service.issue("busy.test")
    assert "too many certificates (5) already issued" in exc.value.message
    assert "urn:ietf:params:acme:error:rateLimited" in exc.value.message
    assert exc.value.details["retry_after_s"] == 3600
    [failed] = await h.events_of("cert.failed")
    assert failed.data["retry_in_s"] == 3600  # the server's hour, not our 10 s back-off
    [cert] = await h.service.list()
    assert before + 3590 <= cert["next_attempt_at"] <= time.time() + 3601
    # The scheduler respects it: no second order is placed meanwhile.
    h.service.wake()
    await asyncio.sleep(0.5)  # a negative check: give the scheduler passes in which it must not order
    assert rate_limited_acme["orders"] == 1
    assert h.board.get("busy.test").source == "self-signed"
