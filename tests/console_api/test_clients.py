"""CI client credentials against a real `fsctl serve`: the secret shown once, the token's scope (its
services only, never users, routes or other services), the IP allow-list (at the exchange and on every
request), wrong secrets throttled, refusals audited, revocation."""

from __future__ import annotations

import httpx
import pytest

from console_api import Api
from tests.orch import tarfiles


def _client(srv, name="ci", services=("web",), allow=("127.0.0.1/32",)):
    r = srv.api("POST", "/api/clients", json={"name": name, "services": list(services), "ip_allowlist": list(allow)})
    assert r.status_code == 200, r.text
    return r.json()


def _token(srv, client, headers=None):
    return httpx.post(
        f"{srv.url}/api/auth/client-token",
        headers=headers or {},
        json={"client_id": client["client_id"], "client_secret": client["client_secret"]},
    )


def test_client_token_scope(server):
    c = _client(server, services=("web", "api"))
    assert c["client_secret"].startswith("ics_") and c["services"] == ["api", "web"]
    listed = server.api("GET", "/api/clients").json()
    assert listed[0]["client_id"] == c["client_id"] and "client_secret" not in listed[0]
    assert c["client_secret"] not in (server.data_dir / "state.db").read_bytes().decode(errors="replace")

    r = _token(server, c)
    assert r.status_code == 200, r.text
    tok = r.json()
    from pydantic import TypeAdapter

    from console_api.schemas_deploy import Client, ClientCreated, ClientToken

    TypeAdapter(ClientCreated).validate_python(c)
    TypeAdapter(list[Client]).validate_python(listed)
    TypeAdapter(ClientToken).validate_python(tok)
    assert tok["expires_in_s"] == 900 and tok["services"] == ["api", "web"]
    t = tok["token"]

    data = tarfiles.app("v1")
    up = server.api("POST", "/api/artifacts", token=t, params={"service": "web"}, content=data)
    assert up.status_code == 200, up.text
    art = up.json()
    assert art["created_by"] == "client:ci"
    # Its own services: read what it uploaded, list installs (a `clients="path"` route).
    assert server.api("GET", f"/api/artifacts/{art['id']}", token=t).status_code == 200
    assert server.api("GET", "/api/artifacts", token=t, params={"service": "web"}).status_code == 200
    assert server.api("GET", "/api/services/web/installs", token=t).json() == []

    def refused(method, path, code="client_scope", **kw):
        r = server.api(method, path, token=t, **kw)
        assert r.status_code == 403, (method, path, r.status_code, r.text)
        assert r.json()["error"]["code"] == code, (method, path, r.text)

    # Not another service ...
    refused("POST", "/api/artifacts", params={"service": "other"}, content=data)
    refused("GET", "/api/services/other/installs")
    refused("GET", "/api/artifacts", params={"service": "other"})
    other = server.api("POST", "/api/artifacts", params={"service": "other"}, content=tarfiles.app("o")).json()
    refused("GET", f"/api/artifacts/{other['id']}")
    assert server.api("GET", "/api/artifacts", token=t).status_code == 400  # must name its service
    # ... and nothing else at all: users, tokens, routes, services, clients, audit, events.
    refused("GET", "/api/users")
    refused("POST", "/api/users", json={"username": "evil", "password": "evil-pass-1", "role": "admin"})
    refused("POST", "/api/routes", json={"host": "x.localhost", "upstreams": ["127.0.0.1:1"]})
    refused("GET", "/api/routes")
    refused("POST", "/api/tokens", json={"name": "escalate", "role": "admin"})
    refused("POST", "/api/clients", json={"name": "more", "services": ["x"], "ip_allowlist": ["0.0.0.0/0"]})
    refused("POST", "/api/services", json={"name": "web", "cmd": ["true"]})
    refused("GET", "/api/services/web")
    refused("GET", "/api/audit")
    refused("GET", "/api/auth/me")
    assert server.api("GET", "/api/health", token=t).status_code == 200  # public routes stay public
    assert "evil" not in {u["username"] for u in server.api("GET", "/api/users").json()}

    # Refusals are audited (reads too) under the client's name.
    audit = server.api("GET", "/api/audit", params={"actor": "client:ci", "limit": 100}).json()
    denied = {(e["action"], e["outcome"]) for e in audit}
    assert ("GET /api/users", "denied") in denied and ("user.add", "denied") in denied
    assert ("artifact.upload", "ok") in denied and ("artifact.upload", "denied") in denied

    # Revoked: the token stops working at once, and no new one is issued.
    assert server.api("DELETE", f"/api/clients/{c['client_id']}").json()["state"] == "revoked"
    assert server.api("GET", "/api/services/web/installs", token=t).status_code == 401
    assert _token(server, c).status_code == 401


def test_wrong_secret_is_refused_throttled_and_audited(server):
    c = _client(server)
    bad = {**c, "client_secret": c["client_secret"][:-2] + "xx"}
    codes = [_token(server, bad).status_code for _ in range(6)]
    assert codes[:5] == [401] * 5 and codes[5] == 429
    r = _token(server, c)  # the right secret waits out the lock too
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert _token(server, {"client_id": "cid_nope", "client_secret": "x"}).status_code == 401
    audit = server.api("GET", "/api/audit", params={"action": "auth.client_token"}).json()
    assert [e["outcome"] for e in audit].count("denied") >= 5
    assert all(c["client_secret"] not in str(e) for e in audit)


def test_disallowed_address_is_refused_at_exchange_and_per_request(server_factory):
    # The test's own connections count as a trusted proxy, so X-Forwarded-For says who the client is.
    srv = server_factory(env={"INFRACORE_CONSOLE_TRUSTED_PROXIES": '["127.0.0.1/32"]'})
    far = _client(srv, name="far", allow=("10.0.0.0/8",))
    r = _token(srv, far)
    assert r.status_code == 403 and r.json()["error"]["code"] == "client_ip_refused"
    assert _token(srv, far, headers={"X-Forwarded-For": "10.1.2.3"}).status_code == 200

    near = _client(srv, name="near", allow=("127.0.0.1", "2001:db8::/32"))
    t = _token(srv, near).json()["token"]
    assert srv.api("GET", "/api/services/web/installs", token=t).status_code == 200
    # The same token from another address is refused, and audited although it is a read.
    r = srv.api("GET", "/api/services/web/installs", token=t, headers={"X-Forwarded-For": "198.51.100.7"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "client_ip_refused"
    r = srv.api(
        "POST",
        "/api/artifacts",
        token=t,
        params={"service": "web"},
        content=tarfiles.app("v1"),
        headers={"X-Forwarded-For": "198.51.100.7"},
    )
    assert r.status_code == 403
    audit = srv.api("GET", "/api/audit", params={"actor": "client:near"}).json()
    assert [(e["outcome"], e["client_ip"]) for e in audit if e["outcome"] == "denied"] == [
        ("denied", "198.51.100.7")
    ] * 2
    exchange = srv.api("GET", "/api/audit", params={"action": "auth.client_token"}).json()
    assert ("denied", "127.0.0.1", 403) in {(e["outcome"], e["client_ip"], e["status"]) for e in exchange}


def test_bad_client_definitions(server):
    for body, field in (
        ({"name": "ci", "services": [], "ip_allowlist": ["0.0.0.0/0"]}, "services"),
        ({"name": "ci", "services": ["web"], "ip_allowlist": []}, "ip_allowlist"),
        ({"name": "ci", "services": ["web"], "ip_allowlist": ["10.0.0.300/8"]}, "ip_allowlist.0"),
        ({"name": "ci", "services": ["Web!"], "ip_allowlist": ["0.0.0.0/0"]}, "services.0"),
    ):
        r = server.api("POST", "/api/clients", json=body)
        assert r.status_code == 400, (body, r.text)
        assert field in r.text, (field, r.text)
    _client(server)
    assert (
        server.api(
            "POST", "/api/clients", json={"name": "ci", "services": ["web"], "ip_allowlist": ["0.0.0.0/0"]}
        ).status_code
        == 409
    )


async def test_a_handler_scoped_route_that_never_checks_is_refused(tmp_path):
    """The fail-closed rule of `clients="handler"`, with a route that forgets `authorize_service`, in
    process with the real kernel objects and a real HTTP client."""
    from aiohttp.test_utils import TestClient, TestServer

    from console_api import ConsoleServer
    from core.audit import AuditLog
    from core.bus import EventBus
    from core.clients import ClientRegistry
    from core.identity import Identity
    from core.schema import CORE_MIGRATIONS
    from core.store import Store

    store = Store(tmp_path / "state.db")
    await store.open()
    await store.migrate("core", CORE_MIGRATIONS)
    bus = EventBus(store)
    identity = Identity(store, bus, hash_rounds=4)
    clients = ClientRegistry(store, bus, hash_rounds=4)
    await clients.start()
    api = Api()
    calls = []

    @api.route("GET", "/api/forgetful/{id}", summary="x", clients="handler", returns=dict)
    async def forgetful(req):
        calls.append(req.match["id"])
        return {"secret": "of another service"}

    @api.route("GET", "/api/careful/{id}", summary="x", clients="handler", returns=dict)
    async def careful(req):
        req.authorize_service(req.match["id"])
        return {"ok": True}

    with pytest.raises(ValueError):
        api.route("GET", "/api/x", summary="x", clients="path")
    secret, rec = await clients.create("ci", ["web"], ["127.0.0.1/32"])
    token, _exp, _p = await clients.exchange(rec["client_id"], secret, "127.0.0.1")
    app = ConsoleServer(
        api, identity, AuditLog(store), host="127.0.0.1", port=0, socket_path=None, max_body_bytes=1024, clients=clients
    ).build_app()
    async with TestClient(TestServer(app, host="127.0.0.1")) as http:
        h = {"Authorization": f"Bearer {token}"}
        r = await http.get("/api/forgetful/web", headers=h)
        assert r.status == 403 and (await r.json())["error"]["code"] == "client_scope" and calls == ["web"]
        assert (await http.get("/api/careful/web", headers=h)).status == 200
        assert (await http.get("/api/careful/api", headers=h)).status == 403
    await store.close()
