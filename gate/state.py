"""What every connection of the gate shares: the current configuration snapshot (route table plus the
per-route runtime pieces), the upstream pool, target health, metrics and the access-log sink.

Theory of operation: `Snapshot` is immutable and replaced as one attribute assignment, so a request
that read `state.snapshot` keeps a consistent table and route for its whole life while new requests
see the new one. Per-route runtime state that should survive a reload (rate-limit buckets, the
round-robin cursor) is carried over by route id when the spec part it depends on is unchanged; target
health is keyed by address and shared by all routes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.ports import AccessLogSink, ChallengeStore, EndpointBoard
from core.tasks import TaskSet
from core.workers import WorkerPool, default_workers
from gate.accesslog import AccessBatch
from gate.balancer import Cursor, HealthPolicy, TargetHealth
from gate.config import GateConfig
from gate.h1heads import header_lines
from gate.metrics import GateMetrics, Histogram, Stats
from gate.policies import AuthFailures, CompiledPolicies, RateLimiter, https_redirect, ip_in
from gate.router import RouteTable
from gate.routes import Route, parse_target
from gate.upstream import UpstreamPool


class RouteRuntime:
    """A route plus what the proxy needs at request time."""

    __slots__ = (
        "balance",
        "buffer_bytes",
        "cells",
        "cursor",
        "limiter",
        "max_body",
        "methods",
        "metrics",
        "name",
        "policies",
        "req_set_base",
        "req_set_lines",
        "resp_extra",
        "resp_lines",
        "route",
        "services",
        "static_root",
        "static_targets",
        "timeout_s",
    )

    def __init__(
        self, route: Route, state: ProxyState, previous: RouteRuntime | None, https_port: int | None = None
    ) -> None:
        spec = route.spec
        self.route = route
        self.name = route.name
        self.balance = spec.balance
        self.methods = frozenset(m.encode() for m in spec.methods) if spec.methods else None
        self.policies = pol = CompiledPolicies(spec.policies, https_redirect(spec, https_port))
        # Rendered once per table, not per request: the header lines this route adds both ways.
        self.req_set_base = header_lines(pol.req_set)
        # ... and this gate's hop field (loop detection), for requests that arrive without one.
        self.req_set_lines = self.req_set_base + b"X-Infracore-Hop: " + state.hop_id + b"\r\n"
        hsts = spec.policies.hsts_max_age_s
        self.resp_extra = {scheme: pol.response_headers(scheme, hsts) for scheme in ("http", "https")}
        self.resp_lines = {
            scheme: b"".join(n + b": " + v + b"\r\n" for n, v in extra) for scheme, extra in self.resp_extra.items()
        }
        keep = previous is not None and previous.route.spec.upstreams == spec.upstreams
        self.cursor: Cursor = previous.cursor if keep and previous else Cursor()
        same_rl = previous is not None and previous.route.spec.policies.rate_limit == spec.policies.rate_limit
        if spec.policies.rate_limit is None:
            self.limiter = None
        elif same_rl and previous is not None and previous.limiter is not None:
            self.limiter = previous.limiter
        else:
            self.limiter = RateLimiter(spec.policies.rate_limit)
        limit = spec.max_body_bytes if spec.max_body_bytes is not None else state.config.max_body_bytes
        self.max_body = limit or None
        buffer = spec.request_buffer_bytes
        self.buffer_bytes = buffer if buffer is not None else state.config.request_buffer_bytes
        self.timeout_s = spec.upstream_timeout_s or state.config.upstream_timeout_s
        self.metrics: Stats = state.metrics.route(route.name)
        # upstream target key → (the Stats a request counts towards, GateMetrics.cell(route, target))
        self.cells: dict[str | None, tuple[tuple[Stats, ...], Histogram]] = {}
        self.static_root = os.path.realpath(spec.static_dir) if spec.static_dir else None
        self.static_targets: list[TargetHealth] = []
        self.services: list[str] = []
        for item in spec.upstreams:
            t = parse_target(item)
            if isinstance(t, str):
                self.services.append(t)
            else:
                self.static_targets.append(state.target(t[0], t[1]))

    def stats_for(
        self, upstream: str | None, target_stats: Stats | None, metrics: GateMetrics
    ) -> tuple[tuple[Stats, ...], Histogram]:
        """The Stats a request to `upstream` (a target key; None: none) counts towards and its latency cell
        (`GateMetrics.cell(route, target)`), made once per target and kept in `cells`."""
        found = self.cells.get(upstream)
        if found is None:
            found = self.cells[upstream] = (
                (metrics.total, self.metrics, target_stats)
                if target_stats is not None
                else (metrics.total, self.metrics),
                metrics.cell(self.name, upstream),
            )
        return found

    def targets(self, state: ProxyState) -> Sequence[TargetHealth]:
        if not self.services:
            return self.static_targets
        out = list(self.static_targets)
        for name in self.services:
            for ep in state.endpoints.get(name):
                if ep.healthy:
                    out.append(state.target(ep.host, ep.port))
        return out


@dataclass(frozen=True, slots=True)
class Snapshot:
    table: RouteTable
    runtimes: dict[int, RouteRuntime]


class ProxyState:
    """Shared by every client connection of every listener (plain HTTP now; TLS and HTTP/2 later)."""

    __slots__ = (
        "_rid",
        "_rid_prefix",
        "access_log",
        "auth_failures",
        "challenges",
        "clients",
        "clock",
        "config",
        "drained",
        "draining",
        "endpoints",
        "health",
        "health_policy",
        "hop_id",
        "metrics",
        "owns_workers",
        "pool",
        "snapshot",
        "tasks",
        "timer",
        "trusted",
        "via",
        "wall_clock",
        "workers",
    )

    def __init__(
        self,
        config: GateConfig,
        *,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
        timer: Callable[[], float] = time.perf_counter,
        endpoints: EndpointBoard | None = None,
        challenges: ChallengeStore | None = None,
        access_log: AccessLogSink | None = None,
        workers: WorkerPool | None = None,
    ) -> None:
        self.config = config
        # Where Basic-auth passwords are checked (bcrypt: never on the loop). `fsctl serve` passes the
        # edge's pool; without one the gate makes its own (threads start on first use) and stops it.
        self.owns_workers = workers is None
        self.workers = workers or WorkerPool("gate-auth", workers=default_workers(), backlog=16, kind="process")
        self.auth_failures = AuthFailures(config.basic_auth_failures, config.basic_auth_failure_window_s)
        self.clock = clock  # loop time, for timeouts and rates
        self.wall_clock = wall_clock  # epoch seconds, for logs
        # Durations (latency metrics, access log) need better than loop time, which uvloop keeps in whole
        # milliseconds; deadlines and metric windows stay on `clock` (cheaper, and one timebase for both).
        self.timer = timer
        self.endpoints = endpoints or EndpointBoard()
        self.challenges = challenges or ChallengeStore()
        # The open batch of access-log lines in front of the sink (its lines are rendered into it).
        self.access_log = AccessBatch(access_log, wall_clock, timer) if access_log is not None else None
        self.metrics = GateMetrics()
        self.health_policy = HealthPolicy(
            config.eject_after_failures, config.eject_backoff_s, config.eject_max_backoff_s
        )
        self.health: dict[str, TargetHealth] = {}
        self.pool = UpstreamPool(
            max_idle_per_target=config.pool_max_idle_per_target,
            max_per_target=config.pool_max_per_target,
            idle_s=config.upstream_idle_s,
            high_water=config.high_water_bytes,
            low_water=config.low_water_bytes,
            clock=clock,
        )
        self.trusted = tuple(ipaddress.ip_network(n, strict=False) for n in config.trusted_proxies)
        self.snapshot = Snapshot(RouteTable(), {})
        self.clients: set = set()  # open client connections (any protocol), for timeouts and draining
        self.draining = False
        self.drained: asyncio.Event | None = None  # set when the last client connection closes while draining
        self.tasks = TaskSet("gate")
        self._rid_prefix = secrets.token_hex(4)
        # This gate's id in the X-Infracore-Hop field it adds upstream: a request coming back with it is a
        # loop (a route whose upstream is the gate itself) and gets 508. Random per instance, so gates
        # chained on purpose never mistake each other for themselves.
        self.hop_id = secrets.token_hex(8).encode()
        self._rid = 0
        self.via = b"1.1 infracore" if config.via else None

    def target(self, host: str, port: int) -> TargetHealth:
        key = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        t = self.health.get(key)
        if t is None:
            t = self.health[key] = TargetHealth(host, port)
        return t

    def start_draining(self) -> asyncio.Event:
        """Shutdown begins: new connections are told to close; the event is set once the last one has."""
        self.draining = True
        self.drained = asyncio.Event()
        return self.drained

    def is_trusted(self, ip: str) -> bool:
        return bool(self.trusted) and ip_in(self.trusted, ip)

    def request_id(self) -> str:
        self._rid += 1
        return f"{self._rid_prefix}{self._rid:08x}"

    def build_snapshot(self, routes: Sequence[Route], version: int = 0, https_port: int | None = None) -> Snapshot:
        """Validate and compile a whole table (raises RouteConflict / ValueError); does not install it.
        `https_port`: the gate's HTTPS port, for the `Location` of HTTPS redirects (None: 443)."""
        table = RouteTable(routes, version=version)
        old = self.snapshot.runtimes
        return Snapshot(table, {r.id: RouteRuntime(r, self, old.get(r.id), https_port) for r in table.routes})

    def install(self, snap: Snapshot) -> None:
        """Make `snap` the table new requests see (one assignment: atomic on the loop)."""
        self.snapshot = snap
