"""Routes of the kernel: health, status, OpenAPI, login, users, tokens, audit, and the SSE event stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from console_api import apidocs
from console_api.api import Api, ApiRequest, openapi_document, parse_int
from core.audit import AuditLog
from core.bus import Event, EventBus, Subscription
from core.errors import BadRequest
from core.identity import Identity, Principal


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginBody(_Body):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    otp: str | None = Field(
        default=None, max_length=32, description="TOTP code (or a recovery code), for users with 2FA on"
    )


class TotpConfirmBody(_Body):
    code: str = Field(min_length=6, max_length=16)


class TokenCreateBody(_Body):
    name: str = Field(min_length=1, max_length=100)
    role: Literal["admin", "viewer"] = "viewer"
    expires_in_s: int = Field(default=90 * 86400, gt=0, le=5 * 365 * 86400)


class UserAddBody(_Body):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    role: Literal["admin", "viewer"] = "viewer"


class PasswordBody(_Body):
    password: str = Field(min_length=1, max_length=1024)


@dataclass
class CoreContext:
    identity: Identity
    audit: AuditLog
    bus: EventBus
    version: str
    heartbeat_s: float = 15.0
    status: Callable[[], dict[str, Any]] = dict
    started_at: float = field(default_factory=time.time)
    streams: set[Subscription] = field(default_factory=set)

    def end_streams(self) -> None:
        for sub in list(self.streams):
            sub.close()


def register(api: Api, ctx: CoreContext) -> None:
    @api.route("GET", "/api/health", summary="Liveness: 200 when the server is up", role=None)
    async def health(req: ApiRequest) -> dict[str, Any]:
        return {"status": "ok", "version": ctx.version}

    cached: dict[str, Any] = {}  # the routes are fixed once the server runs: build the document once

    def document() -> dict[str, Any]:
        if "doc" not in cached:
            cached["doc"] = openapi_document(api, version=ctx.version)
        return cached["doc"]

    @api.route("GET", "/api/openapi.json", summary="This API's OpenAPI document", role=None)
    async def openapi(req: ApiRequest) -> dict[str, Any]:
        return document()

    @api.route("GET", "/api/docs", summary="This API's reference as an HTML page", role=None, response="text/html")
    async def docs(req: ApiRequest) -> web.Response:
        if "html" not in cached:
            cached["html"] = apidocs.render(document())
        return web.Response(
            text=cached["html"],
            content_type="text/html",
            headers={"Content-Security-Policy": apidocs.CSP, "Cache-Control": "no-cache"},
        )

    @api.route("GET", "/api/status", summary="Version, uptime and the state of each component")
    async def status(req: ApiRequest) -> dict[str, Any]:
        return {
            "version": ctx.version,
            "uptime_s": round(time.time() - ctx.started_at, 1),
            "you": {"username": req.require().username, "role": req.require().role},
            **ctx.status(),
        }

    # --- sessions ----------------------------------------------------------------------------

    @api.route(
        "POST",
        "/api/auth/login",
        summary="Exchange a username and password for a session token",
        role=None,
        body=LoginBody,
        action="auth.login",
    )
    async def login(req: ApiRequest) -> dict[str, Any]:
        body: LoginBody = req.body
        req.audit(f"user:{body.username}")
        token, expires_at, principal = await ctx.identity.login(body.username, body.password, req.client_ip, body.otp)
        req.principal = principal
        return {"token": token, "expires_at": expires_at, "username": principal.username, "role": principal.role}

    @api.route("POST", "/api/auth/logout", summary="End the current session", role="viewer", action="auth.logout")
    async def logout(req: ApiRequest) -> None:
        await ctx.identity.logout(req.require())

    @api.route("GET", "/api/auth/me", summary="Who the token belongs to")
    async def me(req: ApiRequest) -> dict[str, Any]:
        p = req.require()
        return {"username": p.username, "role": p.role, "via": p.via}

    # --- tokens ------------------------------------------------------------------------------

    @api.route(
        "GET",
        "/api/tokens",
        summary="List API tokens (never their secrets)",
        query={"sessions": "1 to include login sessions"},
    )
    async def tokens_list(req: ApiRequest) -> list[dict[str, Any]]:
        return await ctx.identity.list_tokens(include_sessions=req.query.get("sessions") == "1")

    @api.route(
        "POST",
        "/api/tokens",
        summary="Create an API token; the secret is in `token`, shown once",
        role="admin",
        body=TokenCreateBody,
        action="token.create",
    )
    async def tokens_create(req: ApiRequest) -> dict[str, Any]:
        body: TokenCreateBody = req.body
        token, record = await ctx.identity.create_token(req.require(), body.name, body.role, body.expires_in_s)
        req.audit(f"token:{record['id']}", after=record)
        return {**record, "token": token}

    @api.route("DELETE", "/api/tokens/{id:\\d+}", summary="Revoke a token", role="admin", action="token.revoke")
    async def tokens_revoke(req: ApiRequest) -> dict[str, Any]:
        token_id = int(req.match["id"])
        before = await ctx.identity.revoke_token(token_id)
        after = await ctx.identity.get_token(token_id)
        req.audit(f"token:{token_id}", before=before, after=after)
        return after

    # --- users -------------------------------------------------------------------------------

    @api.route("GET", "/api/users", summary="List users")
    async def users_list(req: ApiRequest) -> list[dict[str, Any]]:
        return await ctx.identity.list_users()

    @api.route("POST", "/api/users", summary="Add a user", role="admin", body=UserAddBody, action="user.add")
    async def users_add(req: ApiRequest) -> dict[str, Any]:
        body: UserAddBody = req.body
        req.audit(f"user:{body.username}")
        user = await ctx.identity.add_user(body.username, body.password, body.role)
        req.audit(f"user:{body.username}", after=user)
        return user

    @api.route(
        "PUT",
        "/api/users/{name}/password",
        summary="Set a password (admins: anyone's; others: their own)",
        role="viewer",
        body=PasswordBody,
        action="user.passwd",
    )
    async def users_passwd(req: ApiRequest) -> dict[str, Any]:
        name = req.match["name"]
        req.audit(f"user:{name}")
        body: PasswordBody = req.body
        await ctx.identity.set_password(req.require(), name, body.password)
        return {"username": name, "password_changed": True}

    @api.route(
        "POST",
        "/api/users/{name}/totp",
        summary="Start two-factor enrolment: a new TOTP secret",
        role="viewer",
        action="user.totp.begin",
    )
    async def totp_begin(req: ApiRequest) -> dict[str, str]:
        name = req.match["name"]
        req.audit(f"user:{name}")
        return await ctx.identity.totp_begin(req.require(), name)

    @api.route(
        "POST",
        "/api/users/{name}/totp/confirm",
        summary="Finish enrolment with a current code",
        role="viewer",
        body=TotpConfirmBody,
        action="user.totp.enable",
    )
    async def totp_confirm(req: ApiRequest) -> dict[str, Any]:
        name = req.match["name"]
        req.audit(f"user:{name}", after={"totp": True})
        body: TotpConfirmBody = req.body
        codes = await ctx.identity.totp_confirm(req.require(), name, body.code)
        return {"username": name, "totp": True, "recovery_codes": codes}

    @api.route(
        "POST",
        "/api/users/{name}/totp/recovery-codes",
        summary="New single-use recovery codes (shown once); the old ones stop working",
        role="viewer",
        action="user.totp.recovery_codes",
    )
    async def totp_recovery_codes(req: ApiRequest) -> dict[str, Any]:
        name = req.match["name"]
        req.audit(f"user:{name}")
        codes = await ctx.identity.regenerate_recovery_codes(req.require(), name)
        req.audit(f"user:{name}", after={"recovery_codes_left": len(codes)})
        return {"username": name, "recovery_codes": codes}

    @api.route(
        "DELETE",
        "/api/users/{name}/totp",
        summary="Turn two-factor login off",
        role="viewer",
        action="user.totp.disable",
    )
    async def totp_disable(req: ApiRequest) -> dict[str, Any]:
        name = req.match["name"]
        req.audit(f"user:{name}", after={"totp": False})
        await ctx.identity.totp_disable(req.require(), name)
        return {"username": name, "totp": False}

    @api.route("DELETE", "/api/users/{name}", summary="Remove a user", role="admin", action="user.remove")
    async def users_remove(req: ApiRequest) -> dict[str, Any]:
        name = req.match["name"]
        req.audit(f"user:{name}")
        before = await ctx.identity.remove_user(req.require(), name)
        req.audit(f"user:{name}", before=before)
        return before

    # --- audit and events --------------------------------------------------------------------

    @api.route(
        "GET",
        "/api/audit",
        summary="The audit log, newest first",
        role="admin",
        query={
            "limit": "at most this many (default 100)",
            "before": "entries with ids below this",
            "actor": "only this actor",
            "action": "only this action (* wildcard)",
        },
    )
    async def audit(req: ApiRequest) -> list[dict[str, Any]]:
        q = req.query
        return await ctx.audit.list(
            limit=parse_int(q.get("limit"), "limit", 100, 1, 1000),
            before_id=parse_int(q.get("before"), "before", None, 1, None),
            actor=q.get("actor"),
            action=q.get("action"),
        )

    @api.route(
        "GET",
        "/api/events",
        summary="Server-Sent Events: every event after Last-Event-ID (or `since`)",
        query={
            "since": "resume after this event id (Last-Event-ID wins)",
            "types": "comma-separated types",
            "follow": "0: send the events up to the newest one now, then end the stream (default 1)",
            "last": "with follow=0 and no since: only the newest N events (default 20)",
        },
        response="text/event-stream",
    )
    async def events(req: ApiRequest) -> web.StreamResponse:
        hidden = () if req.require().role == "admin" else ADMIN_ONLY_EVENTS
        last = req.raw.headers.get("Last-Event-ID") or req.query.get("since")
        after_id = parse_int(last, "Last-Event-ID", None, 0, None)
        types = [t for t in req.query.get("types", "").split(",") if t] or None
        follow = req.query.get("follow", "1")
        if follow not in ("0", "1", "true", "false"):
            raise BadRequest(
                f"follow must be 0 or 1, not {follow!r}",
                details={"field": "follow"},
                hint="follow=0 ends the stream after the events there are now",
            )
        newest = parse_int(req.query.get("last"), "last", 20, 1, 10_000)
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        await resp.prepare(req.raw)
        if follow in ("0", "false"):
            with contextlib.suppress(ConnectionError):  # the reader left early: nothing to tidy up
                await resp.write(b": connected\n\n")
                async for event in ctx.bus.read_up_to_now(after_id=after_id, types=types, newest=newest):
                    if not event.type.startswith(hidden):
                        await resp.write(_sse(event))
                await resp.write_eof()
            return resp
        sub = ctx.bus.subscribe(after_id=after_id, types=types)
        ctx.streams.add(sub)
        await resp.write(b"retry: 2000\n: connected\n\n")
        heartbeat = asyncio.create_task(_heartbeat(resp, ctx.heartbeat_s), name="sse-heartbeat")
        try:
            async for event in sub:
                if event.type.startswith(hidden):
                    continue
                await resp.write(_sse(event))
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await heartbeat
            sub.close()
            ctx.streams.discard(sub)
        return resp


# Event types only admins receive on the stream: the host scan's findings map the host's weak points
# (paths, pids, the exact fix), and `/api/security/scan` itself is admin only.
ADMIN_ONLY_EVENTS: tuple[str, ...] = ("security.",)


def _sse(event: Event) -> bytes:
    data = json.dumps(event.to_dict(), separators=(",", ":"), default=str)
    return f"id: {event.id}\nevent: {event.type}\ndata: {data}\n\n".encode()


async def _heartbeat(resp: web.StreamResponse, every_s: float) -> None:
    # Comment lines keep proxies and load balancers from closing an idle stream.
    while True:
        await asyncio.sleep(every_s)
        await resp.write(b": ping\n\n")


__all__ = ["CoreContext", "Principal", "register"]
