"""Routes of certd: list certificates with expiry and status, issue now, renew now, import, delete."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from console_api.api import Api, ApiRequest

if TYPE_CHECKING:  # the component's public face (see console_api/__init__.py)
    from certd import CertdService


class IssueBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=253, description="the certificate's first DNS name")
    also: list[str] = Field(default_factory=list, max_length=99, description="more DNS names (SANs)")


class ImportBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cert_pem: str = Field(min_length=1, max_length=256 * 1024, description="full chain, leaf first (PEM)")
    key_pem: str = Field(min_length=1, max_length=64 * 1024, description="the leaf's private key (PEM)")


def register(api: Api, certd: CertdService) -> None:
    """The routes over `CertdService`'s public methods."""

    @api.route("GET", "/api/certs", summary="Certificates with their names, expiry and status", tag="certd")
    async def certs_list(req: ApiRequest) -> list[dict[str, Any]]:
        return await certd.list()

    @api.route("GET", "/api/certs/{name}", summary="One certificate", tag="certd")
    async def certs_get(req: ApiRequest) -> dict[str, Any]:
        return await certd.get(req.match["name"])

    @api.route(
        "POST",
        "/api/certs",
        summary="Order a certificate now (ACME HTTP-01); waits for the outcome",
        role="admin",
        body=IssueBody,
        action="cert.issue",
        tag="certd",
    )
    async def certs_issue(req: ApiRequest) -> dict[str, Any]:
        body: IssueBody = req.body
        req.audit(f"cert:{body.name}")
        after = await certd.issue(body.name, body.also)
        req.audit(f"cert:{after['name']}", after=_brief(after))
        return after

    @api.route(
        "POST",
        "/api/certs/{name}/renew",
        summary="Renew a certificate now; the current one stays on failure",
        role="admin",
        action="cert.renew",
        tag="certd",
    )
    async def certs_renew(req: ApiRequest) -> dict[str, Any]:
        name = req.match["name"]
        req.audit(f"cert:{name}")
        before = await certd.get(name)
        after = await certd.renew(name)
        req.audit(f"cert:{after['name']}", before=_brief(before), after=_brief(after))
        return after

    @api.route(
        "POST",
        "/api/certs/import",
        summary="Import a certificate (full chain) and its key",
        role="admin",
        body=ImportBody,
        action="cert.import",
        tag="certd",
    )
    async def certs_import(req: ApiRequest) -> dict[str, Any]:
        body: ImportBody = req.body
        after = await certd.import_pair(body.cert_pem, body.key_pem)  # the key never goes to the audit log
        req.audit(f"cert:{after['name']}", after=_brief(after))
        return after

    @api.route(
        "DELETE",
        "/api/certs/{name}",
        summary="Stop serving a certificate and delete it",
        role="admin",
        action="cert.remove",
        tag="certd",
    )
    async def certs_remove(req: ApiRequest) -> dict[str, Any]:
        name = req.match["name"]
        req.audit(f"cert:{name}")
        before = await certd.delete(name)
        req.audit(f"cert:{before['name']}", before=_brief(before))
        return before


def _brief(cert: dict[str, Any]) -> dict[str, Any]:
    return {k: cert.get(k) for k in ("names", "source", "serial", "issuer", "not_after", "status")}
