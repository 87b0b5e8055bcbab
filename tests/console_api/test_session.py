"""The browser session: the cookie's attributes, CSRF refusal of cross-site and `text/plain` posts
(nothing changes), Bearer tokens unaffected, the event stream reachable with the cookie, logout."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import ROOT

YAML = (ROOT / "examples" / "hello" / "hello.yaml").read_text().replace("${SPEC_DIR}", str(ROOT / "examples/hello"))


def _login(server: Any, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/api/auth/session",
        json={"username": "admin", "password": server.admin_password},
        headers={"X-CSRF-Token": "1", **headers},
        timeout=30,  # bcrypt in the worker pool: seconds on a loaded machine (httpx's default is 5 s)
    )


@pytest.fixture
def session(server: Any) -> dict[str, str]:
    r = _login(server)
    assert r.status_code == 200, r.text
    return {"cookie": r.cookies["ic_session"], "csrf": r.json()["csrf_token"]}


def _call(server: Any, method: str, path: str, cookie: str, **kw: Any) -> httpx.Response:
    headers = {"Cookie": f"ic_session={cookie}", **kw.pop("headers", {})}
    return httpx.request(method, f"{server.url}{path}", headers=headers, timeout=30, **kw)


def test_the_cookie_is_httponly_strict_and_secure_behind_tls(server):
    r = _login(server)
    assert r.status_code == 200
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/api" in cookie
    assert "Secure" not in cookie  # plain http on loopback: a Secure cookie would never come back
    assert r.json()["role"] == "admin" and r.json()["csrf_token"]
    assert r.json()["csrf_token"] not in cookie and r.cookies["ic_session"] not in r.text
    behind_tls = _login(server, **{"X-Forwarded-Proto": "https"})
    assert "Secure" in behind_tls.headers["Set-Cookie"]


def test_session_login_refuses_cross_site_requests(server):
    plain_form = httpx.post(
        f"{server.url}/api/auth/session", json={"username": "admin", "password": server.admin_password}, timeout=30
    )
    assert plain_form.status_code == 403 and plain_form.json()["error"]["code"] == "csrf_failed"
    assert "Set-Cookie" not in plain_form.headers
    evil = _login(server, Origin="http://evil.example")
    assert evil.status_code == 403 and "Set-Cookie" not in evil.headers
    assert _login(server, **{"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert _login(server, Origin=server.url).status_code == 200


def test_cross_site_form_and_text_plain_posts_change_nothing(server, session):
    cookie, csrf = session["cookie"], session["csrf"]
    # What an attacker's page can make a browser send: a form post (urlencoded), a text/plain post
    # (no preflight), with the victim's cookie, from another origin or with no Origin at all.
    attempts: list[tuple[str, str, dict[str, Any]]] = [
        (
            "POST",
            "/api/users",
            {
                "headers": {"Content-Type": "application/x-www-form-urlencoded", "Origin": "http://evil.example"},
                "content": b"username=mallory&password=password123&role=admin",
            },
        ),
        ("POST", "/api/services", {"headers": {"Content-Type": "text/plain"}, "content": YAML.encode()}),
        (
            "POST",
            "/api/services",
            {"headers": {"Content-Type": "text/plain", "Origin": "null"}, "content": YAML.encode()},
        ),
        # Even the right token does not help a request the browser marks as cross-site.
        (
            "POST",
            "/api/users",
            {
                "headers": {"X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"},
                "json": {"username": "mallory", "password": "password123"},
            },
        ),
        (
            "POST",
            "/api/users",
            {"headers": {"X-CSRF-Token": "guess"}, "json": {"username": "mallory", "password": "password123"}},
        ),
        ("DELETE", "/api/auth/session", {}),
        ("DELETE", "/api/users/admin", {"headers": {"Origin": "http://evil.example"}}),
    ]
    for method, path, kw in attempts:
        r = _call(server, method, path, cookie, **kw)
        assert r.status_code == 403, (method, path, r.status_code, r.text)
        assert r.json()["error"]["code"] == "csrf_failed", r.text
    users = [u["username"] for u in server.api("GET", "/api/users").json()]
    assert users == ["admin"]
    assert server.api("GET", "/api/services").json() == []
    assert _call(server, "GET", "/api/auth/session", cookie).status_code == 200  # the session still works
    audit = server.api("GET", "/api/audit?limit=50").json()
    assert sum(1 for a in audit if a["outcome"] == "denied" and a["status"] == 403) >= 5


def test_same_origin_calls_with_the_token_work_and_bearer_needs_none(server, session):
    cookie, csrf = session["cookie"], session["csrf"]
    r = _call(
        server,
        "POST",
        "/api/users",
        cookie,
        headers={"X-CSRF-Token": csrf, "Origin": server.url, "Sec-Fetch-Site": "same-origin"},
        json={"username": "alice", "password": "password123"},
    )
    assert r.status_code == 200, r.text
    audit = server.api("GET", "/api/audit?action=user.add").json()[0]
    assert audit["action"] == "user.add" and audit["actor"] == "admin"
    # The page gets the token back after a reload from GET /api/auth/session (same-origin read only).
    me = _call(server, "GET", "/api/auth/session", cookie).json()
    assert me["csrf_token"] == csrf and me["username"] == "admin" and me["expires_at"] > 0
    # Scripts with a Bearer token are not browsers: no CSRF header needed.
    assert server.api("POST", "/api/users", json={"username": "bob", "password": "password123"}).status_code == 200


def test_the_event_stream_is_reachable_with_the_cookie(server, session):
    with httpx.stream(
        "GET", f"{server.url}/api/events", headers={"Cookie": f"ic_session={session['cookie']}"}, timeout=10
    ) as r:
        assert r.status_code == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        first = next(r.iter_lines())
        assert first.startswith("retry:")
    anonymous = httpx.get(f"{server.url}/api/events", timeout=10)
    assert anonymous.status_code == 401


def test_logout_ends_the_session_and_clears_the_cookie(server, session):
    cookie, csrf = session["cookie"], session["csrf"]
    r = _call(server, "DELETE", "/api/auth/session", cookie, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 204
    assert "ic_session=" in r.headers["Set-Cookie"] and "Max-Age=0" in r.headers["Set-Cookie"]
    after = _call(server, "GET", "/api/services", cookie)
    assert after.status_code == 401 and after.json()["error"]["code"] == "session_expired"


def test_a_garbage_cookie_is_just_unauthenticated(server):
    for value in ("x", "ic_" + "A" * 400, '"quoted"', "a;b"):
        r = _call(server, "GET", "/api/services", value)
        assert r.status_code == 401, value
    raw = httpx.get(f"{server.url}/api/services", headers={b"Cookie": "ic_session=\u00e9".encode()}, timeout=10)
    assert raw.status_code in (400, 401)
