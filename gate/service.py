"""`GateService`: the gate as a component — routes kept in the state DB, validated and swapped atomically
into the running proxy, the plain-HTTP listener, metrics, and the names that want certificates.

Theory of operation: every route change runs under one lock: the whole new table is built (validated,
compiled) from the current routes plus the change *inside* the DB transaction, so a table that would not
build is never stored; after commit the snapshot is installed with one assignment and `route.changed`
is published. In-flight requests keep the snapshot they started with; open connections and tunnels
are untouched.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from pydantic import ValidationError

from core.bus import EventBus
from core.errors import Conflict, NotFound, ValidationFailed
from core.ports import AccessLogSink, CertificateBoard, ChallengeStore, EndpointBoard, Sample
from core.store import Migration, Store
from core.workers import WorkerPool
from gate.config import GateConfig
from gate.events import RouteChanged
from gate.router import RouteConflict
from gate.routes import Route, RouteSpec
from gate.server import EdgeServer
from gate.state import ProxyState
from gate.static import check_static_root
from gate.upstream_check import Resolver, ServicePorts, upstream_warnings

log = structlog.get_logger("gate.service")

MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "routes",
        """
        CREATE TABLE gate_routes (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            host TEXT NOT NULL,
            path TEXT NOT NULL,
            spec TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            UNIQUE (host, path)
        );
        """,
    ),
    # HTTPS redirect became the default for routes with TLS. Stored specs all carry the old default
    # `redirect_https: false` (no flag could set it off, so "off on purpose" cannot be told apart):
    # every stored route gets the new default; `fsctl route edit ID --no-redirect-https` turns it off.
    Migration(
        2,
        "routes_redirect_https_default",
        """
        UPDATE gate_routes SET spec = json_set(spec, '$.policies.redirect_https', json('true'))
        WHERE json_extract(spec, '$.policies.redirect_https') = 0;
        """,
    ),
]


def spec_errors(e: ValidationError) -> ValidationFailed:
    """A route spec's validation errors as one ValidationFailed listing each field (the API's 422)."""
    problems = [
        {"field": ".".join(str(p) for p in err["loc"]) or "(route)", "message": err["msg"]} for err in e.errors()
    ]
    summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
    return ValidationFailed(
        f"invalid route: {summary}",
        details={"errors": problems},
        hint="see `fsctl route add --help` for the route fields",
    )


class GateService:
    """The edge proxy component. Public methods are what the console API and the CLI use."""

    name = "gate"

    def __init__(
        self,
        config: GateConfig,
        *,
        store: Store,
        bus: EventBus,
        listen_host: str,
        listen_port: int,
        endpoints: EndpointBoard | None = None,
        challenges: ChallengeStore | None = None,
        certificates: CertificateBoard | None = None,
        access_log: AccessLogSink | None = None,
        wall_clock: Callable[[], float] = time.time,
        https_port: int | None = None,
        data_dir: Path | None = None,
        workers: WorkerPool | None = None,
        service_ports: ServicePorts | None = None,
        resolve: Resolver | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.bus = bus
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.certificates = certificates
        self.wall_clock = wall_clock
        self.state = ProxyState(
            config,
            clock=time.monotonic,
            wall_clock=wall_clock,
            endpoints=endpoints,
            challenges=challenges,
            access_log=access_log,
            workers=workers,
        )
        self.edge = EdgeServer(self.state)
        self.bound_port: int | None = None
        self.https_port = https_port
        # The port HTTPS redirects name: the TLS listener's bound port once it runs, else the configured one.
        self.redirect_port = https_port
        self.service_ports = service_ports
        self.resolve = resolve
        self.data_dir = data_dir
        self.tls: Any = None  # gate.tls.TlsListener once the HTTPS listener runs
        self._routes: dict[int, Route] = {}
        self._lock = asyncio.Lock()
        self._version = 0

    # --- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.state.clock = asyncio.get_running_loop().time
        self.state.pool.clock = self.state.clock
        await self.store.migrate("gate", MIGRATIONS)
        rows = await self.store.fetchall("SELECT id, spec FROM gate_routes ORDER BY id")
        routes: list[Route] = []
        for row in rows:
            try:
                routes.append(Route(row["id"], RouteSpec.model_validate_json(row["spec"])))
            except ValidationError as e:
                # A stored route this release no longer accepts: skip it loudly rather than refuse to start.
                log.error("stored route is invalid; skipped", route_id=row["id"], error=str(e))
        kept = []
        for r in routes:
            try:
                self._check_static_roots([r])
            except ValidationFailed as e:
                log.error("stored route serves a refused directory; skipped", route_id=r.id, error=e.message)
                continue
            kept.append(r)
        self._install(kept)
        self.bound_port = await self.edge.listen(self.listen_host, self.listen_port, scheme="http")
        if self.https_port is not None and self.certificates is not None and self.data_dir is not None:
            from gate.tls import CertSelector, start_tls_listener

            selector = CertSelector(self.certificates, self.data_dir / "gate", now=self.wall_clock)
            self.tls = await start_tls_listener(self.edge, self.listen_host, self.https_port, selector)
            if self.tls.port != self.redirect_port:  # port 0: the redirects name the port actually bound
                self.redirect_port = self.tls.port
                self._install(list(self._routes.values()))

    def certificate_for(self, host: str) -> dict[str, Any] | None:
        """Which certificate the HTTPS listener serves for a route's host (None without TLS)."""
        return self.tls.selector.describe(host) if self.tls is not None else None

    async def stop(self, drain_timeout_s: float) -> None:
        await self.edge.stop(self.config.drain_timeout_s or drain_timeout_s)

    # --- routes ---------------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        return sorted(self._routes.values(), key=lambda r: (r.spec.host, r.spec.path))

    def get_route(self, route_id: int) -> Route:
        r = self._routes.get(route_id)
        if r is None:
            raise NotFound(f"no route with id {route_id}", hint="list routes with `fsctl route ls`")
        return r

    def find_route(self, ref: str) -> Route:
        """A route by id, or by `host` / `host/path` as `route ls` shows it."""
        if ref.isdigit():
            return self.get_route(int(ref))
        for r in self._routes.values():
            if r.name == ref.lower().rstrip("/") or (r.spec.path == "/" and r.spec.host == ref.lower()):
                return r
        raise NotFound(f"no route named {ref!r}", hint="list routes with `fsctl route ls`")

    async def add_route(self, spec: RouteSpec) -> Route:
        async with self._lock:
            now = self.wall_clock()
            try:
                async with self.store.transaction() as db:
                    cur = await db.execute(
                        "INSERT INTO gate_routes (host, path, spec, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                        (spec.host, spec.path, spec.model_dump_json(), now, now),
                    )
                    route = Route(int(cur.lastrowid or 0), spec)
                    snap = self._build([*self._routes.values(), route])
            except sqlite3.IntegrityError:
                raise self._conflict(spec) from None
            self._swap(snap)
        await self._changed("added", route)
        return route

    async def update_route(self, route_id: int, spec: RouteSpec) -> tuple[Route, Route]:
        """Replace a route's whole spec. Returns (before, after); an unchanged spec is a no-op."""
        async with self._lock:
            before = self.get_route(route_id)
            after = await self._replace(before, spec)
        if after is not before:
            await self._changed("updated", after)
        return before, after

    async def patch_route(self, route_id: int, changes: dict[str, Any]) -> tuple[Route, Route]:
        """Change only the fields in `changes` (JSON merge patch, RFC 7386): top-level fields and the
        fields inside `policies` replace the current ones one by one, other values (lists, `rate_limit`,
        header rules) as a whole; null puts a field back to its default. Read, merge and write happen
        under the route lock, so concurrent edits of different fields never undo each other."""
        async with self._lock:
            before = self.get_route(route_id)
            current = before.spec.model_dump()
            merged = _merge(current, changes, nested=("policies",))
            try:
                spec = RouteSpec.model_validate(merged)
            except ValidationError as e:
                raise spec_errors(e) from None
            after = await self._replace(before, spec)
        if after is not before:
            await self._changed("updated", after)
        return before, after

    async def _replace(self, before: Route, spec: RouteSpec) -> Route:
        """Store and install `spec` for `before`'s id (caller holds the lock); `before` itself if unchanged."""
        if before.spec == spec:
            return before
        after = Route(before.id, spec)
        try:
            async with self.store.transaction() as db:
                await db.execute(
                    "UPDATE gate_routes SET host = ?, path = ?, spec = ?, updated_at = ? WHERE id = ?",
                    (spec.host, spec.path, spec.model_dump_json(), self.wall_clock(), before.id),
                )
                snap = self._build([after if r.id == before.id else r for r in self._routes.values()])
        except sqlite3.IntegrityError:
            raise self._conflict(spec) from None
        self._swap(snap)
        return after

    async def upstream_warnings(self, spec: RouteSpec) -> list[str]:
        """What looks wrong with a route's upstreams (unknown service, unresolvable host), as advice:
        the route is valid either way. Resolution runs off the loop with a short deadline."""
        return await upstream_warnings(spec.upstreams, services=self.service_ports, resolve=self.resolve)

    async def remove_route(self, route_id: int) -> Route:
        async with self._lock:
            before = self.get_route(route_id)
            async with self.store.transaction() as db:
                await db.execute("DELETE FROM gate_routes WHERE id = ?", (route_id,))
                snap = self._build([r for r in self._routes.values() if r.id != route_id])
            self._swap(snap)
        await self._changed("removed", before)
        return before

    def _conflict(self, spec: RouteSpec) -> Conflict:
        return Conflict(
            f"a route for host {spec.host} path {spec.path} already exists",
            hint="change that route with `fsctl route edit ID` (ID from `fsctl route ls`) or remove it first",
        )

    def _check_static_roots(self, routes: list[Route]) -> None:
        """Refuse static roots that would publish the system or the platform's data (after symlinks)."""
        data_dir = str(self.data_dir.absolute()) if self.data_dir is not None else None
        for r in routes:
            if r.spec.static_dir:
                problem = check_static_root(r.spec.static_dir, data_dir)
                if problem:
                    msg = f"static_dir {r.spec.static_dir!r} cannot be served: {problem}"
                    raise ValidationFailed(
                        f"invalid route {r.name}: {msg}",
                        details={"errors": [{"field": "static_dir", "message": msg}]},
                        hint="serve a directory holding only the site's files, e.g. /srv/www/NAME or /var/www/NAME",
                    )

    def _build(self, routes: list[Route]) -> Any:
        self._check_static_roots(routes)
        try:
            return self.state.build_snapshot(routes, version=self._version + 1, https_port=self.redirect_port)
        except RouteConflict as e:
            raise Conflict(str(e)) from e
        except ValueError as e:
            raise ValidationFailed(f"the route table is invalid: {e}") from e

    def _install(self, routes: list[Route]) -> None:
        self._swap(self._build(routes))

    def _swap(self, snap: Any) -> None:
        self.state.install(snap)
        self._version = snap.table.version
        self._routes = {r.id: r for r in snap.table.routes}
        if self.certificates is not None:
            self.certificates.set_wanted(snap.table.hosts_wanting_certs())

    async def _changed(self, action: str, route: Route) -> None:
        log.info(
            "route changed",
            action=action,
            route_id=route.id,
            host=route.spec.host,
            path=route.spec.path,
            version=self._version,
        )
        await self.bus.publish(RouteChanged(action, route.id, route.spec.host, route.spec.path, self._version))

    # --- observation ----------------------------------------------------------------------------------

    def metrics(self, span_s: float = 60.0) -> dict[str, Any]:
        st = self.state
        now = st.clock()
        data = st.metrics.snapshot(now, span_s)
        data["table_version"] = self._version
        data["pool"] = st.pool.stats()
        data["targets_health"] = {
            k: {
                "active": t.active,
                "ejected": not t.available(now),
                "failures": t.total_failures,
                "ejected_for_s": max(0.0, round(t.ejected_until - now, 1)),
            }
            for k, t in sorted(st.health.items())
        }
        return data

    def samples(self) -> list[Sample]:
        return self.state.metrics.samples(self.state.clock())


def _merge(current: dict[str, Any], changes: dict[str, Any], nested: tuple[str, ...]) -> dict[str, Any]:
    """`changes` over `current`: a null removes the field (its default applies); the `nested` fields, when
    both sides are mappings, merge the same way one level down; anything else replaces."""
    out = dict(current)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        elif key in nested and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, ())
        else:
            out[key] = value
    return out


def route_payload(route: Route) -> dict[str, Any]:
    return json.loads(json.dumps(route.to_dict()))
