"""CertdService without an ACME server: expiring warnings, wanted names it cannot order, wildcard
imports covering wanted names, deletion, and the config section."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path
from typing import Any

import pytest
import trustme

from certd.config import LETSENCRYPT_PRODUCTION, LETSENCRYPT_STAGING, load_config
from core.errors import InfraError, StartupError


def _pem_pair(leaf: trustme.LeafCert) -> tuple[str, str]:
    return (b"".join(b.bytes() for b in leaf.cert_chain_pems).decode(), leaf.private_key_pem.bytes().decode())


@pytest.fixture
def unreachable(free_tcp_port: int) -> str:
    return f"https://127.0.0.1:{free_tcp_port}/dir"


async def test_imported_cert_expiring_soon_emits_cert_expiring_once(certd_factory, unreachable) -> None:
    ca = trustme.CA()
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=5)
    leaf = ca.issue_cert("soon.test", not_after=soon)
    h = await certd_factory(directory=unreachable)
    view = await h.service.import_pair(*_pem_pair(leaf))
    assert view["status"] == "expiring" and 4.9 < view["days_left"] <= 5
    h.service.wake()
    [warned] = await h.wait_for(lambda: h.events_of("cert.expiring"), 10, "cert.expiring")
    assert warned.data["name"] == "soon.test" and warned.data["source"] == "imported"
    assert 4.9 < warned.data["days_left"] <= 5
    # Repeated at most once a day (expiring_repeat): more passes, no second event.
    for _ in range(3):
        h.service.wake()
        await asyncio.sleep(0.1)
    assert len(await h.events_of("cert.expiring")) == 1
    [issued] = await h.events_of("cert.issued")
    assert issued.data["source"] == "imported" and issued.data["renewal"] is False
    assert not await h.events_of("cert.failed"), "an imported cert is never ordered"


async def test_wanted_names_it_cannot_order_are_skipped(certd_factory, unreachable) -> None:
    h = await certd_factory(directory=unreachable)
    h.board.set_wanted({"*.wild.test", "10.0.0.1", "bad..name"})
    h.service.wake()
    await asyncio.sleep(0.3)  # negative check: passes in which nothing may be created
    assert await h.service.list() == [] and not h.published


async def test_wanted_name_with_acme_unreachable_serves_fallback_and_stops_when_unwanted(
    certd_factory, unreachable
) -> None:
    h = await certd_factory(directory=unreachable, certd={"backoff_base": "30s"})
    h.board.set_wanted({"app.test"})
    [failed] = await h.wait_for(lambda: h.events_of("cert.failed"), 20, "cert.failed")
    assert "cannot reach the ACME server" in failed.data["error"] and failed.data["serving"] == "self-signed fallback"
    ref = h.board.get("app.test")
    assert ref is not None and ref.source == "self-signed" and Path(ref.key_path).stat().st_mode & 0o777 == 0o600
    h.board.set_wanted(set())
    await h.wait_for(lambda: _auto_renew(h, "app.test", False), 10, "auto renew off")
    h.board.set_wanted({"app.test"})
    await h.wait_for(lambda: _auto_renew(h, "app.test", True), 10, "auto renew on again")


async def _auto_renew(h, name: str, value: bool) -> bool:
    return (await h.service.get(name))["auto_renew"] is value


async def test_wildcard_import_covers_wanted_names_and_delete_withdraws(certd_factory, unreachable) -> None:
    ca = trustme.CA()
    h = await certd_factory(directory=unreachable)
    view = await h.service.import_pair(*_pem_pair(ca.issue_cert("*.wild.test")))
    assert view["name"] == "*.wild.test" and view["cert_path"].endswith("_wildcard_.wild.test.crt")
    h.board.set_wanted({"a.wild.test"})
    h.service.wake()
    await asyncio.sleep(0.3)  # negative check: no record, no order for a name the wildcard covers
    assert [c["name"] for c in await h.service.list()] == ["*.wild.test"]
    assert h.board.get("a.wild.test").serial == view["serial"]
    gone = await h.service.delete("*.wild.test")
    assert gone["name"] == "*.wild.test"
    assert h.board.get("a.wild.test") is None  # withdrawn before the scheduler runs again
    assert not Path(view["cert_path"]).exists() and not Path(view["key_path"]).exists()
    # Still wanted: the name gets its own fallback (and an order) on the next pass.
    ref = await h.wait_for(lambda: h.board.get("a.wild.test"), 10, "a fallback for the wanted name")
    assert ref.source == "self-signed"


async def test_issue_refuses_wildcards_and_imported_names(certd_factory, unreachable) -> None:
    h = await certd_factory(directory=unreachable)
    with pytest.raises(InfraError) as exc:
        await h.service.issue("*.x.test")
    assert "DNS-01" in str(exc.value) and exc.value.status == 400
    await h.service.import_pair(*_pem_pair(trustme.CA().issue_cert("mine.test")))
    with pytest.raises(InfraError) as exc:
        await h.service.issue("mine.test")
    assert exc.value.status == 409 and "imported certificate" in str(exc.value)
    with pytest.raises(InfraError) as exc:
        await h.service.renew("nothere.test")
    assert exc.value.status == 404


@pytest.mark.parametrize(
    ("section", "configured", "url"),
    [
        ({}, LETSENCRYPT_PRODUCTION, LETSENCRYPT_PRODUCTION),
        ({"staging": True}, LETSENCRYPT_PRODUCTION, LETSENCRYPT_STAGING),
        ({"staging": True}, "https://ca.internal/dir", "https://ca.internal/dir"),
        ({}, "https://127.0.0.1:14000/dir", "https://127.0.0.1:14000/dir"),
    ],
)
def test_directory_url(section: dict, configured: str, url: str) -> None:
    assert load_config(section).directory_url(configured) == url


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"renew_befor": "30d"}, "certd.renew_befor: Extra inputs are not permitted"),
        ({"renew_before": "soon"}, "certd.renew_before: Value error, 'soon' is not a duration"),
        ({"renew_before": "1d", "renew_jitter": "2d"}, "renew_jitter must be shorter than renew_before"),
        ({"backoff_base": "1h", "backoff_cap": "1m"}, "backoff_cap must be at least backoff_base"),
        ({"staging": "maybe"}, "certd.staging: Input should be a valid boolean"),
    ],
)
def test_config_errors_are_precise(section: dict, message: str) -> None:
    with pytest.raises(StartupError) as exc:
        load_config(section)
    assert message in exc.value.message


def test_config_accepts_durations_and_seconds() -> None:
    c = load_config({"renew_before": "45d", "renew_jitter": 3600, "backoff_base": "5s", "min_order_interval": "1m"})
    assert (c.renew_before_s, c.renew_jitter_s, c.backoff_base_s, c.min_order_interval_s) == (45 * 86400, 3600, 5, 60)


def test_fsctl_serve_refuses_a_bad_certd_section(server_factory, tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("certd:\n  renew_before: 30d\n  renew_jiter: 1d\n")
    srv = server_factory(extra_args=["--config", str(cfg)], wait=False)
    assert srv.proc.wait(60) == 1
    assert "certd.renew_jiter: Extra inputs are not permitted" in srv.log()


async def test_start_refuses_a_missing_acme_ca_bundle(certd_factory, unreachable, tmp_path: Path) -> None:
    h = await certd_factory(directory=unreachable, start=False)
    h.service.issuer.ca_bundle = tmp_path / "nope.pem"
    with pytest.raises(StartupError) as exc:
        await h.service.start()
    assert exc.value.message == f"the ACME CA bundle {tmp_path / 'nope.pem'} does not exist or is not a file"
    assert "--acme-ca-bundle" in (exc.value.hint or "")


async def test_start_recovers_an_interrupted_write_and_serves_the_previous_pair(certd_factory, unreachable) -> None:
    ca = trustme.CA()
    h = await certd_factory(directory=unreachable)
    view = await h.service.import_pair(*_pem_pair(ca.issue_cert("kept.test")))
    await h.service.stop(5)
    d = Path(view["cert_path"]).parent
    before = (Path(view["cert_path"]).read_bytes(), Path(view["key_path"]).read_bytes())
    # What a crash in the middle of staging a new pair leaves: a complete key, half a certificate.
    (d / "kept.test.key.new").write_bytes(b"-----BEGIN PRIVATE KEY-----\nnew\n-----END PRIVATE KEY-----\n")
    (d / "kept.test.crt.new").write_bytes(b"-----BEGIN CERTIFICATE-----\nhalf")
    h2 = await certd_factory(directory=unreachable, data="data")
    assert not list(d.glob("*.new"))
    assert (Path(view["cert_path"]).read_bytes(), Path(view["key_path"]).read_bytes()) == before
    ref = h2.board.get("kept.test")
    assert ref is not None and ref.serial == view["serial"] and ref.source == "imported"


async def test_a_database_from_before_ari_is_upgraded_and_its_files_give_the_ari_id(
    certd_factory, unreachable, tmp_path: Path
) -> None:
    """Migration 2 adds the ARI columns to rows written by migration 1; at start the id of each
    certificate is read from its file (trustme's leaves carry an authority key identifier)."""
    from certd import records
    from core.schema import CORE_MIGRATIONS
    from core.store import Store

    ca = trustme.CA()
    h = await certd_factory(directory=unreachable, data="old")
    view = await h.service.import_pair(*_pem_pair(ca.issue_cert("old.test")))
    expected = view["ari"]["id"]
    assert expected and "." in expected
    await h.service.stop(5)
    # Take the DB back to migration 1: only the old columns, no trace of migration 2.
    async with h.store.transaction() as db:
        await db.execute(
            "CREATE TABLE v1 AS SELECT name, names, source, origin, auto, serial, not_before, not_after, "
            "issuer, fingerprint, failures, last_error, last_attempt_at, next_attempt_at, last_issued_at, "
            "last_warned_at, created_at, updated_at FROM certd_certs"
        )
        await db.execute("DROP TABLE certd_certs")
        await db.execute("ALTER TABLE v1 RENAME TO certd_certs")
        await db.execute("DELETE FROM schema_migrations WHERE component = 'certd' AND version = 2")
    h.bus.close()
    await h.store.close()
    store = Store(tmp_path / "old" / "state.db")
    await store.open()
    await store.migrate("core", CORE_MIGRATIONS)
    await records.CertRecords(store).migrate()
    [row] = await records.CertRecords(store).all()
    assert row.ari_id == "" and row.ari_renew_at is None and row.serial == view["serial"]
    await store.close()

    h2 = await certd_factory(directory=unreachable, data="old")
    assert (await h2.service.get("old.test"))["ari"]["id"] == expected
    assert (await h2.service.records.get("old.test")).ari_id == expected


async def test_ari_turned_off_forgets_the_stored_windows(certd_factory, unreachable) -> None:
    """A window noted while `ari` was on (here: "renew now") must not keep deciding renewals after
    `ari: false`: it is cleared, and the share of the lifetime decides (no order for a fresh cert)."""
    import time

    ca = trustme.CA()
    h = await certd_factory(directory=unreachable, data="arioff")
    view = await h.service.import_pair(*_pem_pair(ca.issue_cert("arioff.test")))
    await h.service.stop(5)
    now = time.time()
    # What an ACME certificate looks like after the CA's window said "renew an hour ago".
    await h.service.records.update(
        "arioff.test",
        source="acme",
        origin="wanted",
        ari_window_start=now - 7200,
        ari_window_end=now - 3600,
        ari_renew_at=now - 3600,
        ari_next_check_at=now + 86400,
    )
    h2 = await certd_factory(directory=unreachable, data="arioff", certd={"ari": False})
    h2.service.wake()
    rec = await h2.wait_for(lambda: _ari_cleared(h2), 20, "the stored window cleared")
    assert rec.ari_renew_at is None and rec.ari_window_end is None and rec.ari_next_check_at is None
    await asyncio.sleep(0.5)  # a negative check: passes that must not order
    rec = await h2.service.records.get("arioff.test")
    assert rec.last_attempt_at is None and rec.failures == 0 and rec.serial == view["serial"]
    assert (await h2.service.get("arioff.test"))["ari"]["renew_at"] is None


async def _ari_cleared(h: Any) -> Any:
    rec = await h.service.records.get("arioff.test")
    return rec if rec is not None and rec.ari_window_start is None else None
