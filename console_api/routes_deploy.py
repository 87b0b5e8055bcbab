"""Routes of orch's deploys: releases and their diffs, deploy, rollback, deployment records."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from console_api.api import Api, ApiRequest
from console_api.schemas_deploy import Deployment, DeploymentStarted, Release, ReleaseDiff
from core.errors import BadRequest


class DeployBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str | None = Field(default=None, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$",
                                description="the release's ${version} label")
    artifact_id: str | None = Field(default=None, max_length=128, description="an uploaded artifact's id")
    overrides: dict[str, Any] | None = Field(default=None, description="spec fields to change in this release")


class RollbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: int | None = Field(default=None, ge=1, description="the release to re-apply (default: the previous one)")


def _int(value: str | None, what: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        n = int(value)
    except ValueError:
        raise BadRequest(f"{what} must be a release number, not {value!r}") from None
    if n < 1:
        raise BadRequest(f"{what} must be 1 or more")
    return n


def register(api: Api, orch: Any) -> None:
    """`orch` is an `orch.service.OrchService`."""

    @api.route("GET", "/api/services/{name}/releases", summary="A service's releases, newest first, with what "
               "each changed", tag="orch", returns=list[Release])
    async def releases(req: ApiRequest) -> list[dict[str, Any]]:
        return await orch.releases(req.match["name"])

    @api.route("GET", "/api/services/{name}/diff", summary="What changed between two releases", tag="orch",
               query={"from": "release number (default: the one before `to`)",
                      "to": "release number (default: the serving one)"}, returns=ReleaseDiff)
    async def release_diff(req: ApiRequest) -> dict[str, Any]:
        return await orch.diff(req.match["name"], _int(req.query.get("from"), "from"), _int(req.query.get("to"), "to"))

    @api.route("POST", "/api/services/{name}/deploy", summary="Deploy a new release (rolling by default); "
               "answers 202 at once with the deployment to poll", role="admin", body=DeployBody,
               action="service.deploy", tag="orch", clients="path", returns=DeploymentStarted)
    async def deploy(req: ApiRequest) -> web.Response:
        name = req.match["name"]
        body: DeployBody = req.body or DeployBody()
        req.audit(f"service:{name}")
        started = await orch.deploy(name, version=body.version, artifact_id=body.artifact_id,
                                    overrides=body.overrides, actor=req.require().username)
        req.audit(f"service:{name}", after=started)
        return web.Response(status=202, text=json.dumps(started), content_type="application/json")

    @api.route("POST", "/api/services/{name}/rollback", summary="Re-apply an earlier release through the same "
               "rolling path", role="admin", body=RollbackBody, action="service.rollback", tag="orch",
               returns=DeploymentStarted)
    async def rollback(req: ApiRequest) -> web.Response:
        name = req.match["name"]
        body: RollbackBody = req.body or RollbackBody()
        req.audit(f"service:{name}")
        started = await orch.rollback(name, to=body.to, actor=req.require().username)
        req.audit(f"service:{name}", after=started)
        return web.Response(status=202, text=json.dumps(started), content_type="application/json")

    @api.route("GET", "/api/deployments", summary="Deployments, newest first", tag="orch",
               query={"service": "only this service's"}, returns=list[Deployment])
    async def deployments(req: ApiRequest) -> list[dict[str, Any]]:
        return await orch.deployments(req.query.get("service") or None)

    @api.route("GET", "/api/deployments/{id:\\d+}", summary="One deployment: status, phases, step log", tag="orch",
               clients="handler", returns=Deployment)
    async def deployment(req: ApiRequest) -> dict[str, Any]:
        dep = await orch.deployment(int(req.match["id"]))
        req.authorize_service(dep["service"])  # a CI client sees only its own services' deployments
        return dep
