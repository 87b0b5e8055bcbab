"""Renewal timing against a real ACME server: short-lived certificates from a Pebble of our own
(`certificateValidityPeriod`), and ACME Renewal Information (RFC 9773).

Debian's Pebble (2.4) has no `renewalInfo`, so the ARI tests put a small HTTPS proxy in front of a
real Pebble: it forwards every ACME request unchanged (keeping the Host header, from which Pebble
builds its URLs, so the JWS `url` checks pass and every later URL points at the proxy), adds
`renewalInfo` to the directory, answers it with whatever window, status and Retry-After a test sets,
and notes the payload of each new-order (to see `replaces`). Issuance itself is Pebble's, for real.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509

from certd import pem
from core.clock import ManualClock
from tests.certd.conftest import Pebble, serve_responder, tls_handshake, unique_name

HOUR = 3600.0
DAY = 86400.0


async def test_short_lived_certificate_is_renewed_with_a_third_left_not_at_every_min_order_interval(
    own_pebble, certd_factory
) -> None:
    """The defect: renewing at a fixed 30 days before expiry made a certificate living less than that
    due at once, so it was ordered again at every `min_order_interval` (1 s here)."""
    pebble = own_pebble(validity_s=30)
    responder, runner = await serve_responder(pebble.http01_port)
    try:
        h = await certd_factory(
            directory=pebble.directory,
            ca_bundle=pebble.ca_bundle,
            challenges=responder.store,
            certd={"min_order_interval": "1s", "backoff_base": "1s"},
        )
        name = unique_name("short")
        h.board.set_wanted({name})
        first = await h.wait_for(
            lambda: (r := h.board.get(name)) is not None and r.source == "acme" and r, 30, "the first certificate"
        )
        info = pem.read_info(Path(first.cert_path).read_bytes())
        lifetime = info.not_after - info.not_before
        assert 25 <= lifetime <= 31, info
        due = info.not_after - lifetime / 3  # a third of the lifetime left

        second = await h.wait_for(
            lambda: (r := h.board.get(name)) is not None and r.serial != first.serial and r.source == "acme" and r,
            45,
            "the renewal",
        )
        issued = await h.events_of("cert.issued")
        assert [e.data["serial"] for e in issued][:2] == [first.serial, second.serial], issued
        # Ordered at its time (not one min_order_interval after the first), and before the first expired.
        assert due - 0.5 <= issued[1].at < info.not_after, (issued[1].at - info.not_before, lifetime)

        # The plan as the API shows it: a third of the lifetime left, moved later by at most a tenth of that.
        view = await h.service.get(name)
        left_at_renewal = view["not_after"] - view["renew_at"]
        life2 = view["not_after"] - view["not_before"]
        assert life2 / 3 * 0.9 - 0.01 <= left_at_renewal <= life2 / 3 + 0.01, view
        [sample] = h.service.samples()
        assert sample.name == "cert_expiry_seconds" and sample.labels == {"name": name}
        assert 0 < sample.value <= life2
        await asyncio.to_thread(tls_handshake, second.cert_path, second.key_path, pebble.root_pem, name)
    finally:
        await runner.cleanup()


# --- ARI -------------------------------------------------------------------------------------------


@dataclass
class AriProxy:
    directory: str = ""
    advertise: bool = True  # put renewalInfo in the directory
    status: int = 200
    body: bytes = b""
    retry_after: str | None = None
    hits: list[str] = field(default_factory=list)  # the ids asked about, in order
    orders: list[dict] = field(default_factory=list)  # new-order payloads, in order

    def window(self, start: float, end: float, retry_after: str | None = None) -> None:
        def ts(t: float) -> str:
            return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")

        self.status, self.retry_after = 200, retry_after
        self.body = json.dumps({"suggestedWindow": {"start": ts(start), "end": ts(end)}}).encode()


def _payload(jws: bytes) -> dict:
    encoded = json.loads(jws)["payload"]
    return json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)) or b"{}")


@pytest.fixture
async def ari_proxy(own_pebble) -> AsyncIterator[tuple[AriProxy, Pebble]]:
    pebble: Pebble = own_pebble()
    upstream = pebble.directory.rsplit("/", 1)[0]
    proxy = AriProxy()
    client_ctx = ssl.create_default_context(cafile=str(pebble.ca_bundle))
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ctx))

    async def forward(request: web.Request, body: bytes) -> tuple[int, dict[str, str], bytes]:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("accept-encoding", "content-length")}
        async with session.request(
            request.method, upstream + request.path_qs, headers=headers, data=body, allow_redirects=False
        ) as resp:
            out = {
                k: v
                for k, v in resp.headers.items()
                if k.lower() not in ("content-length", "transfer-encoding", "content-encoding", "connection")
            }
            return resp.status, out, await resp.read()

    async def handle(request: web.Request) -> web.Response:
        if request.path.startswith("/renewal-info/"):
            proxy.hits.append(request.path.rsplit("/", 1)[1])
            headers = {"Retry-After": proxy.retry_after} if proxy.retry_after is not None else {}
            return web.Response(status=proxy.status, body=proxy.body, headers=headers, content_type="application/json")
        body = await request.read()
        if request.method == "POST" and request.path == "/order-plz":
            proxy.orders.append(_payload(body))
        status, headers, data = await forward(request, body)
        if request.method == "GET" and request.path == "/dir" and proxy.advertise:
            doc = json.loads(data)
            doc["renewalInfo"] = f"https://{request.host}/renewal-info"
            data = json.dumps(doc).encode()
        return web.Response(status=status, headers=headers, body=data)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    # Pebble's own HTTPS pair (for 127.0.0.1, signed by the CA in pebble.ca_bundle) serves the proxy too.
    server_ctx.load_cert_chain(pebble.ca_bundle.parent / "cert.pem", pebble.ca_bundle.parent / "key.pem")
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    proxy.directory = f"https://127.0.0.1:{port}/dir"
    yield proxy, pebble
    await runner.cleanup()
    await session.close()


def _ari_id_by_the_acme_library(cert_path: str) -> str:
    from acme.client import _renewal_info_path_component

    return _renewal_info_path_component(x509.load_pem_x509_certificate(Path(cert_path).read_bytes()))


async def test_ari_window_is_followed_with_retry_after_and_the_renewal_replaces(ari_proxy, certd_factory) -> None:
    proxy, pebble = ari_proxy
    responder, runner = await serve_responder(pebble.http01_port)
    try:
        clock = ManualClock(time.time())
        h = await certd_factory(
            directory=proxy.directory, ca_bundle=pebble.ca_bundle, challenges=responder.store, clock=clock
        )
        # The CA suggests renewing in ten days (long before Pebble's five-year cert's own third), and
        # says to ask again in an hour.
        now = clock.now()
        proxy.window(now + 10 * DAY, now + 11 * DAY, retry_after="3600")
        name = unique_name("ari")
        first = await h.service.issue(name)
        assert "replaces" not in proxy.orders[0]  # a first certificate replaces nothing
        ari_id = _ari_id_by_the_acme_library(first["cert_path"])
        assert first["ari"]["id"] == ari_id

        h.service.wake()
        await h.wait_for(lambda: proxy.hits, 20, "the renewalInfo request")
        view = await h.wait_for(lambda: _with_window(h, name), 10, "the window noted")
        assert proxy.hits == [ari_id]
        ari = view["ari"]
        assert ari["window_start"] == pytest.approx(now + 10 * DAY)
        assert ari["window_end"] == pytest.approx(now + 11 * DAY)
        assert now + 10 * DAY <= ari["renew_at"] <= now + 11 * DAY and ari["error"] is None
        assert view["renew_at"] == ari["renew_at"]  # the CA's time, not the share of the lifetime
        assert ari["next_check_at"] == pytest.approx(clock.now() + HOUR)
        # Retry-After is honoured: passes before it is over do not ask again, and order nothing.
        for _ in range(3):
            h.service.wake()
            await asyncio.sleep(0.2)  # a negative check: passes in which nothing may be fetched
        assert proxy.hits == [ari_id] and len(proxy.orders) == 1

        # An hour later the CA moves the window into the past ("renew now", e.g. before a revocation).
        proxy.window(clock.now() - 2 * HOUR, clock.now() - HOUR, retry_after="60")
        clock.advance(HOUR + 1)
        h.service.wake()
        renewed = await h.wait_for(lambda: _renewals(h), 30, "the renewal the CA asked for")
        assert renewed[0].data["name"] == name and renewed[0].data["serial"] != first["serial"]
        assert proxy.hits[:2] == [ari_id, ari_id]
        assert proxy.orders[1]["replaces"] == ari_id  # the new-order names the certificate it replaces
        now_view = await h.service.get(name)
        assert now_view["ari"]["id"] == _ari_id_by_the_acme_library(now_view["cert_path"]) != ari_id
        await asyncio.to_thread(tls_handshake, now_view["cert_path"], now_view["key_path"], pebble.root_pem, name)
    finally:
        await runner.cleanup()


async def test_ari_failures_keep_the_last_window_and_fall_back_safely(ari_proxy, certd_factory) -> None:
    proxy, pebble = ari_proxy
    responder, runner = await serve_responder(pebble.http01_port)
    try:
        clock = ManualClock(time.time())
        h = await certd_factory(
            directory=proxy.directory, ca_bundle=pebble.ca_bundle, challenges=responder.store, clock=clock
        )
        now = clock.now()
        proxy.window(now + 10 * DAY, now + 11 * DAY)  # no Retry-After: ask again in 6 h
        name = unique_name("arifail")
        await h.service.issue(name)
        h.service.wake()
        view = await h.wait_for(lambda: _with_window(h, name), 20, "the window noted")
        assert view["ari"]["next_check_at"] == pytest.approx(clock.now() + 6 * HOUR)
        picked = view["ari"]["renew_at"]

        # What an attacker or a broken CA could answer: each is an error noted with its next check,
        # never a crash, never an order; the last good window stays in force.
        cases = [
            (500, b'{"type": "urn:ietf:params:acme:error:serverInternal"}', "120", "answered 500", 120),
            (200, b"<html>not json</html>", None, "not JSON", 6 * HOUR),
            (
                200,
                b'{"suggestedWindow": {"start": "2026-12-03T00:00:00Z", "end": "2026-12-01T00:00:00Z"}}',
                "1",
                "before it starts",
                60,
            ),  # a silly Retry-After is clamped to a minute
            (200, b"{" * 70_000, "999999999", "more than", DAY),  # a huge one to a day
            (404, b"", None, "answered 404", 6 * HOUR),
        ]
        for status, body, retry_after, error, delay in cases:
            proxy.status, proxy.body, proxy.retry_after = status, body, retry_after
            clock.advance(DAY + 1)
            before = len(proxy.hits)
            h.service.wake()
            view = await h.wait_for(lambda n=before: _ari_error_after(h, name, n, proxy), 20, f"the {error!r} noted")
            assert error in view["ari"]["error"], view["ari"]
            assert view["ari"]["next_check_at"] == pytest.approx(clock.now() + delay)
            assert view["ari"]["renew_at"] == picked and view["renew_at"] == picked
        assert len(proxy.orders) == 1

        # A CA that stops offering ARI: the share of the lifetime decides again, and renewals do not
        # send `replaces`.
        proxy.advertise = False
        h2 = await certd_factory(
            directory=proxy.directory, ca_bundle=pebble.ca_bundle, challenges=responder.store, clock=clock, data="other"
        )
        other = await h2.service.issue(unique_name("noari"))
        clock.advance(DAY)
        h2.service.wake()
        await asyncio.sleep(0.5)  # a negative check: passes that must not ask for renewal information
        view = await h2.service.get(other["name"])
        assert view["ari"]["window_start"] is None and view["ari"]["renew_at"] is None
        life = view["not_after"] - view["not_before"]
        assert view["not_after"] - life / 3 <= view["renew_at"] <= view["not_after"] - life / 3 + 2 * DAY
        await h2.service.renew(other["name"])
        assert "replaces" not in proxy.orders[-1]
    finally:
        await runner.cleanup()


async def _with_window(h, name: str) -> dict | None:
    view = await h.service.get(name)
    return view if view["ari"] and view["ari"]["renew_at"] is not None else None


async def _ari_error_after(h, name: str, before: int, proxy: AriProxy) -> dict | None:
    if len(proxy.hits) <= before:
        return None
    view = await h.service.get(name)
    return view if view["ari"]["error"] and view["ari"]["next_check_at"] > h.service.clock.now() + 1 else None


async def _renewals(h) -> list:
    return [e for e in await h.events_of("cert.issued") if e.data["renewal"]]
