"""Routes of orch's deploys: releases and their diffs, deploy, rollback, deployment records."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from console_api.api import Api, ApiRequest, parse_int
from console_api.schemas_deploy import Deployment, DeploymentStarted, Release, ReleaseDiff
from core.errors import Forbidden, NotFound
from orch import VERSION_RE, VERSION_RULE

if TYPE_CHECKING:  # the component's public face (see console_api/__init__.py)
    from orch import OrchService


class DeployBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str | None = Field(
        default=None,
        max_length=128,
        pattern=VERSION_RE.pattern,
        description=f"the release's ${{version}} label: {VERSION_RULE}",
    )
    artifact_id: str | None = Field(default=None, max_length=128, description="an uploaded artifact's id")
    overrides: dict[str, Any] | None = Field(default=None, description="spec fields to change in this release")


class RollbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: int | None = Field(default=None, ge=1, description="the release to re-apply (default: the previous one)")


async def _check_client_deploy(orch: OrchService, name: str, body: DeployBody) -> None:
    """A CI client deploys an artifact uploaded for this service into the spec an admin applied: it may not
    change the spec (a new `cmd`, `user` or `image` would run what no admin approved), nor run another
    service's artifact under this service's name."""
    if body.overrides:
        raise Forbidden(
            "a CI client cannot change a service's spec: `overrides` need an admin",
            code="client_scope",
            hint="apply the spec change as an admin, then deploy artifacts",
        )
    if body.artifact_id is not None and orch.artifacts is not None:
        try:
            owners = await orch.artifacts.services_of(body.artifact_id)
        except NotFound:
            owners = set()
        if name not in owners:
            raise Forbidden(
                f"artifact {body.artifact_id[:12]} was not uploaded for {name!r}",
                code="client_scope",
                hint=f"upload it with ?service={name}",
            )


def register(api: Api, orch: OrchService) -> None:
    """The routes over `OrchService`'s public methods."""

    @api.route(
        "GET",
        "/api/services/{name}/releases",
        summary="A service's releases, newest first, with what each changed",
        tag="orch",
        returns=list[Release],
    )
    async def releases(req: ApiRequest) -> list[dict[str, Any]]:
        return await orch.releases(req.match["name"])

    @api.route(
        "GET",
        "/api/services/{name}/diff",
        summary="What changed between two releases",
        tag="orch",
        query={
            "from": "release number (default: the one before `to`)",
            "to": "release number (default: the serving one)",
        },
        returns=ReleaseDiff,
    )
    async def release_diff(req: ApiRequest) -> dict[str, Any]:
        return await orch.diff(
            req.match["name"],
            parse_int(req.query.get("from"), "from", None, 1, None),
            parse_int(req.query.get("to"), "to", None, 1, None),
        )

    @api.route(
        "POST",
        "/api/services/{name}/deploy",
        summary="Deploy a new release (rolling by default); answers 202 at once with the deployment to poll",
        role="admin",
        body=DeployBody,
        action="service.deploy",
        tag="orch",
        clients="path",
        returns=DeploymentStarted,
    )
    async def deploy(req: ApiRequest) -> web.Response:
        name = req.match["name"]
        body: DeployBody = req.body or DeployBody()
        req.audit(f"service:{name}")
        principal = req.require()
        if principal.scoped:
            await _check_client_deploy(orch, name, body)
        started = await orch.deploy(
            name, version=body.version, artifact_id=body.artifact_id, overrides=body.overrides, actor=principal.username
        )
        # What the overrides changed, old → new per field (secrets as the release history shows them).
        changes = await orch.deploy_changes(started["deployment_id"], body.overrides) if body.overrides else {}
        req.audit(
            f"service:{name}",
            before={"overrides": {f: c["from"] for f, c in changes.items()}} if changes else None,
            after={**started, "overrides": {f: c["to"] for f, c in changes.items()}} if changes else started,
        )
        return web.Response(status=202, text=json.dumps(started), content_type="application/json")

    @api.route(
        "POST",
        "/api/services/{name}/rollback",
        summary="Re-apply an earlier release through the same rolling path",
        role="admin",
        body=RollbackBody,
        action="service.rollback",
        tag="orch",
        returns=DeploymentStarted,
    )
    async def rollback(req: ApiRequest) -> web.Response:
        name = req.match["name"]
        body: RollbackBody = req.body or RollbackBody()
        req.audit(f"service:{name}")
        started = await orch.rollback(name, to=body.to, actor=req.require().username)
        req.audit(f"service:{name}", after=started)
        return web.Response(status=202, text=json.dumps(started), content_type="application/json")

    @api.route(
        "GET",
        "/api/deployments",
        summary="Deployments, newest first",
        tag="orch",
        query={"service": "only this service's"},
        returns=list[Deployment],
    )
    async def deployments(req: ApiRequest) -> list[dict[str, Any]]:
        return await orch.deployments(req.query.get("service") or None)

    @api.route(
        "GET",
        "/api/deployments/{id:\\d+}",
        summary="One deployment: status, phases, step log",
        tag="orch",
        clients="handler",
        returns=Deployment,
    )
    async def deployment(req: ApiRequest) -> dict[str, Any]:
        dep = await orch.deployment(int(req.match["id"]))
        req.authorize_service(dep["service"])  # a CI client sees only its own services' deployments
        return dep
