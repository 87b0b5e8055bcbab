"""The OpenAPI document lists exactly the routes the application serves."""

import re


def test_openapi_matches_the_served_routes(server):
    doc = server.api("GET", "/api/openapi.json", token=None).json()
    assert doc["openapi"].startswith("3.")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert ("GET", "/api/health") in documented and ("POST", "/api/auth/login") in documented
    streams = {(m.upper(), p) for p, ops in doc["paths"].items() for m, op in ops.items()
               if "text/event-stream" in op["responses"]["200"]["content"]}
    assert ("GET", "/api/events") in streams
    # Every documented operation exists on the server: probing it never yields "no such API path"/405.
    for method, path in sorted(documented - streams):
        concrete = re.sub(r"\{[^}]+\}", "0", path)
        r = server.api(method, concrete, json={} if method in ("POST", "PUT", "PATCH") else None)
        assert r.status_code != 405, (method, path)
        if r.status_code == 404:
            assert r.json()["error"]["message"] != f"no such API path: {concrete}", (method, path)


async def test_served_routes_are_exactly_the_documented_ones(tmp_path):
    """In process, with the real kernel objects: the aiohttp router and the document agree both ways."""
    from console_api import Api, ConsoleServer, routes_core
    from console_api.api import openapi_document
    from core.audit import AuditLog
    from core.bus import EventBus
    from core.identity import Identity
    from core.schema import CORE_MIGRATIONS
    from core.store import Store

    store = Store(tmp_path / "state.db")
    await store.open()
    await store.migrate("core", CORE_MIGRATIONS)
    bus = EventBus(store)
    identity = Identity(store, bus, hash_rounds=4)
    api = Api()
    routes_core.register(api, routes_core.CoreContext(identity, AuditLog(store), bus, "test"))
    app = ConsoleServer(api, identity, AuditLog(store), host="127.0.0.1", port=0, socket_path=None,
                        max_body_bytes=1024).build_app()
    served = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        served.add((route.method, re.sub(r"\{(\w+)(?::[^}]*)?\}", r"{\1}", path)))
    doc = openapi_document(api, version="test")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    served.discard(("HEAD", "/api/health"))
    assert {r for r in served if r[0] != "HEAD"} == documented
    await store.close()


def test_every_mutating_operation_requires_auth_except_login(server):
    doc = server.api("GET", "/api/openapi.json", token=None).json()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if method in ("post", "put", "patch", "delete") and path != "/api/auth/login":
                assert op.get("security"), (method, path)
