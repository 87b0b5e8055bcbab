"""Routes of CI client credentials: admins create, list and revoke clients; a client exchanges its id
and secret for a short-lived token (`POST /api/auth/client-token`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from console_api.api import Api, ApiRequest
from console_api.schemas_deploy import Client, ClientCreated, ClientToken
from core.clients import ClientRegistry


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClientCreateBody(_Body):
    name: str = Field(min_length=1, max_length=64)
    services: list[str] = Field(min_length=1, max_length=100, description="services it may deploy")
    ip_allowlist: list[str] = Field(
        min_length=1, max_length=100, description="CIDRs it may be used from (0.0.0.0/0 and ::/0: anywhere)"
    )


class ClientTokenBody(_Body):
    client_id: str = Field(min_length=1, max_length=64)
    client_secret: str = Field(min_length=1, max_length=256)


def register(api: Api, clients: ClientRegistry) -> None:
    @api.route(
        "GET", "/api/clients", summary="List CI clients (never their secrets)", role="admin", returns=list[Client]
    )
    async def clients_list(req: ApiRequest) -> list[dict[str, Any]]:
        return await clients.list()

    @api.route(
        "POST",
        "/api/clients",
        summary="Create a CI client; its secret is in `client_secret`, shown once",
        role="admin",
        body=ClientCreateBody,
        action="client.create",
        returns=ClientCreated,
    )
    async def clients_create(req: ApiRequest) -> dict[str, Any]:
        body: ClientCreateBody = req.body
        req.audit(f"client:{body.name}")
        secret, record = await clients.create(body.name, body.services, body.ip_allowlist, actor=req.require().username)
        req.audit(f"client:{record['client_id']}", after=record)
        return {**record, "client_secret": secret}

    @api.route(
        "DELETE",
        "/api/clients/{client_id}",
        summary="Revoke a CI client; its tokens stop working",
        role="admin",
        action="client.revoke",
        returns=Client,
    )
    async def clients_revoke(req: ApiRequest) -> dict[str, Any]:
        client_id = req.match["client_id"]
        req.audit(f"client:{client_id}")
        before = await clients.revoke(client_id)
        after = await clients.get(client_id)
        req.audit(f"client:{client_id}", before=before, after=after)
        return after

    @api.route(
        "POST",
        "/api/auth/client-token",
        summary="Exchange a CI client's id and secret for a short-lived "
        "token (upload artifacts, deploy and poll its services only)",
        role=None,
        body=ClientTokenBody,
        action="auth.client_token",
        returns=ClientToken,
    )
    async def client_token(req: ApiRequest) -> dict[str, Any]:
        body: ClientTokenBody = req.body
        req.audit(f"client:{body.client_id}")
        token, expires_at, principal = await clients.exchange(body.client_id, body.client_secret, req.client_ip)
        req.principal = principal
        return {
            "token": token,
            "token_type": "Bearer",
            "expires_at": expires_at,
            "expires_in_s": int(clients.token_ttl_s),
            "client_id": body.client_id,
            "name": principal.username.removeprefix("client:"),
            "services": sorted(principal.services or ()),
        }
