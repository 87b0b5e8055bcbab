"""Issuance, renewal and failures against a real ACME server: Pebble, started by shared/peers/peers.sh.

The HTTP-01 tokens are served by the `responder` fixture, which stands in for the gate's responder
(whose own tests live in tests/gate); the end-to-end test through `fsctl serve` comes with the gate.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import ssl
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certd import AcmeOrderFailed, pem
from core.clock import ManualClock
from tests.certd.conftest import tls_handshake, unique_name


async def test_issue_multi_san_chain_verifies_against_pebble_root(pebble, responder, certd_factory) -> None:
    h = await certd_factory(
        directory=pebble.directory, ca_bundle=pebble.ca_bundle, challenges=responder.store, email="ops@example.com"
    )
    name, www = unique_name("multi"), None
    www = "www." + name
    view = await h.service.issue(name, [www])

    assert view["status"] == "valid" and view["source"] == "acme"
    assert view["names"] == [name, www]
    crt, key = Path(view["cert_path"]), Path(view["key_path"])
    assert crt == h.data_dir / "certs" / f"{name}.crt" and key == h.data_dir / "certs" / f"{name}.key"
    assert (key.stat().st_mode & 0o777) == 0o600
    # A client trusting only this Pebble's root verifies the chain for both names.
    for sni in (name, www):
        peer = await asyncio.to_thread(tls_handshake, str(crt), str(key), pebble.root_pem, sni)
        assert ("DNS", sni) in peer["subjectAltName"]
    leaf = x509.load_pem_x509_certificate(crt.read_bytes())
    assert format(leaf.serial_number, "x") == view["serial"]
    # Pebble really fetched our tokens (once per name at least) with the name in Host.
    hosts = {host.split(":")[0] for host, _, status in responder.hits if status == 200}
    assert {name, www} <= hosts
    assert responder.store._tokens == {}, "tokens must be removed once the order is done"
    # Published to the board for both names, and announced on the bus.
    for n in (name, www):
        ref = h.board.get(n)
        assert ref is not None and ref.serial == view["serial"] and ref.source == "acme"
        assert ref.cert_path == str(crt) and ref.key_path == str(key)
    issued = await h.events_of("cert.issued")
    assert [e.data["serial"] for e in issued] == [view["serial"]] and issued[0].data["renewal"] is False

    # Rate-limit hygiene: a second `issue` for the same names with years left is refused, not ordered.
    with pytest.raises(Exception) as exc:
        await h.service.issue(name, [www])
    assert getattr(exc.value, "status", None) == 409 and "days left" in str(exc.value)


async def test_wanted_name_gets_fallback_then_acme_cert(pebble, responder, certd_factory) -> None:
    h = await certd_factory(directory=pebble.directory, ca_bundle=pebble.ca_bundle, challenges=responder.store)
    name = unique_name("auto")
    h.board.set_wanted({name})  # what the gate does for a route with `tls: auto`

    ref = await h.wait_for(
        lambda: (r := h.board.get(name)) is not None and r.source == "acme" and r,
        30,
        "an ACME certificate on the board",
    )
    # The self-signed fallback was published first, so HTTPS answered while the order ran.
    sources = [src for n, _, src in h.published if n == name]
    assert sources[0] == "self-signed" and sources[-1] == "acme"
    peer = await asyncio.to_thread(tls_handshake, ref.cert_path, ref.key_path, pebble.root_pem, name)
    assert ("DNS", name) in peer["subjectAltName"]
    # Nothing more is ordered for it: the scheduler waits for the renewal time years away.
    await h.wait_for(lambda: h.events_of("cert.issued"), 10, "cert.issued")
    await asyncio.sleep(0.3)  # a negative check: passes in which nothing more may be ordered
    assert len(await h.events_of("cert.issued")) == 1
    [cert] = await h.service.list()
    assert cert["origin"] == "wanted" and cert["wanted"] is True and cert["days_left"] > 30


async def test_renewal_replaces_pair_atomically_and_publishes(pebble, responder, certd_factory) -> None:
    # A renewal window of the whole lifetime (renew_share 1): every cert is due at once, and the
    # scheduler renews again after `min_order_interval`.
    h = await certd_factory(
        directory=pebble.directory,
        ca_bundle=pebble.ca_bundle,
        challenges=responder.store,
        certd={"renew_share": 1, "renew_jitter": "1s", "min_order_interval": "1s"},
    )
    name = unique_name("renew")
    h.board.set_wanted({name})
    first = await h.wait_for(
        lambda: (r := h.board.get(name)) is not None and r.source == "acme" and r, 30, "the first certificate"
    )
    crt = Path(first.cert_path)
    key = Path(first.key_path)
    inode = crt.stat().st_ino

    # While the renewal runs, a reader on the loop keeps loading the pair the way the gate does (its
    # SNI contexts are built on the loop): it must never see a key that does not match the certificate.
    torn: list[str] = []
    loads = 0

    async def reader() -> None:
        nonlocal loads
        while True:
            try:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(str(crt), str(key))
                loads += 1
            except ssl.SSLError as e:
                torn.append(str(e))
            except FileNotFoundError as e:
                torn.append(f"missing: {e}")
            await asyncio.sleep(0)

    task = asyncio.create_task(reader())
    try:
        second = await h.wait_for(
            lambda: (r := h.board.get(name)) is not None and r.serial != first.serial and r.source == "acme" and r,
            30,
            "a renewed certificate",
        )
    finally:
        task.cancel()
    assert loads > 10
    assert not torn, torn[:3]
    assert crt.stat().st_ino != inode, "the certificate file must be replaced by rename, not rewritten in place"
    assert (key.stat().st_mode & 0o777) == 0o600
    info = pem.read_info(crt.read_bytes())
    assert info.serial in {second.serial, *(s for n, s, _ in h.published if n == name)}
    await asyncio.to_thread(tls_handshake, str(crt), str(key), pebble.root_pem, name)
    # The event follows the board swap (the gate is told first): wait for it rather than race it.
    renewed = await h.wait_for(lambda: _renewal_events(h), 10, "cert.issued with renewal=true")
    assert renewed[0].data["name"] == name and renewed[0].data["serial"] != first.serial
    assert [n for n, _, src in h.published if src == "acme"].count(name) >= 2


async def test_challenge_not_served_fails_with_acme_text_and_keeps_fallback(pebble, responder, certd_factory) -> None:
    responder.serving = False  # Pebble's GETs reach a listener that answers 404: the challenge is not served
    h = await certd_factory(
        directory=pebble.directory,
        ca_bundle=pebble.ca_bundle,
        challenges=responder.store,
        certd={"backoff_base": "30s"},
    )
    name = unique_name("fail")
    with pytest.raises(AcmeOrderFailed) as exc:
        await h.service.issue(name)
    assert "urn:ietf:params:acme:error:unauthorized" in exc.value.message
    assert "404" in exc.value.message and name in exc.value.message
    [failed] = await h.events_of("cert.failed")
    assert failed.data["name"] == name and failed.data["failures"] == 1
    assert "urn:ietf:params:acme:error:unauthorized" in failed.data["error"]
    assert failed.data["serving"] == "self-signed fallback"
    assert failed.data["retry_in_s"] == 30 and 29 <= failed.data["retry_at"] - failed.at <= 31
    ref = h.board.get(name)
    assert ref is not None and ref.source == "self-signed"
    [cert] = await h.service.list()
    assert cert["status"] == "self-signed" and cert["failures"] == 1 and "unauthorized" in cert["last_error"]
    assert not await h.events_of("cert.issued")


async def test_acme_server_unreachable_keeps_previous_cert_and_backs_off(
    pebble, responder, certd_factory, free_tcp_port
) -> None:
    h = await certd_factory(directory=pebble.directory, ca_bundle=pebble.ca_bundle, challenges=responder.store)
    name = unique_name("keep")
    good = await h.service.issue(name)
    crt = Path(good["cert_path"])
    before = (crt.read_bytes(), Path(good["key_path"]).read_bytes())
    await h.service.stop(5)

    # Restart on the same data dir with the ACME server gone and a renew window that makes it due now.
    h2 = await certd_factory(
        directory=f"https://127.0.0.1:{free_tcp_port}/dir",
        ca_bundle=pebble.ca_bundle,
        data="data",
        certd={
            "renew_share": 1,
            "renew_jitter": "1s",
            "min_order_interval": "0.1s",
            "backoff_base": "0.2s",
            "backoff_cap": "0.8s",
        },
    )
    ref = h2.board.get(name)
    assert ref is not None and ref.serial == good["serial"], "the stored cert is published again at start"
    failed = await h2.wait_for(lambda: _failures(h2, 4), 30, "four failed attempts")
    for e in failed:
        assert "cannot reach the ACME server" in e.data["error"] and "connection refused" in e.data["error"]
        assert e.data["serving"].startswith("previous certificate")
    assert [e.data["retry_in_s"] for e in failed[:4]] == [0.2, 0.4, 0.8, 0.8]  # doubling, capped
    # The attempts really waited for the back-off: each failure comes after the previous retry time.
    for prev, nxt in itertools.pairwise(failed[:4]):
        assert nxt.at >= prev.data["retry_at"]
    assert (crt.read_bytes(), Path(good["key_path"]).read_bytes()) == before
    assert h2.board.get(name).serial == good["serial"]
    with pytest.raises(AcmeOrderFailed) as exc:
        await h2.service.renew(name)
    assert "still serving the previous certificate" in (exc.value.hint or "")


async def _renewal_events(h):
    return [e for e in await h.events_of("cert.issued") if e.data["renewal"]]


async def _failures(h, n: int):
    events = await h.events_of("cert.failed")
    return events if len(events) >= n else None


async def test_restart_after_crash_between_files_and_db_trusts_the_files(pebble, responder, certd_factory) -> None:
    """The files hold a renewed pair but the DB row still describes the old one (a crash after the
    swap, before the row was written): at start the files win and are what gets published."""
    h = await certd_factory(directory=pebble.directory, ca_bundle=pebble.ca_bundle, challenges=responder.store)
    first = await h.service.issue(unique_name("swap"))
    name = first["name"]
    old_row = await h.service.records.get(name)
    renewed = await h.service.renew(name)
    assert renewed["serial"] != first["serial"]
    await h.service.records.put(old_row)  # the DB as the crash left it
    await h.service.stop(5)

    h2 = await certd_factory(directory=pebble.directory, ca_bundle=pebble.ca_bundle, data="data")
    ref = h2.board.get(name)
    assert ref is not None and ref.serial == renewed["serial"]
    view = await h2.service.get(name)
    assert view["serial"] == renewed["serial"] and view["not_after"] == renewed["not_after"]
    d = h.data_dir / "certs"
    key = serialization.load_pem_private_key((d / f"{name}.key").read_bytes(), None)
    assert pem.key_matches(key, x509.load_pem_x509_certificate((d / f"{name}.crt").read_bytes()))


async def test_restart_with_a_lost_key_file_orders_a_new_certificate(pebble, responder, certd_factory) -> None:
    h = await certd_factory(directory=pebble.directory, ca_bundle=pebble.ca_bundle, challenges=responder.store)
    view = await h.service.issue(unique_name("lost"))
    await h.service.stop(5)
    os.unlink(view["key_path"])
    h2 = await certd_factory(
        directory=pebble.directory, ca_bundle=pebble.ca_bundle, data="data", challenges=responder.store
    )
    # The unusable pair is never published; the scheduler orders a new one on its own.
    assert all(serial != view["serial"] for _, serial, _ in h2.published)
    ref = await h2.wait_for(
        lambda: (r := h2.board.get(view["name"])) is not None and r.source == "acme" and r, 30, "a new certificate"
    )
    assert ref.serial != view["serial"]
    assert (Path(view["key_path"]).stat().st_mode & 0o777) == 0o600


async def test_orders_never_stall_the_event_loop(pebble, responder, certd_factory) -> None:
    """The ACME conversation and the fsyncs run in a worker thread: a ticker on the loop keeps ticking."""
    h = await certd_factory(directory=pebble.directory, ca_bundle=pebble.ca_bundle, challenges=responder.store)
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    try:
        views = [await h.service.issue(unique_name("lag"), [unique_name("lag2")]) for _ in range(3)]
        await h.service.renew(views[0]["name"])
        wanted = unique_name("lagauto")
        h.board.set_wanted({wanted})
        await h.wait_for(
            lambda: (r := h.board.get(wanted)) is not None and r.source == "acme", 30, "the wanted name's certificate"
        )
    finally:
        task.cancel()
    assert len(gaps) > 50
    # Typically < 0.05 s; the bound is loose because a loaded 2-core machine deschedules us for a few
    # hundred ms at times. An order run on the loop would stall it for its whole length (and deadlock
    # the responder, which shares the loop).
    assert max(gaps) < 1.0, f"the loop stalled for {max(gaps):.3f}s"


async def test_ten_days_before_expiry_with_failing_renewals_warns_and_keeps_serving(
    pebble, responder, certd_factory, free_tcp_port
) -> None:
    """Jump the clock to 10 days before the Pebble cert expires, with the ACME server gone: the renewal
    fails (cert.failed, previous cert kept) and cert.expiring says how long is left."""
    h = await certd_factory(directory=pebble.directory, ca_bundle=pebble.ca_bundle, challenges=responder.store)
    good = await h.service.issue(unique_name("late"))
    await h.service.stop(5)
    clock = ManualClock(good["not_after"] - 10 * 86400)
    h2 = await certd_factory(
        directory=f"https://127.0.0.1:{free_tcp_port}/dir",
        ca_bundle=pebble.ca_bundle,
        data="data",
        clock=clock,
        certd={"backoff_base": "1h"},
    )
    [failed] = await h2.wait_for(lambda: h2.events_of("cert.failed"), 20, "cert.failed")
    assert failed.data["serving"] == f"previous certificate (serial {good['serial']}) until its expiry"
    [expiring] = await h2.wait_for(lambda: h2.events_of("cert.expiring"), 20, "cert.expiring")
    assert expiring.data["name"] == good["name"] and expiring.data["days_left"] == 10.0
    assert h2.board.get(good["name"]).serial == good["serial"]
    view = await h2.service.get(good["name"])
    assert view["status"] == "expiring" and view["failures"] == 1 and "cannot reach" in view["last_error"]
    assert view["next_attempt_at"] == pytest.approx(clock.now() + 3600, abs=1)
