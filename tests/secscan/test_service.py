"""SecscanService: scans share one run, findings not in the previous scan raise `security.finding`
once, a finding that goes away and comes back is new again, and platform facts come through the port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from core.bus import EventBus
from core.clock import ManualClock
from core.platform_facts import PlatformFacts, UserFact
from core.schema import CORE_MIGRATIONS
from core.store import Store
from secscan import SecscanService, SecurityConfig
from tests.secscan.test_scan_tree import CLEAN, make_tree

CLOUD_INIT = "etc/ssh/sshd_config.d/50-cloud-init.conf"


class StaticFacts:
    """A `PlatformFactsSource` with fixed facts (the port's edge; the scanner itself is real)."""

    def __init__(self, facts: PlatformFacts) -> None:
        self.facts = facts
        self.calls = 0

    async def platform_facts(self) -> PlatformFacts:
        self.calls += 1
        await asyncio.sleep(0.05)  # long enough for a second caller to arrive meanwhile
        return self.facts


@pytest.fixture
async def kernel(tmp_path) -> AsyncIterator[tuple[Store, EventBus]]:
    store = Store(tmp_path / "state.db")
    await store.open()
    await store.migrate("core", CORE_MIGRATIONS)
    bus = EventBus(store)
    await bus.start()
    yield store, bus
    bus.close()
    await store.close()


async def _events(bus: EventBus, after: int) -> list[dict]:
    return [e.to_dict() for e in await bus.read_after(after, 1000) if e.type == "security.finding"]


async def test_new_findings_raise_an_event_once(kernel, tmp_path):
    store, bus = kernel
    root = make_tree(
        tmp_path / "root",
        {
            **CLEAN,
            CLOUD_INIT: "PasswordAuthentication yes\n",
            "etc/ssh/sshd_config.d/00-infracore-hardening.conf": None,
        },
    )
    data_dir = root / "var/lib/infracore"
    facts = StaticFacts(
        PlatformFacts(
            data_dir=data_dir,
            console_host="127.0.0.1",
            console_port=7070,
            edge_ports=(80, 443),
            users=(UserFact("admin", "admin", totp=False),),
        )
    )
    svc = SecscanService(
        SecurityConfig(interval_s=0, sockets=False), store=store, bus=bus, facts=facts, clock=ManualClock(), root=root
    )
    await svc.start()
    try:
        first, again = await asyncio.gather(svc.scan(), svc.scan())
        assert first is again and facts.calls == 1  # one scan served both callers
        ids = {f["id"]: f for f in first["findings"]}
        assert ids["sshd.password_authentication"]["new"] is True
        assert ids["platform.admin_no_2fa.admin"]["severity"] == "medium"
        assert first["failing"] is True
        events = await _events(bus, 0)
        assert {e["data"]["id"] for e in events} == {
            "sshd.password_authentication",
            "sshd.permit_root_login",
            "platform.admin_no_2fa.admin",
        }  # info findings raise none
        pw = next(e for e in events if e["data"]["id"] == "sshd.password_authentication")["data"]
        assert pw["severity"] == "high" and "PasswordAuthentication no" in pw["fix"]
        mark = bus.last_id

        second = await svc.scan()
        assert not any(f["new"] for f in second["findings"])
        assert await _events(bus, mark) == []

        (root / CLOUD_INIT).write_text("PasswordAuthentication no\n")  # fixed...
        fixed = await svc.scan()
        assert "sshd.password_authentication" not in {f["id"] for f in fixed["findings"]}
        (root / CLOUD_INIT).write_text("PasswordAuthentication yes\n")  # ...and back: new again
        back = await svc.scan()
        assert {f["id"] for f in back["findings"] if f["new"]} == {"sshd.password_authentication"}
        assert [e["data"]["id"] for e in await _events(bus, mark)] == ["sshd.password_authentication"]
    finally:
        await svc.stop(5)


async def test_the_previous_scan_survives_a_restart(kernel, tmp_path):
    store, bus = kernel
    root = make_tree(tmp_path / "root", {**CLEAN, "etc/nftables.conf": None})
    cfg = SecurityConfig(interval_s=0, sockets=False)
    svc = SecscanService(cfg, store=store, bus=bus, root=root)
    await svc.start()
    await svc.scan()
    await svc.stop(5)
    mark = bus.last_id
    svc = SecscanService(cfg, store=store, bus=bus, root=root)
    await svc.start()
    report = await svc.scan()
    await svc.stop(5)
    assert "firewall.none" in {f["id"] for f in report["findings"]}
    assert await _events(bus, mark) == []


async def test_periodic_scan(kernel, tmp_path):
    store, bus = kernel
    root = make_tree(tmp_path / "root", {**CLEAN, "etc/nftables.conf": None})
    svc = SecscanService(
        SecurityConfig(interval_s=3600, first_scan_after_s=0, sockets=False), store=store, bus=bus, root=root
    )
    await svc.start()
    try:
        for _ in range(200):
            if svc.last is not None:
                break
            await asyncio.sleep(0.05)
        assert svc.last is not None and "firewall.none" in {f["id"] for f in svc.last["findings"]}
    finally:
        await svc.stop(5)


def test_config_parses_durations_and_refuses_typos():
    from core.errors import StartupError
    from secscan import load_security_config

    assert load_security_config({"interval_s": "12h", "cert_warn_s": "30d"}).interval_s == 12 * 3600
    with pytest.raises(StartupError, match=r"security\.intervall"):
        load_security_config({"intervall": "1h"})
    with pytest.raises(StartupError, match=r"security\.allowed_ports"):
        load_security_config({"allowed_ports": [0]})
