"""Routes of orch: services — apply a spec (YAML), list, get, status, versions, start, stop, restart, delete."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from console_api.api import Api, ApiRequest
from core.errors import BadRequest

if TYPE_CHECKING:  # the component's public face (see console_api/__init__.py)
    from orch import OrchService

_YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")


async def _spec_body(req: ApiRequest) -> tuple[str | dict[str, Any], str]:
    """The spec from the body: YAML text (`Content-Type: application/yaml`), or JSON — either
    `{"yaml": "...", "filename": "hello.yaml"}` or the spec itself as an object."""
    raw = await req.raw.read()
    if not raw.strip():
        raise BadRequest(
            "a service spec is required in the body",
            hint='send YAML as application/yaml, or JSON {"yaml": ..., "filename": ...}',
        )
    ctype = req.raw.content_type
    filename = req.query.get("filename") or "spec.yaml"
    try:
        text = raw.decode()
    except UnicodeDecodeError as e:
        raise BadRequest("the spec is not UTF-8 text") from e
    if ctype in _YAML_TYPES:
        return text, filename
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadRequest(
            f"the body is not valid JSON at line {e.lineno} column {e.colno}",
            hint="send YAML with Content-Type: application/yaml",
        ) from e
    if isinstance(data, dict) and isinstance(data.get("yaml"), str) and set(data) <= {"yaml", "filename"}:
        return data["yaml"], str(data.get("filename") or filename)
    if isinstance(data, dict):
        return data, filename if filename != "spec.yaml" else "(request)"
    raise BadRequest('the body must be a spec object or {"yaml": ..., "filename": ...}')


def register(api: Api, orch: OrchService) -> None:
    """The routes over `OrchService`'s public methods."""

    @api.route("GET", "/api/services", summary="List services with their status", tag="orch")
    async def services_list(req: ApiRequest) -> list[dict[str, Any]]:
        return orch.list()

    @api.route(
        "POST",
        "/api/services",
        summary="Apply a service spec (YAML or JSON): create or update",
        role="admin",
        action="service.apply",
        tag="orch",
        query={"filename": "name to use in error messages (default spec.yaml)"},
    )
    async def services_apply(req: ApiRequest) -> dict[str, Any]:
        source, filename = await _spec_body(req)
        name = source.get("name") if isinstance(source, dict) else None
        req.audit(f"service:{name}" if name else "service")
        p = req.require()
        result = await orch.apply(source, filename, actor=p.username)
        before = None
        if result.get("changed") and result["version"] > 1:
            before = {"version": result["version"] - 1}
        req.audit(
            f"service:{result['name']}", before=before, after={"version": result["version"], "spec": result["spec"]}
        )
        return result

    @api.route(
        "GET",
        "/api/services/{name}",
        summary="A service: spec, status, instances, restarts, last exit, health history",
        tag="orch",
    )
    async def services_get(req: ApiRequest) -> dict[str, Any]:
        return orch.describe(req.match["name"])

    @api.route("GET", "/api/services/{name}/status", summary="A service's status only", tag="orch")
    async def services_status(req: ApiRequest) -> dict[str, Any]:
        d = orch.describe(req.match["name"])
        return {
            k: d[k]
            for k in (
                "name",
                "version",
                "desired",
                "status",
                "reason",
                "healthy",
                "replicas",
                "restarts",
                "last_exit",
                "endpoints",
            )
        }

    @api.route("GET", "/api/services/{name}/versions", summary="Every applied version of a service's spec", tag="orch")
    async def services_versions(req: ApiRequest) -> list[dict[str, Any]]:
        return await orch.versions(req.match["name"])

    @api.route(
        "POST",
        "/api/services/{name}/start",
        summary="Start a service (clears back-off and give-up)",
        role="admin",
        action="service.start",
        tag="orch",
    )
    async def services_start(req: ApiRequest) -> dict[str, Any]:
        name = req.match["name"]
        req.audit(f"service:{name}")
        d = await orch.start_service(name)
        req.audit(f"service:{name}", after={"desired": d["desired"]})
        return d

    @api.route(
        "POST",
        "/api/services/{name}/stop",
        summary="Stop a service and wait until it is stopped",
        role="admin",
        action="service.stop",
        tag="orch",
    )
    async def services_stop(req: ApiRequest) -> dict[str, Any]:
        name = req.match["name"]
        req.audit(f"service:{name}")
        d = await orch.stop_service(name)
        req.audit(f"service:{name}", after={"desired": d["desired"]})
        return d

    @api.route(
        "POST",
        "/api/services/{name}/restart",
        summary="Restart every instance of a service",
        role="admin",
        action="service.restart",
        tag="orch",
    )
    async def services_restart(req: ApiRequest) -> dict[str, Any]:
        name = req.match["name"]
        req.audit(f"service:{name}")
        return await orch.restart_service(name)

    @api.route(
        "DELETE",
        "/api/services/{name}",
        summary="Stop a service, then remove it (its spec history stays)",
        role="admin",
        action="service.remove",
        tag="orch",
        query={"volumes": "1: remove its named container volumes too (kept by default)"},
    )
    async def services_delete(req: ApiRequest) -> dict[str, Any]:
        name = req.match["name"]
        req.audit(f"service:{name}")
        before = await orch.delete(name, volumes=req.query.get("volumes") in ("1", "true"))
        req.audit(f"service:{name}", before={"version": before["version"], "spec": before["spec"]})
        return {"name": name, "removed": True}

    @api.route("GET", "/api/orch/limits", summary="How resource limits are enforced on this host", tag="orch")
    async def orch_limits(req: ApiRequest) -> dict[str, Any]:
        return orch.limits()
