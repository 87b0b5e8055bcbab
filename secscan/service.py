"""The secscan component: runs a scan on request (one at a time: callers arriving during a scan share
it) and periodically, remembers which findings the last scan had, and publishes `security.finding`
for each finding that is new since then (one that went away and came back counts as new).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import structlog

from core.bus import EventBus
from core.clock import Clock, SystemClock
from core.platform_facts import PlatformFactsSource
from core.store import Migration, Store
from core.tasks import TaskSet
from secscan.config import SecurityConfig
from secscan.events import SecurityFindingRaised
from secscan.findings import Finding, ordered
from secscan.scanner import platform_findings, report, scan_host

log = structlog.get_logger("secscan")

MIGRATIONS = [
    Migration(
        1,
        "findings of the last scan",
        """
        CREATE TABLE security_findings (
            id TEXT PRIMARY KEY,
            severity TEXT NOT NULL,
            title TEXT NOT NULL,
            first_seen REAL NOT NULL,
            last_seen REAL NOT NULL
        );
    """,
    ),
]
MAX_EVENTS_PER_SCAN = 100  # a host with hundreds of open ports still gets a bounded burst


class SecscanService:
    name = "secscan"

    def __init__(
        self,
        config: SecurityConfig,
        *,
        store: Store,
        bus: EventBus,
        facts: PlatformFactsSource | None = None,
        clock: Clock | None = None,
        root: Path = Path("/"),
    ) -> None:
        self.config = config
        self.store = store
        self.bus = bus
        self.facts = facts
        self.clock = clock or SystemClock()
        self.root = root
        self.tasks = TaskSet("secscan")
        self._inflight: asyncio.Future[dict[str, Any]] | None = None
        self.last: dict[str, Any] | None = None

    async def start(self) -> None:
        await self.store.migrate("secscan", MIGRATIONS)
        if self.config.interval_s > 0:
            self.tasks.spawn("periodic", self._periodic())

    async def stop(self, drain_timeout_s: float) -> None:
        await self.tasks.close(drain_timeout_s)

    async def _periodic(self) -> None:
        await asyncio.sleep(self.config.first_scan_after_s)
        while True:
            try:
                await self.scan()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # one failed scan must not end the schedule
                log.error("security scan failed", error=repr(e))
            await asyncio.sleep(self.config.interval_s)

    async def scan(self) -> dict[str, Any]:
        """A fresh report. Concurrent callers share the scan in progress instead of starting another."""
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.ensure_future(self._scan())
        return await asyncio.shield(self._inflight)

    async def _scan(self) -> dict[str, Any]:
        started = time.monotonic()
        facts = await self.facts.platform_facts() if self.facts is not None else None
        allowed = tuple(self.config.allowed_ports) + (facts.edge_ports if facts else ())
        host = await asyncio.to_thread(
            scan_host,
            self.root,
            sockets=self.config.sockets,
            allowed_ports=allowed,
            data_dir=facts.data_dir if facts else None,
        )
        findings = list(host.findings)
        now = self.clock.now()
        if facts is not None:
            findings += platform_findings(
                facts,
                now,
                host.listeners,
                cert_warn_days=self.config.cert_warn_s / 86400,
                token_max_days=self.config.token_max_s / 86400,
            )
        findings = ordered(findings)
        new = await self._remember(findings, now)
        out = report(findings, scanned_at=now, sources=host.sources, new_ids={f.id for f in new})
        for f in [f for f in new if f.severity != "info"][:MAX_EVENTS_PER_SCAN]:
            await self.bus.publish(SecurityFindingRaised(f.id, f.category, f.severity, f.title, f.fix))
        log.info(
            "security scan finished",
            findings=len(findings),
            new=len(new),
            counts=out["counts"],
            duration_ms=round((time.monotonic() - started) * 1000),
        )
        self.last = out
        return out

    async def _remember(self, findings: list[Finding], now: float) -> list[Finding]:
        """Store this scan's findings as "the previous scan"; return those the previous one did not have."""
        async with self.store.transaction() as db:
            cur = await db.execute("SELECT id FROM security_findings")
            known = {r[0] for r in await cur.fetchall()}
            current = {f.id for f in findings}
            gone = known - current
            for fid in gone:
                await db.execute("DELETE FROM security_findings WHERE id = ?", (fid,))
            for f in findings:
                await db.execute(
                    "INSERT INTO security_findings (id, severity, title, first_seen, last_seen) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT(id) DO UPDATE SET severity = excluded.severity, title = excluded.title, "
                    "last_seen = excluded.last_seen",
                    (f.id, f.severity, f.title, now, now),
                )
        return [f for f in findings if f.id not in known]
