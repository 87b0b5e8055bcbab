"""Users, roles, sessions and API tokens, and login throttling.

Passwords are stored as bcrypt hashes (of a SHA-256 pre-hash, so passwords longer than bcrypt's 72
bytes are not silently truncated). Tokens are random strings shown once; only their SHA-256 is stored.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import bcrypt
import pyotp
import structlog

from core import recovery
from core.bus import EventBus
from core.clock import Clock, SystemClock
from core.errors import BadRequest, Conflict, Forbidden, NotFound, Throttled, Unauthorized
from core.events import RecoveryCodeUsed, TokenCreated, TokenRevoked, UserCreated, UserRemoved, UserUpdated
from core.store import Store
from core.workers import WorkerPool

log = structlog.get_logger("core.identity")

T = TypeVar("T")

Role = Literal["admin", "viewer"]
ROLES: tuple[Role, ...] = ("viewer", "admin")  # in order of power
TOKEN_PREFIX = "ic_"
INITIAL_ADMIN = "admin"
MIN_PASSWORD_LEN = 8


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user through a session or API token, the local root over the Unix socket, or
    a CI client (`via="client"`, core/clients.py) whose token is scoped to `services`.

    A scoped principal has no role at all (`has_role` is always False): it may call only the routes
    that declare they accept client tokens, for its own services, from its allowed networks."""

    username: str
    role: Role
    via: Literal["session", "api", "socket", "client"]
    user_id: int | None = None
    token_id: int | None = None
    services: frozenset[str] | None = None  # None: not scoped (a user); else the services a client may touch
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()  # a client's allowed addresses

    @property
    def scoped(self) -> bool:
        return self.services is not None

    def has_role(self, needed: Role) -> bool:
        if self.services is not None:
            return False
        return ROLES.index(self.role) >= ROLES.index(needed)

    def may_use_service(self, service: str) -> bool:
        return self.services is None or service in self.services

    def allows_address(self, client_ip: str) -> bool:
        """For a client: is `client_ip` inside its allow-list (an unknown or non-IP address is not)."""
        if self.services is None:
            return True
        try:
            ip = ipaddress.ip_address(client_ip)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == net.version and ip in net for net in self.networks)


@dataclass
class LoginThrottle:
    """Failed-login accounting per key (`user:NAME`, `ip:ADDR`). Pure: the caller passes `now`.

    After `limit` failures within `window_s`, the key is locked for `lock_s`, doubling with each further
    failure up to `max_lock_s`. Failures age out of the window; `succeeded` clears a key, which the
    caller does only for a user's own key (proving that user's password) — never for a client IP, or one
    account's good password would reset the counter that limits spraying at every other account.
    """

    limit: int = 5
    window_s: float = 900.0
    lock_s: float = 30.0
    max_lock_s: float = 900.0
    _failures: dict[str, list[float]] = field(default_factory=dict)

    def retry_after(self, key: str, now: float) -> float:
        recent = [t for t in self._failures.get(key, ()) if now - t < self.window_s]
        if recent:
            self._failures[key] = recent
        else:
            self._failures.pop(key, None)
        if len(recent) < self.limit:
            return 0.0
        lock = min(self.max_lock_s, self.lock_s * 2 ** (len(recent) - self.limit))
        return max(0.0, recent[-1] + lock - now)

    def failed(self, key: str, now: float) -> None:
        self._failures.setdefault(key, []).append(now)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _prehash(password: str) -> bytes:
    return base64.b64encode(hashlib.sha256(password.encode()).digest())


def hash_password(password: str, rounds: int = 12) -> str:
    return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(rounds)).decode()


def check_password(password: str, hashed: str) -> bool:
    try:
        return bcrypt.checkpw(_prehash(password), hashed.encode())
    except ValueError:
        return False


TOTP_ISSUER = "Infra-Core"
TOTP_PERIOD_S = 30


def totp_step(secret: str, code: str, now: float, window: int = 1) -> int | None:
    """The time step (RFC 6238, 30 s) within ±`window` steps of `now` whose code is `code`, or None."""
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    for k in (0, -1, 1) if window else (0,):
        t = now + k * TOTP_PERIOD_S
        if secrets.compare_digest(totp.at(t), code):
            return int(t // TOTP_PERIOD_S)
    return None


def validate_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LEN:
        raise BadRequest(
            f"the password is too short: at least {MIN_PASSWORD_LEN} characters are needed",
            details={"field": "password"},
        )


def validate_username(username: str) -> None:
    if not (1 <= len(username) <= 64) or not all(c.isalnum() or c in "._-@" for c in username):
        raise BadRequest(
            f"invalid username {username!r}: use 1-64 letters, digits and . _ - @",
            details={"field": "username"},
        )


class SecretHasher:
    """bcrypt off the loop, for passwords and client secrets alike: in the composition root's bounded
    pool (PoolBusy → 503 when full), or without one (tests, tools) the loop's default executor; and a
    hash to check against when the user or client does not exist, so timing does not reveal that (made
    on first need, in a worker: at 12 rounds it costs a quarter second)."""

    def __init__(self, workers: WorkerPool | None, rounds: int) -> None:
        self.workers = workers
        self.rounds = rounds
        self.dummy_hash: str | None = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self.workers is not None:
            return await self.workers.run(fn, *args)
        return await asyncio.to_thread(fn, *args)

    async def hash(self, secret: str) -> str:
        return await self.run(hash_password, secret, self.rounds)

    async def check(self, secret: str, hashed: str) -> bool:
        return await self.run(check_password, secret, hashed)

    async def dummy(self) -> str:
        if self.dummy_hash is None:
            self.dummy_hash = await self.hash(secrets.token_urlsafe(16))
        return self.dummy_hash


class Identity:
    """Users and tokens in the state store. Safe for concurrent use by tasks of one loop."""

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        *,
        clock: Clock | None = None,
        session_ttl_s: int = 12 * 3600,
        hash_rounds: int = 12,
        workers: WorkerPool | None = None,
    ) -> None:
        self._store = store
        self._bus = bus
        self._clock = clock or SystemClock()
        self.session_ttl_s = session_ttl_s
        self.user_throttle = LoginThrottle(limit=5)
        self.ip_throttle = LoginThrottle(limit=20)
        self._secrets = SecretHasher(workers, hash_rounds)  # bcrypt never on the loop

    # --- first run -----------------------------------------------------------------------------

    async def ensure_initial_admin(self, data_dir: Path) -> str | None:
        """On a store with no users, create `admin` with a random password; return it (else None).

        The password is also written to `<data_dir>/initial-admin-password` with mode 0600.
        """
        row = await self._store.fetchone("SELECT COUNT(*) FROM users")
        if row and row[0]:
            return None
        password = secrets.token_urlsafe(18)
        await self._insert_user(INITIAL_ADMIN, password, "admin")
        path = data_dir / "initial-admin-password"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        os.chmod(path, 0o600)
        log.info("created initial admin user", username=INITIAL_ADMIN, password_file=str(path))
        return password

    # --- users ---------------------------------------------------------------------------------

    async def _insert_user(self, username: str, password: str, role: Role) -> dict[str, Any]:
        validate_username(username)
        validate_password(password)
        hashed = await self._secrets.hash(password)
        now = self._clock.now()
        async with self._store.transaction() as db:
            cur = await db.execute("SELECT 1 FROM users WHERE username = ?", (username,))
            if await cur.fetchone():
                raise Conflict(f"user {username!r} already exists", hint="choose another name or use passwd")
            cur = await db.execute(
                "INSERT INTO users (username, password_hash, role, created_at, password_changed_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (username, hashed, role, now, now),
            )
            user = {"id": cur.lastrowid, "username": username, "role": role, "created_at": now}
        await self._bus.publish(UserCreated(username, role))
        return user

    async def add_user(self, username: str, password: str, role: Role) -> dict[str, Any]:
        return await self._insert_user(username, password, role)

    async def list_users(self) -> list[dict[str, Any]]:
        rows = await self._store.fetchall(
            "SELECT id, username, role, disabled, created_at, password_changed_at, "
            "totp_secret IS NOT NULL AS totp, (SELECT COUNT(*) FROM recovery_codes c "
            "WHERE c.user_id = users.id AND c.used_at IS NULL) AS codes_left FROM users ORDER BY id"
        )
        return [
            {
                **{k: r[k] for k in ("id", "username", "role", "created_at", "password_changed_at")},
                "disabled": bool(r["disabled"]),
                "totp": bool(r["totp"]),
                "recovery_codes_left": int(r["codes_left"]) if r["totp"] else 0,
            }
            for r in rows
        ]

    async def get_user(self, username: str) -> dict[str, Any]:
        for user in await self.list_users():
            if user["username"] == username:
                return user
        raise NotFound(f"no user named {username!r}", hint="see `fsctl user ls`")

    async def set_password(self, caller: Principal, username: str, password: str) -> None:
        """Admins may set anyone's password; others only their own. Ends the user's sessions."""
        self._self_or_admin(caller, username, "change the password")
        validate_password(password)
        user = await self.get_user(username)
        hashed = await self._secrets.hash(password)
        now = self._clock.now()
        async with self._store.transaction() as db:
            await db.execute(
                "UPDATE users SET password_hash = ?, password_changed_at = ? WHERE id = ?",
                (hashed, now, user["id"]),
            )
            await db.execute(
                "UPDATE tokens SET revoked_at = ? WHERE user_id = ? AND kind = 'session' AND revoked_at IS NULL",
                (now, user["id"]),
            )
        await self._bus.publish(UserUpdated(username, "password"))

    async def remove_user(self, caller: Principal, username: str) -> dict[str, Any]:
        user = await self.get_user(username)
        if caller.username == username:
            raise BadRequest("you cannot remove yourself", hint="log in as another admin to do this")
        async with self._store.transaction() as db:
            if user["role"] == "admin":
                cur = await db.execute("SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0")
                row = await cur.fetchone()
                if row and row[0] <= 1:
                    raise Conflict("cannot remove the last admin")
            await db.execute("DELETE FROM users WHERE id = ?", (user["id"],))
        await self._bus.publish(UserRemoved(username))
        return user

    # --- sessions and tokens -------------------------------------------------------------------

    async def login(
        self, username: str, password: str, client_ip: str, otp: str | None = None
    ) -> tuple[str, float, Principal]:
        """Check a password (and the TOTP code when the user has 2FA on); on success a new session
        token, its expiry and the principal. A missing code is `Unauthorized` with code `otp_required`."""
        now = self._clock.monotonic()
        ukey, ikey = f"user:{username}", f"ip:{client_ip}"
        wait = max(self.user_throttle.retry_after(ukey, now), self.ip_throttle.retry_after(ikey, now))
        if wait > 0:
            raise Throttled(f"too many failed logins; try again in {int(wait) + 1} s", retry_after_s=wait)
        row = await self._store.fetchone(
            "SELECT id, username, password_hash, role, disabled, totp_secret, totp_last_step "
            "FROM users WHERE username = ?",
            (username,),
        )
        hashed = row["password_hash"] if row else await self._secrets.dummy()
        ok = await self._secrets.check(password, hashed)
        if not ok or row is None or row["disabled"]:
            self._failed(ukey, ikey)
            raise Unauthorized("wrong username or password")
        if row["totp_secret"]:
            if not otp:
                # Not a failure: the client asks again with the code.
                raise Unauthorized(
                    "a two-factor code is required",
                    code="otp_required",
                    hint="send the 6-digit code from your authenticator app (or a recovery code) as `otp`",
                )
            if recovery.looks_like_code(otp):
                if not await self._use_recovery_code(row["id"], row["username"], otp):
                    self._failed(ukey, ikey)
                    raise Unauthorized("wrong or already used recovery code", code="otp_invalid")
            else:
                step = totp_step(row["totp_secret"], otp, self._clock.now())
                if step is None or step <= row["totp_last_step"]:
                    self._failed(ukey, ikey)
                    raise Unauthorized("wrong or already used two-factor code", code="otp_invalid")
                await self._store.execute("UPDATE users SET totp_last_step = ? WHERE id = ?", (step, row["id"]))
        self.user_throttle.succeeded(ukey)  # the per-IP failures age out: see LoginThrottle
        principal = Principal(row["username"], row["role"], "session", user_id=row["id"])
        token, expires_at, token_id = await self._issue(principal, "session", "login", row["role"], self.session_ttl_s)
        return token, expires_at, Principal(row["username"], row["role"], "session", row["id"], token_id)

    def _failed(self, ukey: str, ikey: str) -> None:
        now = self._clock.monotonic()
        self.user_throttle.failed(ukey, now)
        self.ip_throttle.failed(ikey, now)

    # --- two-factor (TOTP, RFC 6238) -----------------------------------------------------------

    async def totp_begin(self, caller: Principal, username: str) -> dict[str, str]:
        """Start enrolment: a new secret, pending until `totp_confirm` proves the app has it."""
        self._self_or_admin(caller, username, "set up two-factor login")
        user = await self.get_user(username)
        secret = pyotp.random_base32()
        await self._store.execute("UPDATE users SET totp_pending = ? WHERE id = ?", (secret, user["id"]))
        uri = pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=TOTP_ISSUER)
        return {"secret": secret, "otpauth_uri": uri}

    async def _use_recovery_code(self, user_id: int, username: str, code: str) -> bool:
        """Spend one of the user's unused recovery codes matching `code`; False when none does."""
        rows = await self._store.fetchall(
            "SELECT id, code_hash FROM recovery_codes WHERE user_id = ? AND used_at IS NULL", (user_id,)
        )
        found = next((r["id"] for r in rows if recovery.matches(code, r["code_hash"])), None)
        if found is None:
            return False
        async with self._store.transaction() as db:
            # The `used_at IS NULL` guard makes two concurrent logins with one code spend it once.
            cur = await db.execute(
                "UPDATE recovery_codes SET used_at = ? WHERE id = ? AND used_at IS NULL", (self._clock.now(), found)
            )
            spent = cur.rowcount == 1
        if spent:
            left = sum(1 for r in rows if r["id"] != found)
            log.info("recovery code used for login", username=username, codes_left=left)
            await self._bus.publish(RecoveryCodeUsed(username, "recovery_code_used", left))
        return spent

    async def _new_recovery_codes(self, db: Any, user_id: int) -> list[str]:
        """Replace the user's recovery codes inside the caller's transaction; the codes in clear, once."""
        codes = recovery.generate()
        now = self._clock.now()
        await db.execute("DELETE FROM recovery_codes WHERE user_id = ?", (user_id,))
        await db.executemany(
            "INSERT INTO recovery_codes (user_id, code_hash, created_at) VALUES (?, ?, ?)",
            [(user_id, recovery.hash_code(c), now) for c in codes],
        )
        return codes

    async def regenerate_recovery_codes(self, caller: Principal, username: str) -> list[str]:
        """New recovery codes for a user with two-factor login on; the old ones stop working."""
        self._self_or_admin(caller, username, "make recovery codes")
        user = await self.get_user(username)
        if not user["totp"]:
            raise Conflict(
                f"two-factor login is off for {username}: there is nothing to recover",
                hint="turn it on with `fsctl user totp enable`",
            )
        async with self._store.transaction() as db:
            codes = await self._new_recovery_codes(db, user["id"])
        await self._bus.publish(UserUpdated(username, "recovery_codes"))
        return codes

    async def totp_confirm(self, caller: Principal, username: str, code: str) -> list[str]:
        """Finish enrolment; returns the user's new recovery codes (shown once, stored hashed)."""
        self._self_or_admin(caller, username, "set up two-factor login")
        row = await self._store.fetchone("SELECT id, totp_pending FROM users WHERE username = ?", (username,))
        if row is None:
            raise NotFound(f"no user named {username!r}")
        if not row["totp_pending"]:
            raise Conflict("no two-factor enrolment is pending", hint="start one with `fsctl user totp enable`")
        step = totp_step(row["totp_pending"], code, self._clock.now())
        if step is None:
            raise BadRequest(
                "the code does not match; check the device's clock and try the next code", details={"field": "code"}
            )
        async with self._store.transaction() as db:
            await db.execute(
                "UPDATE users SET totp_secret = totp_pending, totp_pending = NULL, totp_last_step = ? WHERE id = ?",
                (step, row["id"]),
            )
            codes = await self._new_recovery_codes(db, row["id"])
        await self._bus.publish(UserUpdated(username, "totp_enabled"))
        return codes

    async def totp_disable(self, caller: Principal, username: str) -> None:
        self._self_or_admin(caller, username, "turn off two-factor login")
        user = await self.get_user(username)
        async with self._store.transaction() as db:
            await db.execute("UPDATE users SET totp_secret = NULL, totp_pending = NULL WHERE id = ?", (user["id"],))
            await db.execute("DELETE FROM recovery_codes WHERE user_id = ?", (user["id"],))
        await self._bus.publish(UserUpdated(username, "totp_disabled"))

    @staticmethod
    def _self_or_admin(caller: Principal, username: str, what: str) -> None:
        if caller.username != username and not caller.has_role("admin"):
            raise Forbidden(f"only an admin can {what} for another user")

    async def _issue(self, owner: Principal, kind: str, name: str, role: Role, ttl_s: float) -> tuple[str, float, int]:
        if owner.user_id is None:
            row = await self._store.fetchone(
                "SELECT id FROM users WHERE role = 'admin' AND disabled = 0 ORDER BY id LIMIT 1"
            )
            if row is None:
                raise Conflict("no admin user exists to own the token")
            user_id = row["id"]
        else:
            user_id = owner.user_id
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self._clock.now()
        expires_at = now + ttl_s
        async with self._store.transaction() as db:
            cur = await db.execute(
                "INSERT INTO tokens (kind, name, user_id, role, token_hash, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (kind, name, user_id, role, hash_token(token), now, expires_at),
            )
            token_id = int(cur.lastrowid or 0)
        return token, expires_at, token_id

    async def create_token(self, caller: Principal, name: str, role: Role, ttl_s: float) -> tuple[str, dict[str, Any]]:
        """A new API token; the secret is returned here and never again."""
        if not caller.has_role(role):
            raise Forbidden(f"a {caller.role} cannot create a token with role {role}")
        if not name.strip():
            raise BadRequest("a token needs a name", details={"field": "name"})
        token, _expires_at, token_id = await self._issue(caller, "api", name, role, ttl_s)
        record = await self.get_token(token_id)
        await self._bus.publish(TokenCreated(token_id, name, role))
        return token, record

    async def get_token(self, token_id: int) -> dict[str, Any]:
        rows = await self._token_rows("WHERE t.id = ?", (token_id,))
        if not rows:
            raise NotFound(f"no token with id {token_id}", hint="see `fsctl token ls`")
        return rows[0]

    async def list_tokens(self, *, include_sessions: bool = False) -> list[dict[str, Any]]:
        where = "" if include_sessions else "WHERE t.kind = 'api'"
        return await self._token_rows(where + " ORDER BY t.id", ())

    async def _token_rows(self, where: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        now = self._clock.now()
        rows = await self._store.fetchall(
            "SELECT t.id, t.kind, t.name, t.role, t.created_at, t.expires_at, t.revoked_at, t.last_used_at, "
            f"u.username AS owner FROM tokens t JOIN users u ON u.id = t.user_id {where}",
            params,
        )
        out = []
        for r in rows:
            d = dict(r)
            d["state"] = "revoked" if r["revoked_at"] else ("expired" if r["expires_at"] <= now else "active")
            out.append(d)
        return out

    async def revoke_token(self, token_id: int) -> dict[str, Any]:
        before = await self.get_token(token_id)
        async with self._store.transaction() as db:
            await db.execute(
                "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (self._clock.now(), token_id)
            )
        await self._bus.publish(TokenRevoked(token_id, before["name"]))
        return before

    async def logout(self, principal: Principal) -> None:
        if principal.token_id is not None and principal.via == "session":
            await self.revoke_token(principal.token_id)

    async def authenticate(self, token: str) -> Principal:
        """The principal a bearer token stands for, or `Unauthorized` (unknown, expired, revoked)."""
        row = await self._store.fetchone(
            "SELECT t.id, t.kind, t.role, t.expires_at, t.revoked_at, u.id AS user_id, u.username, u.disabled "
            "FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?",
            (hash_token(token),),
        )
        if row is None:
            raise Unauthorized("the token is not valid", hint="log in again with `fsctl login`")
        if row["revoked_at"] is not None:
            raise Unauthorized("the token was revoked", hint="log in again or create a new token")
        if row["expires_at"] <= self._clock.now():
            raise Unauthorized("the token has expired", hint="log in again or create a new token")
        if row["disabled"]:
            raise Unauthorized("the user is disabled")
        return Principal(row["username"], row["role"], row["kind"], row["user_id"], row["id"])
