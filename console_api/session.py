"""Browser sessions for the console: an `HttpOnly`, `SameSite=Strict` cookie (`Secure` behind TLS)
issued by `POST /api/auth/session`, with CSRF protection on every mutating call made with it.

Theory of operation. The cookie holds an ordinary session token (the same kind `POST /api/auth/login`
returns), so expiry, revocation and logout work as for bearer tokens; scripts keep using
`Authorization: Bearer`, which a browser never sends on its own and so needs no CSRF check. A call
authenticated by the cookie whose method changes something must also carry `X-CSRF-Token` equal to
`csrf_token(session)` — a one-way digest of the session token that the page reads from
`GET /api/auth/session` (same-origin only: the API sends no CORS headers) and keeps in memory only.
A cross-site form cannot set a header, and a cross-site `fetch` that sets one needs a CORS preflight
the API never grants; a request whose `Origin` (or `Sec-Fetch-Site`) says another site is refused too.
A failed check leaves the request unauthenticated with a 403 `csrf_failed`, audited as denied.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from console_api.api import AUTH_ERROR, MUTATING, PRINCIPAL, SESSION_TOKEN, Api, ApiRequest
from core.errors import Forbidden, Unauthorized
from core.identity import Identity

COOKIE = "ic_session"
CSRF_HEADER = "X-CSRF-Token"
SESSION_PATH = "/api/auth/session"


def csrf_token(session_token: str) -> str:
    """The CSRF token of a session: knowing it does not reveal the session token."""
    digest = hashlib.sha256(b"infracore-csrf\0" + session_token.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _is_tls(request: web.Request) -> bool:
    # Behind a gate route with TLS the gate sets X-Forwarded-Proto; a forged value only makes the
    # cookie `Secure`, which cannot weaken it.
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def cross_site(request: web.Request) -> str | None:
    """Why the request comes from another site, or None when nothing says so."""
    site = request.headers.get("Sec-Fetch-Site")
    if site and site not in ("same-origin", "none"):
        return f"Sec-Fetch-Site is {site}"
    origin = request.headers.get("Origin")
    if origin is not None:
        if origin == "null":
            return "Origin is null"
        here = request.headers.get("X-Forwarded-Host") or request.host
        if urlsplit(origin).netloc.lower() != here.lower():
            return f"Origin {origin} is not this console"
    return None


def _csrf_failed(why: str) -> Forbidden:
    return Forbidden(
        f"cross-site request refused: {why}",
        code="csrf_failed",
        hint=f"the console sends {CSRF_HEADER} from GET {SESSION_PATH}; scripts use a Bearer token",
    )


def check_csrf(request: web.Request, session_token: str) -> Forbidden | None:
    why = cross_site(request)
    if why:
        return _csrf_failed(why)
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent:
        return _csrf_failed(f"the {CSRF_HEADER} header is missing")
    if not hmac.compare_digest(sent.encode(), csrf_token(session_token).encode()):
        return _csrf_failed(f"the {CSRF_HEADER} header does not match the session")
    return None


def middleware(identity: Identity) -> Any:
    """Authenticates by the session cookie when nothing else did (runs after the bearer/socket one)."""

    @web.middleware
    async def session_cookie(request: web.Request, handler: Any) -> web.StreamResponse:
        token = request.cookies.get(COOKIE)
        if token and request.get(PRINCIPAL) is None and "Authorization" not in request.headers:
            problem: Exception | None = None
            if request.method in MUTATING and (request.method, request.path) != ("POST", SESSION_PATH):
                problem = check_csrf(request, token)
            if problem is None:
                try:
                    request[PRINCIPAL] = await identity.authenticate(token)
                    request[SESSION_TOKEN] = token
                except Unauthorized:
                    problem = Unauthorized("your session has ended; log in again", code="session_expired")
            if problem is not None:
                request[AUTH_ERROR] = problem
        return await handler(request)

    return session_cookie


def _cookie(response: web.Response, request: web.Request, value: str, max_age: int) -> None:
    response.set_cookie(
        COOKIE, value, max_age=max_age, path="/api", httponly=True, samesite="Strict", secure=_is_tls(request)
    )


def register(api: Api, identity: Identity) -> None:
    from console_api.routes_core import LoginBody

    @api.route(
        "POST",
        SESSION_PATH,
        summary="Log in for the browser console: sets the session cookie and returns the CSRF token",
        role=None,
        body=LoginBody,
        action="auth.session.login",
    )
    async def session_login(req: ApiRequest) -> web.Response:
        # No session yet, so no token to compare: a custom header (which a cross-site form cannot send)
        # and a same-site origin, against login CSRF (being logged in as someone else).
        why = cross_site(req.raw) or (
            None
            if req.raw.headers.get(CSRF_HEADER)
            else f"the {CSRF_HEADER} header is missing (any value will do at login)"
        )
        if why:
            raise _csrf_failed(why)
        body: LoginBody = req.body
        req.audit(f"user:{body.username}")
        token, expires_at, principal = await identity.login(body.username, body.password, req.client_ip, body.otp)
        req.principal = principal
        out = {
            "username": principal.username,
            "role": principal.role,
            "expires_at": expires_at,
            "csrf_token": csrf_token(token),
        }
        resp = web.json_response(out)
        _cookie(resp, req.raw, token, max(1, int(expires_at - time.time())))
        return resp

    @api.route("GET", SESSION_PATH, summary="The browser session: who, until when, and its CSRF token")
    async def session_get(req: ApiRequest) -> dict[str, Any]:
        p = req.require()
        token = req.raw.get(SESSION_TOKEN)
        expires_at = None
        if p.token_id is not None:
            expires_at = (await identity.get_token(p.token_id))["expires_at"]
        return {
            "username": p.username,
            "role": p.role,
            "expires_at": expires_at,
            "csrf_token": csrf_token(token) if token else "",
        }

    @api.route(
        "DELETE",
        SESSION_PATH,
        summary="Log out of the browser console: ends the session, clears the cookie",
        role="viewer",
        action="auth.session.logout",
    )
    async def session_logout(req: ApiRequest) -> web.Response:
        await identity.logout(req.require())
        resp = web.Response(status=204)
        _cookie(resp, req.raw, "", 0)
        return resp


__all__ = ["COOKIE", "CSRF_HEADER", "check_csrf", "csrf_token", "middleware", "register"]
