"""Per-route policies, pure: HTTPS redirect (on by default for routes with TLS), HSTS and security headers,
IP allow/deny, basic auth (the bcrypt check itself runs in a worker pool, failures throttled per client)
and a token-bucket rate limit per client IP. `now` is passed in; no I/O.

`CompiledPolicies` is built once per route table (CIDRs parsed, header names encoded) so a request pays
only lookups. Rate-limit buckets live in a `RateLimiter` the gate keeps per route across table swaps.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field

import bcrypt

from core.memo import RecentSet
from gate.routes import Policies, RateLimit, RouteSpec

ACME_PREFIX = "/.well-known/acme-challenge/"  # HTTP-01 answers: served over plain HTTP, never redirected

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"X-Content-Type-Options", b"nosniff"),
    (b"X-Frame-Options", b"SAMEORIGIN"),
    (b"Referrer-Policy", b"strict-origin-when-cross-origin"),
    (b"Permissions-Policy", b"interest-cohort=()"),
)

AUTH_CACHE_SIZE = 256  # verified credentials remembered per route (bcrypt is slow by design)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _nets(items: list[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(x, strict=False) for x in items)


def ip_in(nets: tuple[Network, ...], ip: str) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr.version == n.version and addr in n for n in nets)


@dataclass(frozen=True, slots=True)
class Verdict:
    """An answer the gate gives instead of proxying."""

    status: int
    message: str
    headers: tuple[tuple[bytes, bytes], ...] = ()


class HttpsRedirect:
    """Where a route sends plain-HTTP requests: `https://HOST[:PORT]` followed by the request target
    unchanged. HOST is the route's own name; only a wildcard or catch-all route uses the request's
    host, and then the one the router matched on (`parse_host_header`: lowercase, no port, no trailing
    dot, only `[a-z0-9._-]` or an IPv6 literal), never the raw `Host` header, so a request cannot steer
    the redirect to another site. PORT is the gate's HTTPS port, left out when it is 443 (or unknown)."""

    __slots__ = ("host", "port_suffix")

    def __init__(self, route_host: str, https_port: int | None) -> None:
        self.host = None if route_host == "*" or route_host.startswith("*.") else route_host
        self.port_suffix = "" if https_port is None or https_port == 443 else f":{https_port}"

    def location(self, request_host: str, target: str) -> bytes | None:
        """The `Location` value, or None when there is no host to name (an HTTP/1.0 request without
        `Host` on a wildcard or catch-all route)."""
        host = self.host or request_host
        if not host:
            return None
        return f"https://{host}{self.port_suffix}{target}".encode("latin-1")


def https_redirect(spec: RouteSpec, https_port: int | None) -> HttpsRedirect | None:
    """A route's redirect, or None: only routes with TLS (`auto`, `manual`) redirect, unless their
    `policies.redirect_https` is off; a route with `tls: off` has no certificate to send people to."""
    if spec.tls == "off" or not spec.policies.redirect_https:
        return None
    return HttpsRedirect(spec.host, https_port)


class CompiledPolicies:
    """A route's policies, ready for the hot path."""

    __slots__ = (
        "allow",
        "auth_cache",
        "auth_decoy",
        "auth_users",
        "deny",
        "realm",
        "redirect",
        "req_remove",
        "req_set",
        "resp_extra",
        "resp_remove",
        "trivial",
        "trivial_https",
    )

    def __init__(self, p: Policies, redirect: HttpsRedirect | None = None) -> None:
        self.redirect = redirect
        self.allow = _nets(p.allow)
        self.deny = _nets(p.deny)
        self.auth_users = {u.username: u.bcrypt_hash.encode() for u in p.basic_auth}
        self.auth_decoy = decoy_hash(next(iter(self.auth_users.values()))) if self.auth_users else b""
        self.realm = p.basic_auth_realm
        self.auth_cache: RecentSet[bytes] = RecentSet(AUTH_CACHE_SIZE)
        self.req_set = dict(p.request_headers.set)
        self.req_remove = frozenset(h.lower().encode() for h in [*p.request_headers.remove, *p.request_headers.set])
        extra: list[tuple[bytes, bytes]] = []
        if p.security_headers:
            extra += SECURITY_HEADERS
        extra += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in p.response_headers.set.items()]
        self.resp_extra = tuple(extra)
        self.resp_remove = frozenset(
            h.lower().encode() for h in [*p.response_headers.remove, *p.response_headers.set]
        ) | (frozenset(k.lower() for k, _ in SECURITY_HEADERS) if p.security_headers else frozenset())
        # Nothing to check: the hot path skips the policy calls. The HTTPS redirect (on by default for every
        # route with TLS) only ever applies to plain HTTP, so an HTTPS request is checked apart from it.
        self.trivial_https = not (self.allow or self.deny or self.auth_users)
        self.trivial = self.trivial_https and redirect is None

    def response_headers(self, scheme: str, hsts_max_age_s: int) -> tuple[tuple[bytes, bytes], ...]:
        if hsts_max_age_s and scheme == "https":
            return (*self.resp_extra, (b"Strict-Transport-Security", b"max-age=%d" % hsts_max_age_s))
        return self.resp_extra

    def check_ip(self, ip: str) -> Verdict | None:
        if self.deny and ip_in(self.deny, ip):
            return Verdict(403, "your address is not allowed to use this site")
        if self.allow and not ip_in(self.allow, ip):
            return Verdict(403, "your address is not allowed to use this site")
        return None

    def check_redirect(self, scheme: str, method: bytes, host: str, target: str) -> Verdict | None:
        """301 (GET, HEAD) or 308 (other methods: they must keep method and body) to HTTPS for a plain-HTTP
        request, or None. `host` is the parsed host the router matched (`RequestInfo.host`), `target`
        the request target (path and query, kept exactly). The ACME HTTP-01 path and `OPTIONS *` pass."""
        r = self.redirect
        if r is None or scheme == "https" or target[:1] != "/" or target.startswith(ACME_PREFIX):
            return None
        location = r.location(host, target)
        if location is None:
            return Verdict(400, "this site is served over HTTPS; send a Host header naming it")
        return Verdict(
            301 if method == b"GET" or method == b"HEAD" else 308,
            "this site is served over HTTPS",
            ((b"Location", location),),
        )

    def check_auth(self, authorization: bytes) -> Verdict | Credentials | None:
        """None: no auth here, or a credential already verified (cached). A `Verdict` (401): no usable
        credential (missing, malformed) — answered at once. `Credentials`: a password to verify with
        `verify_password` off the loop, then `remember()` on success; an unknown user's is checked against
        the decoy hash, so neither the answer's time nor the throttle tells which names exist."""
        if not self.auth_users:
            return None
        cred = parse_basic(authorization, self.auth_users, self.auth_decoy)
        if cred is None:
            return self.unauthorized()
        cache = self.auth_cache.data  # `RecentSet.hit` inlined: every request on an auth route comes here
        if cred.key in cache:
            cache.move_to_end(cred.key)
            return None
        return cred

    def unauthorized(self) -> Verdict:
        return Verdict(
            401,
            "this site needs a username and password",
            ((b"WWW-Authenticate", f'Basic realm="{self.realm}", charset="UTF-8"'.encode()),),
        )

    def remember(self, cred: Credentials) -> None:
        """Cache a verified credential: bounded LRU keyed by a SHA-256 of the whole header and the
        stored hash, so a changed password (new hash) or a different header never matches."""
        self.auth_cache.add(cred.key)


@dataclass(frozen=True, slots=True)
class Credentials:
    """A Basic-auth attempt: what `verify_password` needs (for an unknown user, the decoy hash), and its
    cache key."""

    user: str
    password: bytes = field(repr=False)  # a secret: never in a repr, a log line or an error
    stored: bytes = field(repr=False)
    key: bytes = field(repr=False)


def decoy_hash(model: bytes) -> bytes:
    """A bcrypt hash that no password matches (its digest is random, not computed: building it costs
    nothing on the loop), with `model`'s algorithm, cost and salt, so checking it costs what checking
    `model` does."""
    digest = bytes(secrets.choice(_BCRYPT_B64) for _ in range(31))
    return model[:29] + digest  # "$2b$12$" + 22 characters of salt, then the 31-character digest


_BCRYPT_B64 = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def parse_basic(header: bytes, users: dict[str, bytes], decoy: bytes = b"") -> Credentials | None:
    """The credential in an `Authorization: Basic ...` value; one naming an unknown user carries `decoy`
    as its stored hash (None when there is no decoy, or the value is malformed)."""
    if not header[:6].lower() == b"basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    stored = users.get(user, decoy)
    if not sep or not stored:
        return None
    return Credentials(user, password.encode("utf-8"), stored, hashlib.sha256(header + b"\x00" + stored).digest())


def verify_password(password: bytes, stored: bytes) -> bool:
    """bcrypt check — slow by design (tens to hundreds of ms): run it in a worker pool, never on the loop."""
    try:
        return bcrypt.checkpw(password, stored)
    except ValueError:
        return False


def client_key(ip: str) -> str:
    """Who a per-client limit counts: the address, or its /64 for IPv6 (one host usually holds a /64)."""
    if ":" not in ip:
        return ip
    try:
        addr = ipaddress.IPv6Address(ip)
    except ValueError:
        return ip
    if addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(ipaddress.IPv6Network((int(addr) >> 64 << 64, 64)))


class AuthFailures:
    """Password checks per client (`client_key`), across all routes: a token bucket of `burst` wrong
    passwords refilled `burst` per `window_s`. Each check takes a token before bcrypt runs — so a
    client's concurrent guesses count too — and a right password gives its token back. While a client's
    bucket is empty, `attempt()` returns how long until it may try again and the gate answers 429
    without running bcrypt. A success never resets the count beyond its own token (a valid account must
    not become a key to keep guessing others): failures age out."""

    __slots__ = ("limiter",)

    def __init__(self, burst: int, window_s: float, max_clients: int = 100_000) -> None:
        self.limiter = RateLimiter(RateLimit(rate_per_s=burst / window_s, burst=burst), max_clients)

    def attempt(self, ip: str, now: float) -> float:
        """Take a token for one password check: 0.0 when allowed, else seconds until one is."""
        return self.limiter.take(client_key(ip), now)

    def succeeded(self, ip: str, now: float) -> None:
        """The check passed: return its token."""
        self.limiter.give_back(client_key(ip), now)


class RateLimiter:
    """Token buckets per client IP. `take(ip, now)` → 0.0 when allowed, else seconds until a token.

    Memory is bounded: at most `max_clients` buckets; when full, the least recently seen goes (it would
    have refilled the most)."""

    __slots__ = ("buckets", "burst", "max_clients", "rate")

    def __init__(self, limit: RateLimit, max_clients: int = 100_000) -> None:
        self.rate = limit.rate_per_s
        self.burst = float(limit.burst or max(1, int(limit.rate_per_s)))
        self.max_clients = max_clients
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # ip -> (tokens, at)

    def give_back(self, ip: str, now: float) -> None:
        """Return one token taken by `take` (up to `burst`)."""
        entry = self.buckets.get(ip)
        if entry is not None:
            self.buckets[ip] = (min(self.burst, entry[0] + (now - entry[1]) * self.rate + 1.0), now)

    def take(self, ip: str, now: float) -> float:
        entry = self.buckets.get(ip)
        if entry is None:
            tokens = self.burst
            if len(self.buckets) >= self.max_clients:
                self.buckets.popitem(last=False)
        else:
            tokens = min(self.burst, entry[0] + (now - entry[1]) * self.rate)
            self.buckets.move_to_end(ip)
        if tokens >= 1.0:
            self.buckets[ip] = (tokens - 1.0, now)
            return 0.0
        self.buckets[ip] = (tokens, now)
        return (1.0 - tokens) / self.rate
