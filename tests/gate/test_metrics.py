"""Metrics arithmetic: histogram quantiles over sliding windows, status classes, Prometheus samples."""

from __future__ import annotations

from gate.metrics import GateMetrics, Histogram, Stats


def test_quantiles_over_window():
    h = Histogram(window_s=10, windows=6)
    for ms in [1.0] * 50 + [10.0] * 45 + [100.0] * 5:
        h.record(ms, now=1000.0)
    q = h.quantiles(1005.0, 60)
    assert q["count"] == 100
    assert 1.0 <= q["p50"] <= 1.13  # bucket upper bounds are within 12.5 %
    assert 10.0 <= q["p95"] <= 11.3
    assert 100.0 <= q["p99"] <= 113
    # Older than the span: not counted; the ring slot is reused after it comes round.
    assert h.quantiles(1075.0, 60)["count"] == 0
    h.record(5.0, now=1060.0)  # same ring slot as t=1000, a new window
    assert h.quantiles(1060.0, 60)["count"] == 1


def test_empty_quantiles_are_none():
    assert Histogram().quantiles(0, 60) == {"count": 0, "p50": None, "p95": None, "p99": None}


def test_stats_and_samples():
    m = GateMetrics()
    s: Stats = m.route("a.test")
    for status in (200, 201, 301, 404, 502, 0):
        s.record(status, 10, 20, 1.0, 0.0)
    d = s.to_dict(0.0, 60)
    assert d["status"] == {"1xx": 0, "2xx": 2, "3xx": 1, "4xx": 1, "5xx": 1, "aborted": 1}
    assert d["requests"] == 6 and d["bytes_in"] == 60 and d["bytes_out"] == 120
    assert d["qps"] == 0.1  # 6 requests over the 60 s span
    samples = {(x.name, tuple(sorted(x.labels.items()))): x.value for x in m.samples(0.0)}
    assert samples[("gate_requests_total", (("class", "2xx"), ("route", "a.test")))] == 2


def test_samples_carry_each_routes_latency_quantiles_over_a_recent_window():
    m = GateMetrics()
    s = m.route("a.test")
    for i in range(100):
        s.record(200, 0, 0, 100.0 if i < 10 else 1.0, 5.0)  # 90 fast requests, 10 slow ones

    def quantiles(now: float) -> dict[str, float]:
        return {
            x.labels["quantile"]: x.value
            for x in m.samples(now)
            if x.name == "gate_request_duration_ms" and x.labels["route"] == "a.test"
        }

    q = quantiles(6.0)
    assert 1.0 <= q["0.5"] < 1.2 and 90 < q["0.95"] < 115 and 100.0 <= q["0.99"] < 115
    assert quantiles(100.0) == {}  # nothing in the last 30 s: no made-up figures


def test_shared_cells_feed_total_route_and_target_latency():
    from gate.metrics import record_request

    m = GateMetrics()
    route, a, b = m.route("r"), m.target("h:1"), m.target("h:2")
    for _ in range(3):
        record_request((m.total, route, a), m.cell("r", "h:1"), 200, 1, 2, 1.0, 5.0)
    record_request((m.total, route, b), m.cell("r", "h:2"), 502, 0, 0, 100.0, 5.0)
    record_request((m.total, route), m.cell("r", None), 404, 0, 0, 0.1, 5.0)
    record_request((m.total,), m.cell(None, None), 400, 0, 0, 0.1, 5.0)
    snap = m.snapshot(6.0)
    assert snap["total"]["latency_ms"]["count"] == 6 and snap["total"]["requests"] == 6
    assert snap["routes"]["r"]["latency_ms"]["count"] == 5 and snap["routes"]["r"]["status"]["5xx"] == 1
    assert snap["targets"]["h:1"]["latency_ms"]["count"] == 3 and snap["targets"]["h:1"]["latency_ms"]["p99"] < 2
    assert snap["targets"]["h:2"]["latency_ms"]["count"] == 1 and snap["targets"]["h:2"]["latency_ms"]["p50"] >= 100
    assert m.cell("r", "h:1") is m.cell("r", "h:1") and m.cell(None, None) is m.total.latency
