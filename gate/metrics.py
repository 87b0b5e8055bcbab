"""Request metrics, pure: counters by status class, bytes, active requests, and latency histograms over
sliding windows (p50/p95/p99), per route and per upstream target. `now` is passed in.

Theory of operation: a histogram has fixed log-spaced buckets (0.05 ms … ~60 s, +12.5 % each) and a
ring of `windows` slots of `window_s` seconds; recording adds 1 to one bucket of the current slot
(resetting the slot when the ring comes round). A quantile merges the slots still inside the asked
span, so memory is constant and a query costs O(buckets * windows).

A proxied request counts towards three `Stats` (the total, its route, its upstream target). Their
counters are cheap to bump; the latency goes into one histogram shared by that (route, target) pair
(`GateMetrics.cell`), which each of the three lists in `cells` and merges at query time — one
histogram update per request instead of three.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from core.ports import Sample

_BOUNDS: tuple[float, ...] = tuple(0.05 * (1.125**i) for i in range(160))  # ms, up to ~80 s


class Histogram:
    __slots__ = ("counts", "slot_ids", "window_s", "windows")

    def __init__(self, window_s: float = 10.0, windows: int = 30) -> None:
        self.window_s = window_s
        self.windows = windows
        self.counts = [[0] * (len(_BOUNDS) + 1) for _ in range(windows)]
        self.slot_ids = [-1] * windows

    def record(self, ms: float, now: float) -> None:
        self.add(bisect_left(_BOUNDS, ms), now)

    def add(self, bucket: int, now: float) -> None:
        """Count one value already placed in its bucket (`bucket_of`)."""
        slot_id = int(now // self.window_s)
        i = slot_id % self.windows
        if self.slot_ids[i] != slot_id:
            self.slot_ids[i] = slot_id
            self.counts[i] = [0] * (len(_BOUNDS) + 1)
        self.counts[i][bucket] += 1

    def merged(self, now: float, span_s: float) -> list[int]:
        newest = int(now // self.window_s)
        oldest = newest - max(1, int(span_s // self.window_s)) + 1
        out = [0] * (len(_BOUNDS) + 1)
        for i, sid in enumerate(self.slot_ids):
            if oldest <= sid <= newest:
                for j, c in enumerate(self.counts[i]):
                    if c:
                        out[j] += c
        return out

    def quantiles(self, now: float, span_s: float, qs: tuple[float, ...] = (0.5, 0.95, 0.99)) -> dict[str, Any]:
        """{"count", "p50", ...} in ms over the last `span_s` seconds; the bucket's upper bound is reported."""
        return quantiles_of(self.merged(now, span_s), qs)


def quantiles_of(merged: list[int], qs: tuple[float, ...] = (0.5, 0.95, 0.99)) -> dict[str, Any]:
    """{"count", "p50", ...} of merged bucket counts (see `Histogram.merged`)."""
    total = sum(merged)
    out: dict[str, Any] = {"count": total}
    for q in qs:
        key = f"p{round(q * 100):d}"
        if total == 0:
            out[key] = None
            continue
        rank, acc = q * total, 0
        for j, c in enumerate(merged):
            acc += c
            if acc >= rank:
                out[key] = round(_BOUNDS[j] if j < len(_BOUNDS) else _BOUNDS[-1], 3)
                break
    return out


class Stats:
    """Counters for one route or one target; latency from its own histogram plus its shared `cells`."""

    __slots__ = ("active", "by_class", "bytes_in", "bytes_out", "cells", "latency", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.by_class = [0, 0, 0, 0, 0, 0]  # index = status // 100 (0 = aborted before a status)
        self.bytes_in = 0
        self.bytes_out = 0
        self.active = 0
        self.latency = Histogram()
        self.cells: list[Histogram] = []

    def enter(self) -> None:
        """A request counted here is now in flight (`active`)."""
        self.active += 1

    def leave(self) -> None:
        """A request counted here is no longer in flight."""
        self.active -= 1

    def record(self, status: int, bytes_in: int, bytes_out: int, ms: float, now: float) -> None:
        record_request((self,), self.latency, status, bytes_in, bytes_out, ms, now)

    def latency_quantiles(self, now: float, span_s: float) -> dict[str, Any]:
        merged = self.latency.merged(now, span_s)
        for cell in self.cells:
            for j, c in enumerate(cell.merged(now, span_s)):
                if c:
                    merged[j] += c
        return quantiles_of(merged)

    def to_dict(self, now: float, span_s: float) -> dict[str, Any]:
        latency = self.latency_quantiles(now, span_s)
        return {
            "requests": self.requests,
            "qps": round(latency["count"] / max(span_s, 1e-9), 2),
            "status": {
                "1xx": self.by_class[1],
                "2xx": self.by_class[2],
                "3xx": self.by_class[3],
                "4xx": self.by_class[4],
                "5xx": self.by_class[5],
                "aborted": self.by_class[0],
            },
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "active": self.active,
            "latency_ms": latency,
        }


def record_request(
    stats: tuple[Stats, ...], cell: Histogram, status: int, bytes_in: int, bytes_out: int, ms: float, now: float
) -> None:
    """Count one finished request in each of `stats` (total, route, target) and its latency once, in
    `cell`: a histogram every one of `stats` reads (its own `latency` or one of its `cells`)."""
    cls = status // 100
    if cls > 5 or cls < 0:
        cls = 5 if cls > 5 else 0
    for s in stats:
        s.requests += 1
        s.by_class[cls] += 1
        s.bytes_in += bytes_in
        s.bytes_out += bytes_out
    cell.add(bisect_left(_BOUNDS, ms), now)


class GateMetrics:
    """All the gate's counters. Mutated only on the loop; reads are cheap snapshots."""

    def __init__(self) -> None:
        self.total = Stats()
        self.routes: dict[str, Stats] = {}
        self.targets: dict[str, Stats] = {}
        self.connections_open = 0
        self.connections_total = 0
        self.protocol_errors = 0
        self.timeouts = 0
        self._cells: dict[tuple[str | None, str | None], Histogram] = {}

    def connection_opened(self) -> None:
        self.connections_open += 1
        self.connections_total += 1

    def connection_closed(self) -> None:
        self.connections_open -= 1

    def count_protocol_error(self) -> None:
        self.protocol_errors += 1

    def count_timeout(self) -> None:
        self.timeouts += 1

    def route(self, name: str) -> Stats:
        s = self.routes.get(name)
        if s is None:
            s = self.routes[name] = Stats()
        return s

    def target(self, key: str) -> Stats:
        s = self.targets.get(key)
        if s is None:
            s = self.targets[key] = Stats()
        return s

    def cell(self, route: str | None, target: str | None) -> Histogram:
        """The latency histogram of requests of `route` sent to `target` (either may be None: answered by
        the gate itself, or no route matched), shared by the total's, the route's and the target's Stats."""
        key = (route, target)
        h = self._cells.get(key)
        if h is None:
            if route is None and target is None:
                h = self.total.latency
            else:
                h = self._cells[key] = Histogram()
                self.total.cells.append(h)
                if route is not None:
                    self.route(route).cells.append(h)
                if target is not None:
                    self.target(target).cells.append(h)
        return h

    def snapshot(self, now: float, span_s: float = 60.0) -> dict[str, Any]:
        return {
            "window_s": span_s,
            "connections": {"open": self.connections_open, "total": self.connections_total},
            "protocol_errors": self.protocol_errors,
            "timeouts": self.timeouts,
            "total": self.total.to_dict(now, span_s),
            "routes": {k: v.to_dict(now, span_s) for k, v in sorted(self.routes.items())},
            "targets": {k: v.to_dict(now, span_s) for k, v in sorted(self.targets.items())},
        }

    def samples(self, now: float, latency_span_s: float = 30.0) -> list[Sample]:
        """Counters and gauges for probe's store and Prometheus exposition (core.ports.MetricsSource),
        with each route's request-duration quantiles over the last `latency_span_s` (a summary)."""
        out = [
            Sample("gate_connections_open", self.connections_open),
            Sample("gate_connections_total", self.connections_total, kind="counter"),
        ]
        for route, s in (("*", self.total), *self.routes.items()):
            q = s.latency_quantiles(now, latency_span_s)
            if q["count"]:
                for quantile, key in (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99")):
                    out.append(Sample("gate_request_duration_ms", q[key], {"route": route, "quantile": quantile}))
        for kind, table in (("route", self.routes), ("target", self.targets)):
            for key, s in table.items():
                for i, cls in enumerate(("aborted", "1xx", "2xx", "3xx", "4xx", "5xx")):
                    out.append(Sample("gate_requests_total", s.by_class[i], {kind: key, "class": cls}, "counter"))
                out.append(Sample("gate_bytes_in_total", s.bytes_in, {kind: key}, "counter"))
                out.append(Sample("gate_bytes_out_total", s.bytes_out, {kind: key}, "counter"))
                out.append(Sample("gate_active_requests", s.active, {kind: key}))
        return out
