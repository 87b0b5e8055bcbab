"""The route registry: each route states its method, path, role, body model and summary once; the
aiohttp router, the role checks, the audit entries and the OpenAPI document all come from it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ValidationError

from core.clients import service_refused
from core.errors import BadRequest, ValidationFailed
from core.identity import Principal, Role

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# What the console's middlewares store on a request, as typed keys (a plain string key makes aiohttp
# warn, NotAppKeyWarning, and mypy cannot check what is stored under it).
REQUEST_ID = web.RequestKey("request_id", str)
CLIENT_IP = web.RequestKey("client_ip", str)  # see `client_ip`
PRINCIPAL: web.RequestKey[Principal | None] = web.RequestKey("principal")
SESSION_TOKEN = web.RequestKey("session_token", str)  # the token that came in the session cookie
AUTH_ERROR = web.RequestKey("auth_error", Exception)  # why a presented credential was not accepted


@dataclass
class ApiRequest:
    """What a handler gets: the aiohttp request, the caller, the validated body, and a place to say
    what the call changed (for the audit log)."""

    raw: web.Request
    principal: Principal | None
    body: Any = None
    audit_target: str | None = None
    audit_before: Any = None
    audit_after: Any = None
    service_checked: bool = False  # `authorize_service` was called (see `Operation.clients`)

    @property
    def match(self) -> dict[str, str]:
        return dict(self.raw.match_info)

    @property
    def query(self) -> Any:
        return self.raw.query

    @property
    def client_ip(self) -> str:
        return client_ip(self.raw)

    def audit(self, target: str | None = None, *, before: Any = None, after: Any = None) -> None:
        self.audit_target, self.audit_before, self.audit_after = target, before, after

    def require(self) -> Principal:
        assert self.principal is not None
        return self.principal

    def authorize_service(self, service: str) -> None:
        """For a client token: `Forbidden` unless `service` is one of the client's (users: no-op). A route
        registered with `clients="handler"` must call this before it acts or returns anything."""
        self.service_checked = True
        p = self.principal
        if p is not None and not p.may_use_service(service):
            raise service_refused(p, service)


Handler = Callable[[ApiRequest], Awaitable[Any]]

# Whether a route accepts CI client tokens (core/clients.py), and how it names the service they act on:
# "path": the `{name}` in its path (checked before the handler runs); "handler": the handler calls
# `req.authorize_service(...)` itself (e.g. after loading a deployment); a route that did not is refused.
# None (the default): client tokens are refused.
ClientScope = Literal["path", "handler"]


@dataclass
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    role: Role | None  # None: no authentication needed
    body: type[BaseModel] | None = None
    action: str | None = None
    tag: str = "core"
    query: dict[str, str] = field(default_factory=dict)  # name -> description, for the OpenAPI document
    response: str = "application/json"
    returns: Any = ...  # response model (or list[Model]); `...`: see console_api.schemas.RESPONSES
    clients: ClientScope | None = None

    @property
    def mutating(self) -> bool:
        return self.method in MUTATING


class Api:
    """A list of operations; route modules call `api.route(...)` to add theirs."""

    def __init__(self) -> None:
        self.operations: list[Operation] = []
        # Set when the console starts shutting down: long-lived handlers (streams) end when they see it.
        self.stopping = asyncio.Event()

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        role: Role | None = "viewer",
        body: type[BaseModel] | None = None,
        action: str | None = None,
        tag: str = "core",
        query: dict[str, str] | None = None,
        response: str = "application/json",
        returns: Any = ...,
        clients: ClientScope | None = None,
    ) -> Callable[[Handler], Handler]:
        """Register a handler. Mutating methods default to needing `admin` unless `role` says otherwise
        explicitly; every mutating call is audited under `action` (default `METHOD path`). `clients`: the
        route also accepts CI client tokens, scoped as `ClientScope` says."""
        if clients == "path" and "{name}" not in path:
            raise ValueError(f"{method} {path}: clients='path' needs a {{name}} in the path")

        def deco(fn: Handler) -> Handler:
            self.operations.append(
                Operation(
                    method.upper(),
                    path,
                    fn,
                    summary,
                    role,
                    body,
                    action,
                    tag,
                    dict(query or {}),
                    response,
                    returns,
                    clients,
                )
            )
            return fn

        return deco

    def find(self, method: str, path: str) -> Operation:
        for op in self.operations:
            if op.method == method and op.path == path:
                return op
        raise KeyError((method, path))


async def parse_body(request: web.Request, model: type[BaseModel]) -> BaseModel:
    """Read and validate a JSON body; errors are 400s that say which field and why."""
    raw = await request.read()
    if not raw:
        raise BadRequest("a JSON body is required", hint=f"send {model.__name__} as application/json")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        where = f" at line {e.lineno} column {e.colno}" if isinstance(e, json.JSONDecodeError) else ""
        raise BadRequest(f"the body is not valid JSON{where}", details={"reason": str(e)}) from e
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise validation_failed(e) from e


def parse_int(value: str | None, name: str, default: int | None, lo: int, hi: int | None) -> Any:
    """A whole-number query parameter or header within [lo, hi] (hi None: no upper bound), else 400."""
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number, not {value!r}", details={"field": name}) from None
    if n < lo or (hi is not None and n > hi):
        raise BadRequest(f"{name} must be between {lo} and {hi or 'any'}", details={"field": name})
    return n


def validation_failed(e: ValidationError) -> ValidationFailed:
    problems = [
        {"field": ".".join(str(p) for p in err["loc"]) or "(body)", "message": err["msg"], "type": err["type"]}
        for err in e.errors()
    ]
    summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
    return ValidationFailed(f"invalid request: {summary}", details={"errors": problems})


def client_ip(request: web.Request) -> str:
    """The client's address as the console's middleware established it (`X-Forwarded-For` from the
    gate or a trusted proxy), else the TCP peer, else "local" (the Unix socket)."""
    found = request.get(CLIENT_IP)
    if found:
        return str(found)
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return "local"


def openapi_document(api: Api, *, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document for every registered operation (built by `console_api.openapi`)."""
    from console_api.openapi import build_document

    return build_document(api, version=version)
