"""A real `fsctl serve`: the probe collects, `/api/metrics/query` and `/metrics` answer (the latter to a
viewer token, as Prometheus would send it), and `fsctl metrics` / `fsctl alert` work against it."""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import httpx
import pytest

from tests.probe.test_exposition import parse


def _poll(fn: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.2)


def test_serve_collects_and_exposes_metrics(server_factory: Any) -> None:
    srv = server_factory()
    tok = srv.api("POST", "/api/tokens", json={"name": "prometheus", "role": "viewer"})
    assert tok.status_code == 200, tok.text
    viewer = tok.json()["token"]

    def cpu_points() -> list:
        r = srv.api("GET", "/api/metrics/query?name=host_cpu_percent&labels=cpu=total&from=5m&step=1", token=viewer)
        assert r.status_code == 200, r.text
        series = r.json()["series"]
        return series[0]["points"] if series else []

    points = _poll(lambda: len(cpu_points()) >= 2 and cpu_points(), 20, "two host CPU points")
    assert all(0 <= p[1] <= 100 for p in points)

    # The gate's request-duration quantiles are stored like any other series (here: requests the gate
    # answers itself, for a host with no route, under the all-routes label "*").
    for _ in range(5):
        assert httpx.get(f"http://127.0.0.1:{srv.http_port}/", headers={"Host": "nobody.test"}).status_code == 404

    def p99_points() -> list:
        r = srv.api(
            "GET",
            "/api/metrics/query?name=gate_request_duration_ms&labels=route=*,quantile=0.99&from=5m&step=1",
            token=viewer,
        )
        assert r.status_code == 200, r.text
        series = r.json()["series"]
        return series[0]["points"] if series else []

    latency = _poll(p99_points, 20, "the gate's p99 request duration")
    assert all(0 < p[1] < 5000 for p in latency)

    # Prometheus text to a bearer token; nothing without one.
    assert httpx.get(f"{srv.url}/metrics").status_code == 401
    r = httpx.get(f"{srv.url}/metrics", headers={"Authorization": f"Bearer {viewer}"})
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    fams = parse(r.text)
    assert fams["host_cpu_percent"][0] == "gauge"
    assert fams["probe_ticks_total"][0] == "counter" and fams["probe_ticks_total"][1][0][1] >= 1
    assert "host_memory_used_bytes" in fams and "host_load1" in fams
    assert fams["gate_request_duration_ms"][0] == "gauge"
    try:  # the reference parser, where installed (not a project dependency)
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        pass
    else:
        names = {f.name for f in text_string_to_metric_families(r.text)}
        assert {"host_cpu_percent", "probe_ticks", "host_load1"} <= names

    # `since` (and `until`) as the log API takes them, not silently the default hour
    r = srv.api("GET", "/api/metrics/query?name=host_cpu_percent&labels=cpu=total&since=10m&step=1", token=viewer)
    assert r.status_code == 200, r.text
    assert abs(r.json()["to"] - r.json()["from"] - 600) <= 2, r.json()
    assert all(p[0] >= r.json()["from"] for p in r.json()["series"][0]["points"])
    r = srv.api("GET", "/api/metrics/query?name=host_load1&since=-1h30m&until=-1h&step=60", token=viewer)
    assert r.status_code == 200, r.text
    assert math.isclose(r.json()["to"] - r.json()["from"], 1800, abs_tol=61), r.json()
    top = srv.api("GET", "/api/metrics/top?name=host_load1&by=cpu&since=10m", token=viewer).json()
    assert abs(top["to"] - top["from"] - 600) <= 1, top
    sm = srv.api("GET", "/api/services/none/metrics?since=2m&step=1", token=viewer).json()
    assert abs(sm["to"] - sm["from"] - 120) <= 2, sm
    both = srv.api("GET", "/api/metrics/query?name=host_load1&from=1h&since=10m", token=viewer)
    assert both.status_code == 400 and "from and since are the same parameter" in both.json()["error"]["message"]
    bad = srv.api("GET", "/api/metrics/query?name=host_load1&since=10minutes", token=viewer)
    assert bad.status_code == 400 and "since='10minutes' is not a time" in bad.json()["error"]["message"]
    backwards = srv.api("GET", "/api/metrics/query?name=host_load1&since=10m&until=20m", token=viewer)
    assert backwards.status_code == 400 and "is not before" in backwards.json()["error"]["message"]

    # precise errors for bad parameters
    bad = srv.api("GET", "/api/metrics/query?name=host_load1&from=yesterday-ish", token=viewer)
    assert bad.status_code == 400 and "from='yesterday-ish' is not a time" in bad.json()["error"]["message"]
    bad = srv.api("GET", "/api/metrics/query?name=host_load1&labels=oops", token=viewer)
    assert bad.status_code == 400 and "label filter" in bad.json()["error"]["message"]
    bad = srv.api("GET", "/api/metrics/top?n=zero", token=viewer)
    assert bad.status_code == 400
    # a viewer cannot add alert rules
    denied = srv.api(
        "POST", "/api/alerts/rules", token=viewer, json={"name": "x", "metric": "host_load1", "op": ">", "threshold": 1}
    )
    assert denied.status_code == 403

    # the CLI
    out = srv.fsctl("metrics", "host_cpu_percent", "--labels", "cpu=total", "--since", "5m")
    assert out.returncode == 0, out.stderr
    assert "host_cpu_percent{cpu=total}" in out.stdout and any(c in out.stdout for c in "▁▂▃▄▅▆▇█")
    out = srv.fsctl("metrics")
    assert out.returncode == 0, out.stderr
    assert "host_load1" in out.stdout
    out = srv.fsctl("metrics", "no_such_metric")
    assert out.returncode == 1 and "no data for no_such_metric" in out.stderr
    out = srv.fsctl(
        "alert", "add", "--name", "busy", "--metric", "host_load1", "--op", ">", "--threshold", "1000", "--for", "1m"
    )
    assert out.returncode == 0, out.stderr
    assert "host_load1 > 1000 for 60s" in out.stdout
    out = srv.fsctl("alert", "add", "--name", "bad", "--metric", "host load", "--threshold", "1")
    assert out.returncode == 1 and "not a metric name" in out.stderr
    out = srv.fsctl("alert", "ls")
    assert out.returncode == 0 and "busy" in out.stdout
    rules = srv.api("GET", "/api/alerts/rules").json()
    put = srv.api(
        "PUT",
        f"/api/alerts/rules/{rules[0]['id']}",
        json={"name": "busy", "metric": "host_load1", "op": ">=", "threshold": 2000, "for": "2m"},
    )
    assert put.status_code == 200, put.text
    assert (put.json()["threshold"], put.json()["for_s"], put.json()["op"]) == (2000, 120, ">=")
    assert srv.api("GET", "/api/alerts/rules/busy").json()["threshold"] == 2000
    missing = srv.api("DELETE", "/api/alerts/rules/nope")
    assert missing.status_code == 404 and "no alert rule 'nope'" in missing.json()["error"]["message"]
    typo = srv.api(
        "POST", "/api/alerts/rules", json={"name": "t", "metric": "m", "op": ">", "threshold": 1, "treshold": 2}
    )
    assert typo.status_code == 400 and "treshold" in typo.json()["error"]["message"]
    assert srv.api("GET", "/api/alerts").json() == {"active": [], "recent": []}
    out = srv.fsctl("alert", "rm", "busy")
    assert out.returncode == 0 and "removed alert rule" in out.stdout
    assert srv.api("GET", "/api/alerts/rules").json() == []
    audit = srv.api("GET", "/api/audit?action=alert.rule.add").json()
    assert any(a["target"] == "alert-rule:busy" and a["outcome"] == "ok" for a in audit), audit
    assert srv.stop() == 0
    assert (srv.data_dir / "metrics.db").exists()


def test_a_service_run_by_orch_shows_up_in_its_metrics(server_factory: Any) -> None:
    srv = server_factory()
    spec = {"name": "burner", "cmd": [sys.executable, "-c", "while True: pass"], "restart_policy": "no"}
    r = srv.api("POST", "/api/services", json=spec)
    if r.status_code == 404:
        pytest.skip("orch is not wired in this build")
    assert r.status_code == 200, r.text

    def burning() -> list:
        r = srv.api("GET", "/api/services/burner/metrics?from=1m&step=1")
        assert r.status_code == 200, r.text
        pts = r.json()["metrics"].get("service_cpu_percent", [{}])[0].get("points", [])
        return pts if pts and pts[-1][1] > 5 else []

    try:
        _poll(burning, 20, "burner's CPU in /api/services/burner/metrics")
        top = srv.api("GET", "/api/metrics/top?name=cpu&by=service&n=5&from=1m").json()
        assert top["top"][0]["service"] == "burner", top
        out = srv.fsctl("metrics", "--top", "5", "--since", "1m")
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines()[1].startswith("burner"), out.stdout
        rss = srv.api("GET", "/api/metrics/query?name=service_rss_bytes&labels=service=burner&from=1m").json()
        assert rss["series"] and rss["series"][0]["points"][-1][1] > 1024 * 1024
    finally:
        srv.api("POST", "/api/services/burner/stop")

    # orch tells probe about the stopped service too: service_up goes to 0 rather than vanishing
    def up() -> float | None:
        text = httpx.get(f"{srv.url}/metrics", headers={"Authorization": f"Bearer {srv.login()}"}).text
        values = [
            v for series, v in parse(text).get("service_up", ("", []))[1] if series == 'service_up{service="burner"}'
        ]
        return values[0] if values else None

    _poll(lambda: up() == 0.0, 20, "service_up{service=burner} 0 in /metrics after the stop")
