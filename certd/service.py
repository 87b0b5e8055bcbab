"""CertdService: the asyncio shell around the pure schedule, the PEM files, the state DB and the
synchronous ACME client (run in a one-thread executor, so the loop never waits on the network).

Theory of operation. One task (`_run`) owns automatic work: it follows the names the gate wants
(`CertificateBoard.on_wanted`), gives each new one a self-signed fallback at once, and places orders
when `schedule.decide` says so. Orders — automatic or asked for through the API — are serialized by
`_order_lock`, so at most one talks to the ACME server at a time. A success writes the pair
atomically, updates the record, publishes the `CertificateRef` (the gate swaps its SNI context) and
emits `cert.issued`; a failure only records the error and the next attempt (back-off, Retry-After)
and emits `cert.failed`: whatever was served stays served.

When the CA offers ACME Renewal Information, each pass also fetches (in the same worker thread) the
suggested window of every ACME certificate whose check is due, picks a random time inside it (kept
while the window does not change) and asks again after the answer's Retry-After; a renewal then
names the certificate it `replaces` (`certd.renewal_info`). What is served (the board, the
`cert_expiry_seconds` metric of this `MetricsSource`) is `certd.served`.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import structlog

from certd import files, pem
from certd.acme_client import Aborted, AcmeFailure, AcmeIssuer, Issued
from certd.config import CertdConfig
from certd.events import CertificateExpiring, CertificateFailed, CertificateIssued
from certd.names import name_or_error, orderable
from certd.records import CertRecord, CertRecords
from certd.renewal_info import check_renewal_info
from certd.schedule import (
    Policy,
    ari_due,
    backoff_delay,
    decide,
    may_reorder,
    next_wakeup,
    should_warn_expiring,
)
from certd.served import Served
from core.bus import EventBus
from core.clock import Clock, SystemClock
from core.errors import Conflict, InfraError, NotFound, StartupError, ValidationFailed
from core.ports import CertificateBoard, ChallengeStore, Sample
from core.store import Store
from core.tasks import TaskSet

log = structlog.get_logger("certd")


class AcmeOrderFailed(InfraError):
    """The ACME server did not issue: the peer's fault (or unreachable), not ours."""

    code = "acme_failed"
    status = 502


def policy_of(config: CertdConfig) -> Policy:
    return Policy(
        renew_share=config.renew_share,
        renew_before_s=config.renew_before_s,
        renew_jitter_s=config.renew_jitter_s,
        backoff_base_s=config.backoff_base_s,
        backoff_cap_s=config.backoff_cap_s,
        expiring_warn_s=config.expiring_warn_s,
        expiring_repeat_s=config.expiring_repeat_s,
        min_order_interval_s=config.min_order_interval_s,
        max_retry_after_s=config.max_retry_after_s,
    )


class CertdService:
    """Certificates for the gate: issue, store, renew, import, delete. Public methods are safe to call
    concurrently from the loop; they raise `InfraError`s with precise messages."""

    name = "certd"

    def __init__(
        self,
        *,
        data_dir: Path,
        directory_url: str,
        config: CertdConfig,
        store: Store,
        bus: EventBus,
        challenges: ChallengeStore,
        board: CertificateBoard,
        ca_bundle: Path | None = None,
        email: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.policy = policy_of(config)
        self.cert_dir = data_dir / "certs"
        self.directory_url = directory_url
        self.bus = bus
        self.challenges = challenges
        self.board = board
        self.clock = clock or SystemClock()
        self.records = CertRecords(store)
        self._abort = threading.Event()
        self.issuer = AcmeIssuer(
            directory_url,
            self.cert_dir / "acme",
            ca_bundle=ca_bundle,
            email=email,
            request_timeout_s=config.request_timeout_s,
            order_timeout_s=config.order_timeout_s,
            abort=self._abort,
        )
        self._executor: ThreadPoolExecutor | None = None
        self._tasks = TaskSet("certd")
        self._order_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._wanted: frozenset[str] = frozenset()
        self._wanted_known = False  # the gate has declared its names at least once
        self._loop: asyncio.AbstractEventLoop | None = None
        self.served = Served(board, self.cert_dir)

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        bundle = self.issuer.ca_bundle
        if bundle is not None and not bundle.is_file():
            raise StartupError(
                f"the ACME CA bundle {bundle} does not exist or is not a file",
                hint="fix --acme-ca-bundle / INFRACORE_ACME_CA_BUNDLE, or leave it unset for public CAs",
            )
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="certd-acme")
        await self.records.migrate()
        await self._blocking(files.ensure_dir, self.cert_dir)
        await self._blocking(files.recover, self.cert_dir)
        for rec in await self.records.all():
            await self._load_and_publish(rec)
        self.board.on_wanted(self._on_wanted)
        if self.board.wanted:
            self._on_wanted(self.board.wanted)
        self._tasks.spawn("scheduler", self._run())
        log.info("certd started", directory=self.directory_url, certs=str(self.cert_dir))

    async def stop(self, drain_timeout_s: float) -> None:
        self._abort.set()  # an order in flight gives up at its next poll
        await self._tasks.close(timeout_s=drain_timeout_s)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def _blocking(self, fn: Any, *args: Any) -> Any:
        assert self._loop is not None and self._executor is not None
        return await self._loop.run_in_executor(self._executor, fn, *args)

    async def _load_and_publish(self, rec: CertRecord) -> None:
        """At start: trust the files over the DB (a crash may have come between them), then publish."""
        if rec.source is None:
            return
        crt, key = self.served.paths(rec.name)
        try:
            info = await self._blocking(_read_info, crt)
            if not key.exists():
                raise FileNotFoundError(str(key))
        except (OSError, InfraError) as e:
            log.error("certificate files unusable", name=rec.name, cert=str(crt), error=str(e))
            await self.records.put(
                rec.with_(
                    source=None,
                    serial="",
                    not_after=None,
                    not_before=None,
                    last_error=f"certificate files unusable: {e}",
                    updated_at=self.clock.now(),
                )
            )
            return
        if info.serial != rec.serial:
            log.warning(
                "certificate files newer than the DB; taking the files",
                name=rec.name,
                db_serial=rec.serial,
                file_serial=info.serial,
            )
            rec = rec.with_(
                serial=info.serial,
                not_before=info.not_before,
                not_after=info.not_after,
                issuer=info.issuer,
                fingerprint=info.fingerprint_sha256,
                names=info.names or rec.names,
                ari_id=info.ari_id,
                updated_at=self.clock.now(),
                **rec.new_certificate(),
            )
            await self.records.put(rec)
        elif info.ari_id != rec.ari_id:  # a row from before ARI ids were kept
            rec = rec.with_(ari_id=info.ari_id)
            await self.records.update(rec.name, ari_id=info.ari_id)
        self.served.publish(rec)

    # --- the gate's wanted names -------------------------------------------------------------

    def _on_wanted(self, names: frozenset[str]) -> None:
        # Runs synchronously inside the gate's `set_wanted`: only note it and wake the scheduler.
        self._wanted = names
        self._wanted_known = True
        self._wake.set()

    async def _sync_wanted(self) -> None:
        """Give each newly wanted name a record and a fallback; stop renewing what nobody wants."""
        async with self._order_lock:  # not interleaved with an order, an import or a delete
            records = await self.records.all()
            now = self.clock.now()
            for wanted in sorted(self._wanted):
                name = orderable(wanted)
                if name is None:
                    continue
                owner = next((r for r in records if r.covers(name)), None)
                if owner is None:
                    rec = CertRecord(name=name, names=(name,), origin="wanted", created_at=now, updated_at=now)
                    await self.records.put(rec)
                    records.append(rec)
                    await self._install_fallback(rec)
                    log.info("certificate wanted", name=name)
                elif not owner.auto and owner.origin == "wanted":
                    await self.records.update(owner.name, auto=True, updated_at=now)
            if self._wanted_known:
                for rec in records:
                    if rec.origin == "wanted" and rec.auto and not any(rec.covers(n) for n in self._wanted):
                        await self.records.update(rec.name, auto=False, updated_at=now)
                        log.info("certificate no longer wanted: not renewing it", name=rec.name)

    # --- the scheduler -----------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                delay = await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # one bad record or DB hiccup must not end renewals for good
                log.error("certificate scheduler pass failed", error=repr(e), exc_info=e)
                delay = self.policy.backoff_base_s
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)

    async def _tick(self) -> float:
        """One pass: sync wanted names, warn, order what is due. Returns seconds until the next pass."""
        await self._sync_wanted()
        now = self.clock.now()
        decisions = []
        checks: list[float] = []
        for rec in await self.records.all():
            if not self.config.ari and (
                rec.ari_renew_at is not None or rec.ari_window_start is not None or rec.ari_next_check_at is not None
            ):
                # windows noted while ARI was on must not keep deciding: the share of the lifetime does
                forget = rec.new_certificate()
                await self.records.update(rec.name, **forget)
                rec = rec.with_(**forget)
                log.info("renewal information forgotten: ari is off", name=rec.name)
            if self.config.ari and ari_due(rec.state(), rec.ari_id, rec.ari_next_check_at, now):
                rec = await check_renewal_info(
                    rec,
                    fetch=functools.partial(self._blocking, self.issuer.renewal_info),
                    records=self.records,
                    clock=self.clock,
                    policy=self.policy,
                )
            if self.config.ari and ari_due(rec.state(), rec.ari_id, None, now) and rec.ari_next_check_at is not None:
                checks.append(rec.ari_next_check_at)
            state = rec.state()
            if should_warn_expiring(state, now, self.policy):
                await self._warn_expiring(rec, now)
            decision = decide(rec.name, state, now, self.policy)
            if decision.action == "order":
                await self._attempt(rec.name, forced=False)
                return 0.0  # look again at once: the records changed
            decisions.append(decision)
        return next_wakeup(decisions, now, also=checks)

    async def _warn_expiring(self, rec: CertRecord, now: float) -> None:
        assert rec.not_after is not None
        await self.records.update(rec.name, last_warned_at=now, updated_at=now)
        days = round((rec.not_after - now) / 86400, 1)
        log.warning("certificate expiring", name=rec.name, days_left=days, last_error=rec.last_error)
        await self.bus.publish(
            CertificateExpiring(rec.name, list(rec.names), rec.not_after, days, rec.source or "", rec.last_error)
        )

    # --- orders ------------------------------------------------------------------------------

    async def _attempt(self, name: str, *, forced: bool) -> CertRecord:
        """Place one order for record `name` (serialized with every other order). Returns the updated
        record; raises AcmeOrderFailed when `forced` and the order failed."""
        async with self._order_lock:
            rec = await self.records.get(name)
            if rec is None:
                raise NotFound(f"no certificate named {name}", hint="see `fsctl cert ls`")
            now = self.clock.now()
            if not forced and decide(name, rec.state(), now, self.policy).action != "order":
                return rec  # someone else's order made this one unnecessary
            rec = rec.with_(last_attempt_at=now, updated_at=now)
            await self.records.put(rec)
            log.info(
                "ordering certificate",
                name=name,
                names=list(rec.names),
                renewal=rec.source == "acme",
                directory=self.directory_url,
            )
            try:
                replaces = rec.ari_id if self.config.ari and rec.source == "acme" else ""
                issued: Issued = await self._blocking(
                    self.issuer.issue, list(rec.names), self._put_token, self._remove_token, replaces
                )
                info = pem.read_info(issued.fullchain_pem)
                await self._write_pair(name, issued.fullchain_pem, issued.key_pem)
            except AcmeFailure as e:
                return await self._failed(rec, e, forced=forced)
            except (Aborted, asyncio.CancelledError):
                raise
            except Exception as e:  # a bug or a library surprise: recorded and backed off like any failure
                log.error("certificate order crashed", name=name, error=repr(e), exc_info=e)
                return await self._failed(rec, AcmeFailure(f"internal error while ordering: {e!r}"), forced=forced)
            renewal = rec.source in ("acme", "imported")
            now = self.clock.now()
            rec = rec.with_(
                source="acme",
                serial=info.serial,
                not_before=info.not_before,
                not_after=info.not_after,
                issuer=info.issuer,
                fingerprint=info.fingerprint_sha256,
                failures=0,
                last_error=None,
                next_attempt_at=None,
                last_issued_at=now,
                last_warned_at=None,
                updated_at=now,
                ari_id=info.ari_id,
                **rec.new_certificate(),
            )
            await self.records.put(rec)
            self.served.publish(rec)
            log.info(
                "certificate issued",
                name=name,
                serial=info.serial,
                not_after=info.not_after,
                issuer=info.issuer,
                renewal=renewal,
            )
            await self.bus.publish(
                CertificateIssued(name, list(rec.names), info.serial, info.not_after, info.issuer, "acme", renewal)
            )
            return rec

    async def _failed(self, rec: CertRecord, e: AcmeFailure, *, forced: bool) -> CertRecord:
        now = self.clock.now()
        failures = rec.failures + 1
        delay = backoff_delay(failures, self.policy, e.retry_after_s)
        rec = rec.with_(failures=failures, last_error=e.message, next_attempt_at=now + delay, updated_at=now)
        await self.records.put(rec)
        if rec.source is None or (rec.source == "self-signed" and (rec.not_after or 0) < now + 86400):
            await self._install_fallback(rec)  # nothing served yet, or the fallback itself is running out
            rec = await self.records.get(rec.name) or rec
        if rec.source in ("acme", "imported") and rec.not_after and rec.not_after > now:
            serving = f"previous certificate (serial {rec.serial}) until its expiry"
        elif rec.source == "self-signed":
            serving = "self-signed fallback"
        else:
            serving = "expired certificate"
        log.warning(
            "certificate order failed",
            name=rec.name,
            error=e.message,
            failures=failures,
            retry_in_s=round(delay, 1),
            retry_after_s=e.retry_after_s,
            serving=serving,
        )
        await self.bus.publish(
            CertificateFailed(rec.name, list(rec.names), e.message, failures, now + delay, round(delay, 3), serving)
        )
        if forced:
            raise AcmeOrderFailed(
                f"the ACME server did not issue a certificate for {', '.join(rec.names)}: {e.message}",
                hint=f"still serving the {serving}; certd retries on its own in {round(delay)}s",
                details={
                    "name": rec.name,
                    "retry_at": now + delay,
                    "serving": serving,
                    **({"retry_after_s": e.retry_after_s} if e.retry_after_s else {}),
                },
            )
        return rec

    def _put_token(self, token: str, key_authorization: str) -> None:
        # Called from the ACME thread: hand it to the loop and wait, so the token is being served
        # before the thread tells the ACME server to look for it.
        if self._abort.is_set() or self._loop is None or self._loop.is_closed():
            raise Aborted()
        asyncio.run_coroutine_threadsafe(_call(self.challenges.put, token, key_authorization), self._loop).result(30)

    def _remove_token(self, token: str) -> None:
        # Called from the ACME thread. When stopping, the loop may no longer run callbacks: a dict pop
        # from this thread is then the safe choice (nothing on the loop reads it any more).
        if self._abort.is_set() or self._loop is None or self._loop.is_closed():
            self.challenges.remove(token)
            return
        try:
            asyncio.run_coroutine_threadsafe(_call(self.challenges.remove, token), self._loop).result(5)
        except (TimeoutError, RuntimeError):
            self.challenges.remove(token)

    async def _install_fallback(self, rec: CertRecord) -> None:
        """Serve a self-signed certificate for a record that has nothing yet."""
        now = self.clock.now()
        cert_pem, key_pem = pem.self_signed(list(rec.names), now)
        info = pem.read_info(cert_pem)
        await self._write_pair(rec.name, cert_pem, key_pem)
        rec = rec.with_(
            source="self-signed",
            serial=info.serial,
            not_before=info.not_before,
            not_after=info.not_after,
            issuer=info.issuer,
            fingerprint=info.fingerprint_sha256,
            updated_at=now,
            ari_id="",
            **rec.new_certificate(),
        )
        await self.records.put(rec)
        self.served.publish(rec)
        log.info("serving a self-signed fallback", name=rec.name)

    async def _write_pair(self, name: str, cert_pem: bytes, key_pem: bytes) -> None:
        """Durable new files off the loop; the swap itself on the loop (see `files.swap_pair`)."""
        stem = pem.file_stem(name)
        await self._blocking(files.stage_pair, self.cert_dir, stem, cert_pem, key_pem)
        files.swap_pair(self.cert_dir, stem)
        await self._blocking(files.sync_dir, self.cert_dir)

    # --- the public surface (console API, CLI) -----------------------------------------------

    def _view(self, rec: CertRecord) -> dict[str, Any]:
        now = self.clock.now()
        out = rec.to_api(now, self.policy.expiring_warn_s)
        crt, key = self.served.paths(rec.name)
        plan = decide(rec.name, rec.state(), now, self.policy)
        out.update(
            cert_path=str(crt), key_path=str(key), wanted=any(rec.covers(n) for n in self._wanted), renew_at=plan.at
        )
        return out

    # --- metrics (core.ports.MetricsSource) ---------------------------------------------------

    def samples(self) -> list[Sample]:
        """`cert_expiry_seconds{name}` (see `Served.samples`)."""
        return self.served.samples(self.clock.now())

    async def list(self) -> list[dict[str, Any]]:
        return [self._view(r) for r in await self.records.all()]

    async def get(self, name: str) -> dict[str, Any]:
        return self._view(await self._existing(name))

    async def _existing(self, name: str) -> CertRecord:
        key = name_or_error(name, "name")
        rec = await self.records.get(key)
        if rec is None:
            raise NotFound(f"no certificate named {key}", hint="see `fsctl cert ls`", details={"name": key})
        return rec

    async def issue(self, name: str, also: builtins.list[str] | None = None) -> dict[str, Any]:
        """Order now a certificate for `name` (+ `also` as more SANs). Refuses (409) when `name` already
        has a valid certificate for the same names with more than its renewal window left."""
        key = name_or_error(name, "name")
        names = tuple(dict.fromkeys([key, *(name_or_error(n, "also") for n in also or [])]))
        if any(n.startswith("*.") for n in names):
            raise ValidationFailed(
                "wildcard names need the DNS-01 challenge, which certd does not do (HTTP-01 only)",
                hint="import a wildcard certificate with `fsctl cert import` instead",
                details={"field": "name"},
            )
        now = self.clock.now()
        rec = await self.records.get(key)
        if rec is not None and rec.source == "imported":
            raise Conflict(
                f"{key} has an imported certificate",
                hint=f"remove it first: fsctl cert rm {key}",
                details={"name": key},
            )
        if (
            rec is not None
            and rec.source == "acme"
            and set(rec.names) == set(names)
            and not may_reorder(rec.not_before, rec.not_after, now, self.policy)
        ):
            days = round(((rec.not_after or now) - now) / 86400, 1)
            raise Conflict(
                f"{key} already has a valid certificate with {days} days left; ordering another now would only "
                "spend the CA's rate limit",
                hint=f"to replace it anyway: fsctl cert renew {key}",
                details={"name": key, "days_left": days},
            )
        if rec is None:
            rec = CertRecord(name=key, names=names, origin="api", created_at=now, updated_at=now)
        else:
            rec = rec.with_(names=names, auto=True, updated_at=now)
        await self.records.put(rec)
        return self._view(await self._attempt(key, forced=True))

    async def renew(self, name: str) -> dict[str, Any]:
        """Order a replacement now, whatever the schedule says (the served cert stays on failure)."""
        rec = await self._existing(name)
        if rec.source == "imported":
            raise Conflict(
                f"{rec.name} has an imported certificate: certd cannot renew it",
                hint="import the renewed pair with `fsctl cert import`",
                details={"name": rec.name},
            )
        return self._view(await self._attempt(rec.name, forced=True))

    async def import_pair(self, cert_pem: str, key_pem: str) -> dict[str, Any]:
        """Validate and install a user's certificate (full chain) and key; it serves its names at once."""
        now = self.clock.now()
        info = pem.validate_pair(cert_pem.encode(), key_pem.encode(), now)
        key = pem.normalize_name(info.names[0])
        async with self._order_lock:  # not while an order for the same name is writing the files
            old = await self.records.get(key)
            await self._write_pair(key, cert_pem.encode(), key_pem.encode())
            rec = CertRecord(
                name=key,
                names=info.names,
                origin="import",
                created_at=old.created_at if old else now,
                updated_at=now,
                source="imported",
                auto=False,
                serial=info.serial,
                not_before=info.not_before,
                not_after=info.not_after,
                issuer=info.issuer,
                fingerprint=info.fingerprint_sha256,
                last_issued_at=now,
                ari_id=info.ari_id,
            )
            await self.records.put(rec)
            self.served.publish(rec)
        log.info("certificate imported", name=key, names=list(info.names), serial=info.serial, issuer=info.issuer)
        await self.bus.publish(
            CertificateIssued(
                key,
                list(info.names),
                info.serial,
                info.not_after,
                info.issuer,
                "imported",
                old is not None and old.source != "self-signed",
            )
        )
        return self._view(rec)

    async def delete(self, name: str) -> dict[str, Any]:
        """Stop serving and forget a certificate (its files too). A name a route still wants gets a
        fallback and a new order on the scheduler's next pass."""
        async with self._order_lock:
            rec = await self._existing(name)
            before = self._view(rec)
            self.served.withdraw(rec)
            await self.records.delete(rec.name)
            files.remove_pair(self.cert_dir, pem.file_stem(rec.name))  # on the loop: readers see both or none
        log.info("certificate removed", name=rec.name)
        self._wake.set()
        return before

    def wake(self) -> None:
        """Make the scheduler look at every record now (tests, config reloads)."""
        self._wake.set()


async def _call(fn: Any, *args: Any) -> None:
    fn(*args)


def _read_info(path: Path) -> pem.CertInfo:
    return pem.read_info(path.read_bytes())
