"""Routes of the artifact store: streamed upload, list, get, and what is unpacked for a service. CI client
tokens may use them for their own services."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from console_api.api import Api, ApiRequest
from console_api.schemas_deploy import Artifact, ArtifactInstall, ArtifactUploaded
from core.clients import service_refused
from core.errors import BadRequest

if TYPE_CHECKING:  # the component's public face (see console_api/__init__.py)
    from orch import ArtifactStore

UPLOAD_CHUNK = 256 * 1024


def register(api: Api, artifacts: ArtifactStore) -> None:
    """The routes over `ArtifactStore`'s public methods."""

    @api.route(
        "POST",
        "/api/artifacts",
        summary="Upload an artifact (tar.gz / tar, unpacked at install, or a "
        "single file) as the raw body, streamed; stored by SHA-256",
        role="admin",
        action="artifact.upload",
        tag="orch",
        clients="handler",
        returns=ArtifactUploaded,
        query={
            "service": "the service it is for (required with a client token)",
            "filename": "its file name (a single file is installed under it; default `artifact`)",
            "sha256": "the expected SHA-256, hex (or the X-Content-SHA256 header): a mismatch is a 400",
        },
    )
    async def artifacts_upload(req: ApiRequest) -> dict[str, Any]:
        p = req.require()
        service = req.query.get("service") or None
        if service is not None:
            req.authorize_service(service)
        elif p.scoped:
            raise BadRequest(
                "a client token must name the service the artifact is for: ?service=NAME", details={"field": "service"}
            )
        rec = await artifacts.receive(
            req.raw.content.iter_chunked(UPLOAD_CHUNK),
            content_length=req.raw.content_length,
            expected_sha256=req.raw.headers.get("X-Content-SHA256") or req.query.get("sha256"),
            filename=req.query.get("filename") or req.raw.headers.get("X-Filename") or "artifact",
            service=service,
            actor=p.username,
        )
        req.audit(
            f"artifact:{rec['id']}",
            after={k: rec[k] for k in ("id", "kind", "size", "filename", "services", "deduplicated")},
        )
        return rec

    @api.route(
        "GET",
        "/api/artifacts",
        summary="List artifacts, newest first",
        tag="orch",
        clients="handler",
        returns=list[Artifact],
        query={"service": "only those uploaded for this service (required with a client token)"},
    )
    async def artifacts_list(req: ApiRequest) -> list[dict[str, Any]]:
        service = req.query.get("service") or None
        if service is not None:
            req.authorize_service(service)
        elif req.require().scoped:
            raise BadRequest("a client token must name its service: ?service=NAME", details={"field": "service"})
        return await artifacts.list(service)

    @api.route("GET", "/api/artifacts/{id}", summary="One artifact", tag="orch", clients="handler", returns=Artifact)
    async def artifacts_get(req: ApiRequest) -> dict[str, Any]:
        rec = await artifacts.get(req.match["id"])
        p = req.require()
        if p.scoped:
            mine = sorted(set(rec["services"]) & set(p.services or ()))
            if not mine:
                raise service_refused(p, ",".join(rec["services"]) or "(none)")
            req.authorize_service(mine[0])
        return rec

    @api.route(
        "GET",
        "/api/services/{name}/installs",
        summary="The versions of a service unpacked from artifacts into release dirs, newest first",
        tag="orch",
        clients="path",
        returns=list[ArtifactInstall],
    )
    async def service_installs(req: ApiRequest) -> list[dict[str, Any]]:
        return await artifacts.installs(req.match["name"])
