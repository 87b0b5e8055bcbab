"""Console API routes of the gate: `/api/routes` CRUD (PATCH for partial edits) and `/api/gate/metrics`.
Saving a route answers it with `warnings` about its upstreams (the gate's check, with what fsctl wired)."""

from __future__ import annotations

from typing import Any

from console_api.api import Api, ApiRequest
from core.errors import BadRequest
from gate import GateService, Route, RoutePatch, RouteSpec, route_payload


def register(api: Api, gate: GateService) -> None:
    @api.route("GET", "/api/routes", summary="List the gate's routes", tag="gate")
    async def routes_list(req: ApiRequest) -> list[dict[str, Any]]:
        return [
            {**_for(req, route_payload(r)), "certificate": gate.certificate_for(r.spec.host)} for r in gate.routes()
        ]

    @api.route(
        "POST",
        "/api/routes",
        summary="Add a route; the new table applies at once",
        role="admin",
        body=RouteSpec,
        action="route.add",
        tag="gate",
    )
    async def routes_add(req: ApiRequest) -> dict[str, Any]:
        spec: RouteSpec = req.body
        req.audit(f"route:{spec.host}{spec.path}")
        route = await gate.add_route(spec)
        out = route_payload(route)
        req.audit(f"route:{route.id}", after=_hide_hashes(out))
        return {**out, "warnings": await gate.upstream_warnings(route.spec)}

    @api.route("GET", "/api/routes/{ref:.+}", summary="One route, by id or host[/path]", tag="gate")
    async def routes_get(req: ApiRequest) -> dict[str, Any]:
        route = gate.find_route(_ref(req))
        return {**_for(req, route_payload(route)), "certificate": gate.certificate_for(route.spec.host)}

    @api.route(
        "PUT",
        "/api/routes/{id:\\d+}",
        summary="Replace a route's spec",
        role="admin",
        body=RouteSpec,
        action="route.update",
        tag="gate",
    )
    async def routes_put(req: ApiRequest) -> dict[str, Any]:
        route_id = int(req.match["id"])
        req.audit(f"route:{route_id}")
        before, after = await gate.update_route(route_id, req.body)
        return await _saved(gate, req, before, after)

    @api.route(
        "PATCH",
        "/api/routes/{id:\\d+}",
        summary="Change some of a route's fields (merge patch: null = default)",
        role="admin",
        body=RoutePatch,
        action="route.update",
        tag="gate",
    )
    async def routes_patch(req: ApiRequest) -> dict[str, Any]:
        route_id = int(req.match["id"])
        req.audit(f"route:{route_id}")
        before, after = await gate.patch_route(route_id, req.body.model_dump(exclude_unset=True))
        return await _saved(gate, req, before, after)

    @api.route(
        "DELETE",
        "/api/routes/{ref:.+}",
        summary="Remove a route, by id or host[/path]",
        role="admin",
        action="route.remove",
        tag="gate",
    )
    async def routes_delete(req: ApiRequest) -> dict[str, Any]:
        route = gate.find_route(_ref(req))
        req.audit(f"route:{route.id}")
        removed = await gate.remove_route(route.id)
        out = route_payload(removed)
        req.audit(f"route:{route.id}", before=_hide_hashes(out))
        return out

    @api.route(
        "GET",
        "/api/gate/metrics",
        summary="Gate request metrics per route and upstream target",
        query={"window_s": "span for latency quantiles (default 60)"},
        tag="gate",
    )
    async def gate_metrics(req: ApiRequest) -> dict[str, Any]:
        raw = req.query.get("window_s", "60")
        try:
            span = float(raw)
        except ValueError:
            raise BadRequest(f"window_s must be a number of seconds, not {raw!r}") from None
        if not 1 <= span <= 300:
            raise BadRequest("window_s must be between 1 and 300")
        return gate.metrics(span)


async def _saved(gate: GateService, req: ApiRequest, before: Route, after: Route) -> dict[str, Any]:
    """An updated route for the audit log and the answer, with warnings when its upstreams changed."""
    out = route_payload(after)
    req.audit(f"route:{after.id}", before=_hide_hashes(route_payload(before)), after=_hide_hashes(out))
    changed = before.spec.upstreams != after.spec.upstreams
    return {**out, "warnings": await gate.upstream_warnings(after.spec) if changed else []}


def _ref(req: ApiRequest) -> str:
    return req.match["ref"]


def _hide_hashes(payload: dict[str, Any]) -> dict[str, Any]:
    """The route without its basic-auth password hashes (for viewers and for the audit log)."""
    users = payload.get("policies", {}).get("basic_auth") or []
    if not users:
        return payload
    hidden = [{**u, "bcrypt_hash": "[hidden]"} for u in users]
    return {**payload, "policies": {**payload["policies"], "basic_auth": hidden}}


def _for(req: ApiRequest, payload: dict[str, Any]) -> dict[str, Any]:
    """Admins see the full spec (it round-trips through PUT); viewers never see password hashes."""
    p = req.principal
    return payload if p is not None and p.role == "admin" else _hide_hashes(payload)
