"""The router: a pure, immutable table from (host, path) to a route, built once per change and swapped.

Theory of operation: hosts match exactly first, then as a one-label wildcard (`*.example.com` matches
`a.example.com`, not `example.com` nor `a.b.example.com`), then the catch-all `*`. Within a host the
longest path prefix wins, compared on whole segments (`/api` matches `/api` and `/api/x`, not `/apix`).
A table is never mutated after construction, so a request holds the table (and route) it started with
while a newer table serves new requests.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from core.hostnames import lookup_host
from core.memo import BoundedMemo
from gate.routes import Route


class RouteConflict(ValueError):
    """Two routes claim the same host and path."""


_HOSTNAME = re.compile(r"[a-z0-9._-]+")
_CACHE_MAX = 4096


def parse_host_header(value: str | bytes | None) -> str | None:
    """The host name a `Host` header (or absolute-form authority) names, lowercased, without its port.

    `Example.com:8080` → `example.com`; `[::1]:80` → `[::1]`; `127.0.0.1` → `127.0.0.1`.
    None when the value is not a valid host (the caller answers 400). Answers for byte values are
    memoized in a small bounded table (the same few Host values arrive on every request).
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            return _CACHE[value]
        except KeyError:
            return _HOSTS.miss(value)
    return _parse_host(value)


def _parse_host(value: str | bytes) -> str | None:
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    v = value.strip().lower()
    if not v or len(v) > 300:
        return None
    if v.startswith("["):
        end = v.find("]")
        if end < 0:
            return None
        rest = v[end + 1 :]
        if rest and not (rest.startswith(":") and rest[1:].isdigit() and len(rest) <= 6):
            return None
        try:
            ip = ipaddress.IPv6Address(v[1:end])
        except ValueError:
            return None
        return f"[{ip.compressed}]"
    host, sep, port = v.partition(":")
    if sep and (not port.isdigit() or len(port) > 5):
        return None
    host = host.rstrip(".")
    if not host or not _HOSTNAME.fullmatch(host):
        return None
    return host


_HOSTS: BoundedMemo[bytes, str | None] = BoundedMemo(_parse_host, _CACHE_MAX)
_CACHE = _HOSTS.data  # the memo's dict, read directly on the request path (it is cleared, never replaced)


def strip_prefix(prefix: str, target: str) -> str:
    """`target` (path with optional query) without `prefix`; always starts with '/'."""
    if prefix == "/":
        return target
    rest = target[len(prefix) :]
    if not rest or rest[0] == "?":
        return "/" + rest
    return rest


def _entries(routes: tuple[Route, ...]) -> tuple[tuple[str, bool, Route], ...]:
    return tuple((r.spec.path, r.spec.strip_prefix, r) for r in routes)


@dataclass(frozen=True, slots=True)
class Match:
    route: Route
    upstream_target: str  # the request target to send upstream (prefix stripped when asked)


class RouteTable:
    """Immutable (host, path) → Route. Construction validates the whole table (no duplicates)."""

    __slots__ = ("_resolve", "_resolved", "routes", "version")

    def __init__(self, routes: Iterable[Route] = (), *, version: int = 0) -> None:
        self.routes: tuple[Route, ...] = tuple(routes)
        self.version = version
        by_host: dict[str, list[Route]] = {}
        seen: dict[tuple[str, str], Route] = {}
        for r in self.routes:
            key = (r.spec.host, r.spec.path)
            if key in seen:
                raise RouteConflict(
                    f"route {r.id} and route {seen[key].id} both claim host {r.spec.host} path {r.spec.path}"
                )
            seen[key] = r
            by_host.setdefault(r.spec.host, []).append(r)
        for lst in by_host.values():
            lst.sort(key=lambda r: len(r.spec.path), reverse=True)
        # The routes as (prefix, strip, route) entries, longest prefix first: the catch-all's, and by host
        # pattern (exact names and `*.` wildcards, matched by `core.hostnames.lookup_host`).
        any_e = _entries(tuple(by_host.pop("*", ())))
        hosts_e = {h: _entries(tuple(v)) for h, v in by_host.items()}

        def resolve(host: str) -> tuple[tuple[str, bool, Route], ...]:
            found = lookup_host(hosts_e, host)
            return any_e if found is None else found

        # host → its entries, remembered: the request path pays one dict lookup for exact, wildcard and
        # catch-all hosts alike (bounded, so hostile Host values cannot grow it).
        self._resolve: BoundedMemo[str, tuple[tuple[str, bool, Route], ...]] = BoundedMemo(resolve, _CACHE_MAX)
        self._resolved = self._resolve.data

    def __len__(self) -> int:
        return len(self.routes)

    def match(self, host: str, target: str) -> Match | None:
        """The route for `host` (already parsed, see `parse_host_header`) and request `target`
        (origin-form path with optional query), or None (the caller answers 404)."""
        found = self.lookup(host, target)
        return None if found is None else Match(*found)

    def lookup(self, host: str, target: str) -> tuple[Route, str] | None:
        """`match` without building a `Match` (the request path): (route, upstream target) or None."""
        try:
            entries = self._resolved[host]
        except KeyError:
            entries = self._resolve.miss(host)
        path = None
        for prefix, strip, r in entries:
            if prefix == "/":
                return r, target
            if path is None:
                q = target.find("?")
                path = target if q < 0 else target[:q]
            if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/"):
                return r, (strip_prefix(prefix, target) if strip else target)
        return None

    def hosts_wanting_certs(self) -> frozenset[str]:
        return frozenset(r.spec.host for r in self.routes if r.spec.tls == "auto")
