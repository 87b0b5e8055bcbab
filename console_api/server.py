"""The console's HTTP shell: the aiohttp application (error shape, authentication, role checks,
audit), served on the console address (127.0.0.1:7070 by default) and on `<data>/console.sock`."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import json
import os
import socket
import struct
import uuid
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from pydantic import BaseModel

from console_api import session, static_ui
from console_api._clientaddr import forwarded_client, host_allowed, host_name, parse_networks
from console_api._peerproc import peer_is_this_process
from console_api.api import (
    AUTH_ERROR,
    CLIENT_IP,
    PRINCIPAL,
    REQUEST_ID,
    Api,
    ApiRequest,
    Operation,
    client_ip,
    parse_body,
)
from core.audit import AuditEntry, AuditLog
from core.clients import CLIENT_TOKEN_PREFIX, ClientRegistry, address_refused
from core.errors import (
    Forbidden,
    InfraError,
    InsufficientStorage,
    PayloadTooLarge,
    StartupError,
    Unauthorized,
    is_disk_full,
)
from core.identity import Identity, Principal
from core.memo import BoundedMap
from core.tasks import TaskSet

log = structlog.get_logger("console_api")

_UNIX_PATH_MAX = 107
MAX_BODY_BYTES = web.AppKey("max_body_bytes", int)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(data, default=str, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _error_response(e: InfraError, request_id: str) -> web.Response:
    body = e.to_dict()
    body["error"]["details"].setdefault("request_id", request_id)
    headers = {"X-Request-Id": request_id}
    retry = getattr(e, "retry_after_s", None)
    if retry is not None:
        headers["Retry-After"] = str(max(1, int(retry + 0.999)))
    if e.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="infracore"'
    return _json(body, e.status, headers)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large", 400: "bad_request"}


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex[:16]
    request[REQUEST_ID] = request_id
    try:
        return await handler(request)
    except InfraError as e:
        return _error_response(e, request_id)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[MAX_BODY_BYTES]
        too_large = PayloadTooLarge(
            f"the request body is larger than the {limit}-byte limit", details={"limit_bytes": limit}
        )
        return _error_response(too_large, request_id)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        err = InfraError(e.reason or "error", code=_HTTP_CODES.get(e.status, "http_error"))
        err.status = e.status
        if e.status == 404:
            err.message = f"no such API path: {request.path}"
            err.details["hint"] = "see /api/openapi.json for the routes"
        elif e.status == 405:
            err.message = f"{request.method} is not allowed on {request.path}"
        return _error_response(err, request_id)
    except (ConnectionResetError, ConnectionError):
        raise
    except Exception as e:
        log.exception("api handler failed", path=request.path, method=request.method, request_id=request_id)
        return _error_response(
            InfraError("internal error; the server log has the details", details={"type": type(e).__name__}),
            request_id,
        )


def _peer_uid(request: web.Request) -> int | None:
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", raw)
    return uid


class MisdirectedRequest(InfraError):
    code = "host_not_allowed"
    status = 421


def _maybe_self(peer_ip: str, local_ip: str) -> bool:
    """Only a loopback peer, or one using our own address, can be this process: others are not asked
    about (the /proc lookup is not free, and a remote client must not be able to make us do it)."""
    try:
        ip = ipaddress.ip_address(peer_ip)
    except ValueError:
        return False
    return (
        ip.is_loopback
        or peer_ip == local_ip
        or (ip.version == 6 and ip.ipv4_mapped is not None and ip.ipv4_mapped.is_loopback)
    )


class ConsoleServer:
    """The console API as a component. Started last, stopped first."""

    name = "console"

    def __init__(
        self,
        api: Api,
        identity: Identity,
        audit: AuditLog,
        *,
        host: str,
        port: int,
        socket_path: Path | None,
        max_body_bytes: int,
        drain_timeout_s: float = 10.0,
        ui_dir: Path | None = None,
        trusted_proxies: list[str] | None = None,
        allowed_hosts: list[str] | None = None,
        data_dir: Path | None = None,
        clients: ClientRegistry | None = None,
    ) -> None:
        self.api = api
        self.identity = identity
        self.clients = clients  # CI client credentials (their tokens are scoped principals); None: none
        self.audit = audit
        self.host, self.port = host, port
        self.socket_path = socket_path
        self.max_body_bytes = max_body_bytes
        self.drain_timeout_s = drain_timeout_s
        self.ui_dir = ui_dir
        self.data_dir = data_dir
        self._gate_peers: BoundedMap[tuple[Any, ...], bool] = BoundedMap(4096)  # connection → peer is ours
        self.trusted_proxies = parse_networks(trusted_proxies or ())
        self.allowed_hosts = [h.strip().lower() for h in (allowed_hosts or ()) if h.strip()]
        if host not in ("0.0.0.0", "::", ""):
            self.allowed_hosts.append(host.lower())
        self._runner: web.AppRunner | None = None
        self._tasks = TaskSet("console")
        self.audit_retry_s = 5.0
        self.bound_port: int | None = None
        self.on_stop: list[Any] = []  # callables run first on stop (end SSE streams)

    # --- application -------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.max_body_bytes,
            middlewares=[_errors, self._client, self._authenticate, session.middleware(self.identity)],
        )
        app[MAX_BODY_BYTES] = self.max_body_bytes
        app.on_response_prepare.append(_server_header)
        for op in self.api.operations:
            app.router.add_route(op.method, op.path, self._adapt(op))
        static_ui.install(app, self.ui_dir)
        return app

    @web.middleware
    async def _client(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """The client's address (`request[CLIENT_IP]`, used by login throttling and the audit log)
        and the Host check against DNS rebinding. The Unix socket is exempt from both."""
        transport = request.transport
        sock = transport.get_extra_info("socket") if transport else None
        peer = transport.get_extra_info("peername") if transport else None
        if sock is None or sock.family == socket.AF_UNIX or not isinstance(peer, tuple) or not peer:
            request[CLIENT_IP] = "local"
            return await handler(request)
        local = transport.get_extra_info("sockname") if transport else None
        xff = request.headers.getall("X-Forwarded-For", [])
        host_ok = host_allowed(request.headers.get("Host"), self.allowed_hosts)
        from_gate = False
        if (xff or not host_ok) and isinstance(local, tuple) and _maybe_self(peer[0], local[0]):
            # A connection from the platform's own gate: its peer socket is one of ours. The gate routed
            # on the Host already (the operator pointed that route here), and it wrote X-Forwarded-For.
            from_gate = await self._peer_is_gate(sock, peer[:2], local[:2])
        if not host_ok and not from_gate:
            name = host_name(request.headers.get("Host", ""))
            raise MisdirectedRequest(
                f"this console does not answer to the host name {name!r}",
                hint="open it as http://127.0.0.1:PORT or localhost, through a gate route, or add the name "
                "to the console_allowed_hosts setting",
                details={"host": name},
            )
        request[CLIENT_IP] = forwarded_client(str(peer[0]), xff, peer_trusted=from_gate, trusted=self.trusted_proxies)
        return await handler(request)

    async def _peer_is_gate(self, sock: Any, peer: tuple[str, int], local: tuple[str, int]) -> bool:
        """`peer_is_this_process`, once per connection: the gate keeps its upstream connections alive, so
        the /proc lookup (in a worker thread) is rare. The key is the socket's inode, unique to this
        connection — an fd number alone could be reused by a later connection from another process."""
        try:
            fd = sock.fileno()
            key = (fd, os.fstat(fd).st_ino, peer, local)
        except (OSError, AttributeError):
            return False
        found = self._gate_peers.get(key)
        if found is None:
            found = await asyncio.to_thread(peer_is_this_process, peer, local)
            self._gate_peers.put(key, found)
        return found

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        principal: Principal | None = None
        uid = _peer_uid(request)
        if uid is not None:
            # The socket is 0600: only its owner (root, or the user running the server) can connect.
            if uid not in (0, os.getuid()):
                raise Forbidden("this Unix socket is for the server's own user")
            principal = Principal(f"local:uid={uid}", "admin", "socket")
        else:
            auth = request.headers.get("Authorization", "")
            scheme, _, token = auth.partition(" ")
            if auth and scheme.lower() == "bearer" and token.strip():
                try:
                    if token.strip().startswith(CLIENT_TOKEN_PREFIX) and self.clients is not None:
                        principal = await self.clients.authenticate(token.strip())
                    else:
                        principal = await self.identity.authenticate(token.strip())
                except Unauthorized as e:
                    request[AUTH_ERROR] = e
            elif auth:
                request[AUTH_ERROR] = Unauthorized("unsupported Authorization scheme; use 'Bearer TOKEN'")
        request[PRINCIPAL] = principal
        return await handler(request)

    def _adapt(self, op: Operation) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            areq = ApiRequest(request, request.get(PRINCIPAL))
            try:
                if op.role is not None:
                    if areq.principal is None:
                        raise request.get(AUTH_ERROR) or Unauthorized(
                            "authentication required",
                            hint="log in with `fsctl login`, or send 'Authorization: Bearer TOKEN'",
                        )
                    if areq.principal.scoped:
                        _check_client(op, areq)
                    elif not areq.principal.has_role(op.role):
                        raise Forbidden(
                            f"this needs the {op.role} role; you are {areq.principal.role}",
                            details={"required_role": op.role},
                        )
                if op.body is not None:
                    areq.body = await parse_body(request, op.body)
                result = await op.handler(areq)
                if (
                    op.clients == "handler"
                    and areq.principal is not None
                    and areq.principal.scoped
                    and not areq.service_checked
                ):
                    # Fail closed: a `clients="handler"` route that never said which service it touched.
                    log.error("client-token route did not check its service", path=op.path, method=op.method)
                    raise Forbidden("this route did not establish the service it acts on", code="client_scope")
            except InfraError as e:
                # Every refusal of a client token is audited, reads too: the allow-list and the scope are
                # what an operator watches for a leaked CI secret.
                if op.mutating or (e.status == 403 and areq.principal is not None and areq.principal.scoped):
                    outcome = "denied" if e.status in (401, 403) else "failed"
                    await self._audit(op, areq, outcome, e.status)
                raise
            except web.HTTPRequestEntityTooLarge:
                if op.mutating:
                    await self._audit(op, areq, "failed", 413)
                raise
            except (web.HTTPException, asyncio.CancelledError, ConnectionError):
                raise
            except Exception as e:
                # Not one of ours: a full disk becomes a 507 that says what to do; anything else stays a
                # 500 (logged by `_errors`). Either way the attempt is audited.
                full = self._disk_full(e)
                if op.mutating:
                    await self._audit(op, areq, "failed", full.status if full else 500)
                if full is not None:
                    raise full from e
                raise
            response = _to_response(result)
            if op.mutating:
                await self._audit(op, areq, "ok", response.status)
            return response

        handle.__name__ = op.handler.__name__
        return handle

    def _disk_full(self, e: BaseException) -> InsufficientStorage | None:
        if not is_disk_full(e):
            return None
        where = str(self.data_dir) if self.data_dir else "the data dir"
        log.error("no space left for the data dir", data_dir=where, error=str(e))
        return InsufficientStorage(
            f"the disk holding the data dir {where} is full: the request could not be completed",
            hint=f"free space on that file system (`df -h {where}`: remove old logs, snapshots or other "
            "files), or move the data dir to a larger disk; then retry",
            details={"data_dir": where},
        )

    async def _audit(self, op: Operation, areq: ApiRequest, outcome: str, status: int) -> None:
        p = areq.principal
        await self.audit.record(
            AuditEntry(
                actor=p.username if p else "anonymous",
                role=p.role if p else None,
                action=op.action or f"{op.method} {op.path}",
                target=areq.audit_target,
                outcome=outcome,
                status=status,
                client_ip=client_ip(areq.raw),
                before=areq.audit_before,
                after=areq.audit_after,
            )
        )

    # --- component ---------------------------------------------------------------------------

    async def start(self) -> None:
        app = self.build_app()
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=self.drain_timeout_s)
        await self._runner.setup()
        tcp = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        try:
            await tcp.start()
        except OSError as e:
            await self._runner.cleanup()
            if e.errno == errno.EADDRINUSE:
                raise StartupError(
                    f"the console address {self.host}:{self.port} is already in use",
                    hint="stop the other program or pass --console HOST:PORT",
                ) from e
            raise StartupError(f"cannot listen on {self.host}:{self.port} for the console: {e.strerror}") from e
        self.bound_port = self._runner.addresses[0][1] if self._runner.addresses else self.port
        if self.socket_path is not None:
            await self._start_unix(self.socket_path)
        self._tasks.spawn("audit-retry", self._retry_audit())
        log.info("console listening", address=f"{self.host}:{self.bound_port}", socket=str(self.socket_path))

    async def _retry_audit(self) -> None:
        # Audit entries a full disk kept in memory are written by the next entry, or by this retry when
        # no call comes: freeing space is enough, nobody has to poke the server.
        while True:
            await asyncio.sleep(self.audit_retry_s)
            if self.audit.pending:
                await self.audit.flush()

    async def _start_unix(self, path: Path) -> None:
        assert self._runner is not None
        if len(os.fsencode(path)) > _UNIX_PATH_MAX:
            log.warning("console socket path too long; not serving on a Unix socket", path=str(path))
            self.socket_path = None
            return
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # stale from a crash; the data-dir lock says no other instance owns it
        old = os.umask(0o177)
        try:
            await web.UnixSite(self._runner, str(path)).start()
        finally:
            os.umask(old)
        os.chmod(path, 0o600)

    async def stop(self, drain_timeout_s: float) -> None:
        self.api.stopping.set()
        await self._tasks.close()
        for fn in self.on_stop:
            fn()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.audit.pending and await self.audit.flush() is None:
            log.error("audit entries could not be written before stopping", lost=self.audit.pending)
        if self.socket_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()


def _check_client(op: Operation, areq: ApiRequest) -> None:
    """A client token may call only routes that accept them (`Operation.clients`), from an address in its
    allow-list, and with `clients="path"` only for a service of its own (the path's `{name}`)."""
    p = areq.require()
    if op.clients is None:
        raise Forbidden(
            f"{p.username} is a CI client: it may only upload artifacts and deploy its services",
            code="client_scope",
            hint="log in as a user for this",
        )
    ip = areq.client_ip
    if not p.allows_address(ip):
        raise address_refused(p, ip)
    if op.clients == "path":
        areq.authorize_service(areq.match.get("name", ""))


async def _server_header(_: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = "infracore"  # not the Python and aiohttp versions


def _to_response(result: Any) -> web.StreamResponse:
    if isinstance(result, web.StreamResponse):
        return result
    if result is None:
        return web.Response(status=204)
    if isinstance(result, BaseModel):
        return _json(result.model_dump(mode="json"))
    return _json(result)
