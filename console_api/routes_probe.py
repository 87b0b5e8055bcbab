"""Routes of probe: metric queries, Top-N, a service's metrics, Prometheus exposition, alert rules and alerts."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from console_api.api import Api, ApiRequest
from core.errors import BadRequest
from probe import CONTENT_TYPE, AlertRuleBody, ProbeService, parse_labels, parse_step, parse_time

_RANGE = {
    "from": "start: 'now', a duration ago (10m, 1h30m, -2h), epoch seconds or ISO 8601; default 1h ago",
    "since": "same as from",
    "to": "end (exclusive), same forms; default now",
    "until": "same as to",
    "step": "seconds between points (or 1m, 5s); picks the resolution; default about 300 points",
}


def _param(req: ApiRequest, name: str, alias: str) -> tuple[str | None, str]:
    """The value of `name` or of its `alias` (`from`/`since`, `to`/`until`, as the log API takes them)."""
    value, other = req.query.get(name), req.query.get(alias)
    if value and other:
        raise BadRequest(
            f"{name} and {alias} are the same parameter; give one of them",
            details={"field": alias},
            hint=f"drop {alias}={other!r} or {name}={value!r}",
        )
    return (value, name) if value or not other else (other, alias)


def _range(req: ApiRequest, now: float, default_span_s: float = 3600.0) -> tuple[float, float]:
    to_text, to_name = _param(req, "to", "until")
    from_text, from_name = _param(req, "from", "since")
    to_t = parse_time(to_text, now, default=now, param=to_name)
    from_t = parse_time(from_text, now, default=to_t - default_span_s, param=from_name)
    if from_t >= to_t:
        raise BadRequest(
            f"{from_name}={from_text!r} is not before {to_name}={to_text or 'now'!r}",
            details={"field": from_name},
            hint="the range's start must come before its end",
        )
    return from_t, to_t


def register(api: Api, probe: ProbeService) -> None:
    """The routes over `ProbeService`'s public methods."""

    @api.route(
        "GET",
        "/api/metrics/query",
        summary="Points of a metric's series, aligned to the step",
        tag="probe",
        query={
            "name": "metric name (or cpu, rss, connections)",
            "labels": "filter like service=web,instance=web-1",
            **_RANGE,
        },
    )
    async def metrics_query(req: ApiRequest) -> dict[str, Any]:
        now = probe.clock.now()
        from_t, to_t = _range(req, now)
        return await probe.query(
            req.query.get("name", ""),
            parse_labels(req.query.get("labels")),
            from_t,
            to_t,
            parse_step(req.query.get("step")),
        )

    @api.route("GET", "/api/metrics/names", summary="Names of the metrics stored", tag="probe")
    async def metrics_names(req: ApiRequest) -> list[str]:
        return probe.metrics.names()

    @api.route(
        "GET",
        "/api/metrics/top",
        summary="The N largest by a label (default: CPU by service, last 5 min)",
        tag="probe",
        query={
            "name": "metric (default cpu)",
            "by": "label to group by (default service)",
            "n": "how many (default 5)",
            **{k: v for k, v in _RANGE.items() if k != "step"},
        },
    )
    async def metrics_top(req: ApiRequest) -> dict[str, Any]:
        now = probe.clock.now()
        from_t, to_t = _range(req, now, 300.0)
        n_text = req.query.get("n", "5")
        if not n_text.isdigit() or not 1 <= int(n_text) <= 1000:
            raise BadRequest(f"n={n_text!r} must be a whole number from 1 to 1000")
        name = req.query.get("name", "cpu")
        by = req.query.get("by", "service")
        return {
            "name": probe.resolve_name(name),
            "by": by,
            "from": from_t,
            "to": to_t,
            "top": await probe.top(name, by, int(n_text), from_t, to_t),
        }

    @api.route(
        "GET",
        "/api/services/{id}/metrics",
        summary="A service's CPU, memory, connections and I/O series",
        tag="probe",
        query=_RANGE,
    )
    async def service_metrics(req: ApiRequest) -> dict[str, Any]:
        now = probe.clock.now()
        from_t, to_t = _range(req, now)
        return await probe.service_metrics(req.match["id"], from_t, to_t, parse_step(req.query.get("step")))

    @api.route(
        "GET",
        "/metrics",
        summary="Latest host, service and gate metrics in Prometheus text format",
        tag="probe",
        response=CONTENT_TYPE,
    )
    async def prometheus(req: ApiRequest) -> web.Response:
        return web.Response(body=probe.exposition().encode(), headers={"Content-Type": CONTENT_TYPE})

    @api.route("GET", "/api/probe/status", summary="Collector figures: ticks, points, CPU spent", tag="probe")
    async def probe_status(req: ApiRequest) -> dict[str, Any]:
        return probe.status()

    @api.route("GET", "/api/alerts", summary="Pending and firing alerts, and recent transitions", tag="probe")
    async def alerts(req: ApiRequest) -> dict[str, Any]:
        return probe.alerts()

    @api.route("GET", "/api/alerts/rules", summary="Alert rules", tag="probe")
    async def rules_list(req: ApiRequest) -> list[dict[str, Any]]:
        return await probe.rules.list()

    @api.route("GET", "/api/alerts/rules/{ref}", summary="One alert rule, by id or name", tag="probe")
    async def rules_get(req: ApiRequest) -> dict[str, Any]:
        return await probe.rules.get(req.match["ref"])

    @api.route(
        "POST",
        "/api/alerts/rules",
        summary="Add an alert rule",
        role="admin",
        body=AlertRuleBody,
        action="alert.rule.add",
        tag="probe",
    )
    async def rules_add(req: ApiRequest) -> dict[str, Any]:
        body: AlertRuleBody = req.body
        req.audit(f"alert-rule:{body.name}")
        after = await probe.add_rule(body)
        req.audit(f"alert-rule:{after['name']}", after=after)
        return after

    @api.route(
        "PUT",
        "/api/alerts/rules/{ref}",
        summary="Replace an alert rule",
        role="admin",
        body=AlertRuleBody,
        action="alert.rule.replace",
        tag="probe",
    )
    async def rules_replace(req: ApiRequest) -> dict[str, Any]:
        req.audit(f"alert-rule:{req.match['ref']}")
        before, after = await probe.replace_rule(req.match["ref"], req.body)
        req.audit(f"alert-rule:{after['name']}", before=before, after=after)
        return after

    @api.route(
        "DELETE",
        "/api/alerts/rules/{ref}",
        summary="Remove an alert rule",
        role="admin",
        action="alert.rule.remove",
        tag="probe",
    )
    async def rules_remove(req: ApiRequest) -> dict[str, Any]:
        req.audit(f"alert-rule:{req.match['ref']}")
        before = await probe.remove_rule(req.match["ref"])
        req.audit(f"alert-rule:{before['name']}", before=before)
        return before
