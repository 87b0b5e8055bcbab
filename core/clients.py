"""Client credentials for CI and packagers: `client_id` + `client_secret` (shown once, stored as a bcrypt
hash) exchanged for a short-lived bearer token scoped to a list of services and an IP allow-list.

Theory of operation. An admin creates a client `{name, services, ip_allowlist}`. `exchange()` checks the
secret off the loop (the identity's worker pool, as for passwords), throttled per client id and per
address like logins, then refuses addresses outside the allow-list, and issues a token (`icc_…`, only
its SHA-256 stored) that lives `token_ttl_s` (15 min by default). `authenticate()` turns such a token
into a scoped `Principal`: it has no role, so every route refuses it unless the route declares that it
accepts client tokens, and then only for the client's services, from its allowed networks (checked by
the console on every request, not only at the exchange). Revoking a client ends its tokens at once.
"""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
from typing import Any

import structlog

from core.bus import EventBus
from core.clock import Clock, SystemClock
from core.errors import BadRequest, Conflict, Forbidden, NotFound, Throttled, Unauthorized
from core.events import ClientCreated, ClientRevoked
from core.identity import LoginThrottle, Principal, SecretHasher, hash_token
from core.store import Migration, Store
from core.workers import WorkerPool

log = structlog.get_logger("core.clients")


CLIENT_TOKEN_PREFIX = "icc_"
CLIENT_ID_PREFIX = "cid_"
SECRET_PREFIX = "ics_"
_SERVICE_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")  # orch's service names
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

MIGRATIONS = [
    Migration(
        1,
        "client credentials and their tokens",
        """
CREATE TABLE clients (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    secret_hash TEXT NOT NULL,
    services TEXT NOT NULL,        -- JSON list of service names
    ip_allowlist TEXT NOT NULL,    -- JSON list of CIDRs
    created_at REAL NOT NULL,
    created_by TEXT,
    revoked_at REAL,
    last_used_at REAL
);
CREATE TABLE client_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    client_ref INTEGER NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    client_ip TEXT
);
CREATE INDEX client_tokens_client ON client_tokens(client_ref);
""",
    ),
]


def parse_allowlist(entries: list[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """CIDRs (or bare addresses) → networks; a bad entry is a 400 naming it."""
    out = []
    for i, e in enumerate(entries):
        try:
            out.append(ipaddress.ip_network(str(e).strip(), strict=False))
        except ValueError:
            raise BadRequest(
                f"ip_allowlist[{i}]: {e!r} is not an IP address or CIDR",
                hint="e.g. 203.0.113.7, 10.0.0.0/8 or 2001:db8::/32",
                details={"field": f"ip_allowlist.{i}"},
            ) from None
    return tuple(out)


class ClientRegistry:
    """Client credentials in the state store. Safe for concurrent use by tasks of one loop."""

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        *,
        clock: Clock | None = None,
        workers: WorkerPool | None = None,
        hash_rounds: int = 12,
        token_ttl_s: float = 900.0,
    ) -> None:
        self._store = store
        self._bus = bus
        self._clock = clock or SystemClock()
        self._secrets = SecretHasher(workers, hash_rounds)  # bcrypt never on the loop, as for passwords
        self.token_ttl_s = token_ttl_s
        self.client_throttle = LoginThrottle(limit=5)
        self.ip_throttle = LoginThrottle(limit=20)

    # --- component (only its tables to create) ----------------------------------------------------

    name = "clients"

    async def start(self) -> None:
        await self._store.migrate("clients", MIGRATIONS)

    async def stop(self, drain_timeout_s: float) -> None:
        pass

    # --- administration -------------------------------------------------------------------------

    async def create(
        self, name: str, services: list[str], ip_allowlist: list[str], actor: str | None = None
    ) -> tuple[str, dict[str, Any]]:
        """A new client; returns its secret (here only, never again) and its record."""
        if not _NAME_RE.match(name):
            raise BadRequest(f"invalid client name {name!r}: 1-64 letters, digits and . _ -", details={"field": "name"})
        if not services:
            raise BadRequest("a client needs at least one service it may deploy", details={"field": "services"})
        for i, svc in enumerate(services):
            if not _SERVICE_RE.match(svc):
                raise BadRequest(f"services[{i}]: {svc!r} is not a service name", details={"field": f"services.{i}"})
        if not ip_allowlist:
            raise BadRequest(
                "a client needs an IP allow-list",
                details={"field": "ip_allowlist"},
                hint="name the CI runners' addresses; 0.0.0.0/0 and ::/0 allow any address",
            )
        networks = parse_allowlist(ip_allowlist)
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        client_id = CLIENT_ID_PREFIX + secrets.token_hex(8)
        hashed = await self._secrets.hash(secret)
        async with self._store.transaction() as db:
            cur = await db.execute("SELECT 1 FROM clients WHERE name = ?", (name,))
            if await cur.fetchone():
                raise Conflict(
                    f"a client named {name!r} already exists", hint="remove it first, or choose another name"
                )
            await db.execute(
                "INSERT INTO clients (client_id, name, secret_hash, services, ip_allowlist, created_at, created_by) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    client_id,
                    name,
                    hashed,
                    json.dumps(sorted(set(services))),
                    json.dumps([str(n) for n in networks]),
                    self._clock.now(),
                    actor,
                ),
            )
        record = await self.get(client_id)
        await self._bus.publish(ClientCreated(client_id, name, record["services"]))
        log.info("client created", client_id=client_id, name=name, services=record["services"])
        return secret, record

    async def list(self) -> list[dict[str, Any]]:
        rows = await self._store.fetchall("SELECT * FROM clients ORDER BY id")
        return [self._record(r) for r in rows]

    async def get(self, client_id: str) -> dict[str, Any]:
        row = await self._store.fetchone("SELECT * FROM clients WHERE client_id = ?", (client_id,))
        if row is None:
            raise NotFound(f"no client with id {client_id!r}", hint="see `fsctl client list`")
        return self._record(row)

    @staticmethod
    def _record(r: Any) -> dict[str, Any]:
        return {
            "client_id": r["client_id"],
            "name": r["name"],
            "services": json.loads(r["services"]),
            "ip_allowlist": json.loads(r["ip_allowlist"]),
            "created_at": r["created_at"],
            "created_by": r["created_by"],
            "revoked_at": r["revoked_at"],
            "last_used_at": r["last_used_at"],
            "state": "revoked" if r["revoked_at"] else "active",
        }

    async def revoke(self, client_id: str) -> dict[str, Any]:
        """Revoke a client and every token it holds (they stop working at once)."""
        before = await self.get(client_id)
        now = self._clock.now()
        async with self._store.transaction() as db:
            await db.execute(
                "UPDATE clients SET revoked_at = ? WHERE client_id = ? AND revoked_at IS NULL", (now, client_id)
            )
            await db.execute(
                "DELETE FROM client_tokens WHERE client_ref = (SELECT id FROM clients WHERE client_id = ?)",
                (client_id,),
            )
        await self._bus.publish(ClientRevoked(client_id, before["name"]))
        return before

    # --- tokens ---------------------------------------------------------------------------------

    async def exchange(self, client_id: str, secret: str, client_ip: str) -> tuple[str, float, Principal]:
        """A short-lived token for a client's id and secret, asked from `client_ip`. Wrong secrets are
        throttled per client and per address (`Throttled` with Retry-After); an address outside the
        client's allow-list is `Forbidden` (code `client_ip_refused`) even with the right secret."""
        now = self._clock.monotonic()
        ckey, ikey = f"client:{client_id}", f"ip:{client_ip}"
        wait = max(self.client_throttle.retry_after(ckey, now), self.ip_throttle.retry_after(ikey, now))
        if wait > 0:
            raise Throttled(f"too many failed client logins; try again in {int(wait) + 1} s", retry_after_s=wait)
        row = await self._store.fetchone("SELECT * FROM clients WHERE client_id = ?", (client_id,))
        hashed = row["secret_hash"] if row else await self._secrets.dummy()
        ok = await self._secrets.check(secret, hashed)
        if not ok or row is None or row["revoked_at"] is not None:
            self.client_throttle.failed(ckey, now)
            self.ip_throttle.failed(ikey, now)
            log.warning("client authentication failed", client_id=client_id, client_ip=client_ip)
            raise Unauthorized("wrong client id or secret", code="client_auth_failed")
        self.client_throttle.succeeded(ckey)
        principal = self._principal(row, None)
        if not principal.allows_address(client_ip):
            log.warning("client refused: address not allowed", client_id=client_id, client_ip=client_ip)
            raise address_refused(principal, client_ip)
        token = CLIENT_TOKEN_PREFIX + secrets.token_urlsafe(32)
        issued = self._clock.now()
        expires_at = issued + self.token_ttl_s
        async with self._store.transaction() as db:
            # Expired tokens of this client go as new ones come: the table stays small without a sweeper.
            await db.execute("DELETE FROM client_tokens WHERE client_ref = ? AND expires_at <= ?", (row["id"], issued))
            cur = await db.execute(
                "INSERT INTO client_tokens (client_ref, token_hash, created_at, expires_at, client_ip) "
                "VALUES (?, ?, ?, ?, ?)",
                (row["id"], hash_token(token), issued, expires_at, client_ip),
            )
            await db.execute("UPDATE clients SET last_used_at = ? WHERE id = ?", (issued, row["id"]))
            token_id = int(cur.lastrowid or 0)
        log.info("client token issued", client_id=client_id, client_ip=client_ip, expires_at=expires_at)
        return token, expires_at, self._principal(row, token_id)

    async def authenticate(self, token: str) -> Principal:
        """The scoped principal of a client token, or `Unauthorized` (unknown, expired, client revoked)."""
        row = await self._store.fetchone(
            "SELECT c.*, t.id AS token_id, t.expires_at FROM client_tokens t JOIN clients c ON c.id = t.client_ref "
            "WHERE t.token_hash = ?",
            (hash_token(token),),
        )
        if row is None or row["revoked_at"] is not None:
            raise Unauthorized("the client token is not valid", hint="exchange the client's credentials again")
        if row["expires_at"] <= self._clock.now():
            raise Unauthorized(
                "the client token has expired",
                code="token_expired",
                hint="exchange the client's credentials again (POST /api/auth/client-token)",
            )
        return self._principal(row, row["token_id"])

    @staticmethod
    def _principal(row: Any, token_id: int | None) -> Principal:
        networks = tuple(ipaddress.ip_network(n) for n in json.loads(row["ip_allowlist"]))
        return Principal(
            f"client:{row['name']}",
            "viewer",
            "client",
            None,
            token_id,
            services=frozenset(json.loads(row["services"])),
            networks=networks,
        )


def address_refused(principal: Principal, client_ip: str) -> Forbidden:
    return Forbidden(
        f"{principal.username} may not be used from {client_ip}",
        code="client_ip_refused",
        hint="add the address to the client's ip_allowlist (an admin: `fsctl client add`)",
        details={"client_ip": client_ip},
    )


def service_refused(principal: Principal, service: str) -> Forbidden:
    return Forbidden(
        f"{principal.username} may not act on service {service!r}",
        code="client_scope",
        details={"service": service, "allowed": sorted(principal.services or ())},
    )
