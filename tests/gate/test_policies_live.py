"""Per-route policies on real connections: rate limit, allow/deny, basic auth, headers, redirect."""

from __future__ import annotations

import bcrypt
import httpx

from tests.gate.conftest import Gate, Origin


async def test_rate_limit_429_with_retry_after(gate_factory, origin: Origin):
    g: Gate = await gate_factory()
    g.set_routes({"host": "a", "upstreams": [origin.addr], "policies": {"rate_limit": {"rate_per_s": 1, "burst": 3}}})
    async with httpx.AsyncClient() as c:
        codes = [(await c.get(f"http://127.0.0.1:{g.port}/echo", headers={"Host": "a"})) for _ in range(5)]
    assert [r.status_code for r in codes] == [200, 200, 200, 429, 429]
    assert codes[3].headers["retry-after"] == "1"
    assert len(origin.requests) == 3


async def test_deny_and_allow(gate_factory, origin: Origin):
    g = await gate_factory()
    g.set_routes(
        {"host": "denied", "upstreams": [origin.addr], "policies": {"deny": ["127.0.0.0/8"]}},
        {"host": "allowed", "upstreams": [origin.addr], "policies": {"allow": ["127.0.0.1/32", "::1/128"]}},
        {"host": "other", "upstreams": [origin.addr], "policies": {"allow": ["10.0.0.0/8"]}},
    )
    async with httpx.AsyncClient() as c:
        assert (await c.get(f"http://127.0.0.1:{g.port}/echo", headers={"Host": "denied"})).status_code == 403
        assert (await c.get(f"http://127.0.0.1:{g.port}/echo", headers={"Host": "allowed"})).status_code == 200
        assert (await c.get(f"http://127.0.0.1:{g.port}/echo", headers={"Host": "other"})).status_code == 403


async def test_basic_auth(gate_factory, origin: Origin):
    g = await gate_factory()
    h = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    g.set_routes(
        {
            "host": "a",
            "upstreams": [origin.addr],
            "policies": {"basic_auth": [{"username": "ann", "bcrypt_hash": h}], "basic_auth_realm": "staff"},
        }
    )
    async with httpx.AsyncClient() as c:
        r = await c.get(f"http://127.0.0.1:{g.port}/echo", headers={"Host": "a"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == 'Basic realm="staff", charset="UTF-8"'
        r = await c.get(f"http://127.0.0.1:{g.port}/echo", headers={"Host": "a"}, auth=("ann", "wrong"))
        assert r.status_code == 401
        r = await c.get(f"http://127.0.0.1:{g.port}/echo", headers={"Host": "a"}, auth=("ann", "pw"))
        assert r.status_code == 200
    assert len(origin.requests) == 1


async def test_header_rules_security_headers_and_hop_by_hop(gate_factory, origin: Origin):
    g = await gate_factory(via=True)
    g.set_routes(
        {
            "host": "a",
            "upstreams": [origin.addr],
            "policies": {
                "security_headers": True,
                "hsts_max_age_s": 600,
                "request_headers": {"set": {"X-Env": "prod"}, "remove": ["Cookie"]},
                "response_headers": {"set": {"X-Served-By": "gate"}, "remove": ["Server"]},
            },
        }
    )
    async with httpx.AsyncClient() as c:
        r = await c.get(
            f"http://127.0.0.1:{g.port}/echo",
            headers={
                "Host": "a",
                "Cookie": "s=1",
                "X-Env": "dev",
                "Connection": "keep-alive, X-Private",
                "X-Private": "secret",
            },
        )
    seen = r.json()["headers"]
    assert seen["x-env"] == "prod" and "cookie" not in seen and "x-private" not in seen
    assert r.headers["x-served-by"] == "gate" and "server" not in r.headers
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "strict-transport-security" not in r.headers  # plain HTTP: HSTS is only sent over HTTPS
    assert r.headers["via"] == "1.1 infracore"


async def test_trusted_proxy_forwarding_is_kept(gate_factory, origin: Origin):
    g = await gate_factory(trusted_proxies=["127.0.0.1/32"])
    g.set_routes({"host": "a", "upstreams": [origin.addr]})
    async with httpx.AsyncClient() as c:
        r = await c.get(
            f"http://127.0.0.1:{g.port}/echo",
            headers={
                "Host": "a",
                "X-Forwarded-For": "203.0.113.9",
                "X-Request-Id": "from-lb-1",
                "X-Forwarded-Proto": "https",
            },
        )
    h = r.json()["headers"]
    assert h["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert h["x-request-id"] == "from-lb-1" and h["x-forwarded-proto"] == "https"


async def test_acme_challenge_answered_ahead_of_redirect(gate_factory, origin: Origin):
    g = await gate_factory()
    g.set_routes({"host": "a", "upstreams": [origin.addr], "tls": "manual"})  # redirects by default
    g.state.challenges.put("tok123", "tok123.keyauth")
    async with httpx.AsyncClient() as c:
        r = await c.get(f"http://127.0.0.1:{g.port}/.well-known/acme-challenge/tok123", headers={"Host": "a"})
        assert r.status_code == 200 and r.text == "tok123.keyauth"
        r = await c.get(f"http://127.0.0.1:{g.port}/page", headers={"Host": "a"})
        assert r.status_code == 301 and r.headers["location"] == "https://a/page"
