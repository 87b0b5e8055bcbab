"""The OpenAPI document lists exactly the routes the application serves."""

import asyncio
import re
import tempfile
from pathlib import Path

from tests.conftest import ROOT


def test_openapi_matches_the_served_routes(server):
    doc = server.api("GET", "/api/openapi.json", token=None).json()
    assert doc["openapi"].startswith("3.")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert ("GET", "/api/health") in documented and ("POST", "/api/auth/login") in documented
    streams = {
        (m.upper(), p)
        for p, ops in doc["paths"].items()
        for m, op in ops.items()
        if "text/event-stream" in op["responses"].get("200", {}).get("content", {})
    }
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
    app = ConsoleServer(
        api, identity, AuditLog(store), host="127.0.0.1", port=0, socket_path=None, max_body_bytes=1024
    ).build_app()
    served = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter") or ""
        served.add((route.method, re.sub(r"\{(\w+)(?::[^}]*)?\}", r"{\1}", path)))
    doc = openapi_document(api, version="test")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    served.discard(("HEAD", "/api/health"))
    served.discard(("GET", "/{tail}"))  # the console's pages (console_api/static_ui.py), not the API
    assert {r for r in served if r[0] != "HEAD"} == documented
    await store.close()


def test_every_mutating_operation_requires_auth_except_login(server):
    doc = server.api("GET", "/api/openapi.json", token=None).json()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if method in ("post", "put", "patch", "delete") and path not in (
                "/api/auth/login",
                "/api/auth/session",
                "/api/auth/client-token",
            ):
                assert op.get("security"), (method, path)


def _full_document():
    from fsctl.openapi_dump import document

    return document()


def test_every_operation_has_request_and_response_schemas():
    """The UI's typed client is generated from these: an operation without a schema would be `unknown`
    to it, and a change of shape would not fail the UI's build."""
    doc = _full_document()
    schemas = doc["components"]["schemas"]
    missing = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            ok = op["responses"].get("200") or op["responses"].get("204")
            if "200" in op["responses"] and not any(c.get("schema") for c in ok["content"].values()):
                missing.append(f"{method.upper()} {path}: no response schema (console_api/schemas.py)")
            if method in ("post", "put", "patch") and "requestBody" not in op:
                # Actions on a resource named by the path take no body (start, stop, renew, totp...).
                if not re.search(r"/(start|stop|restart|renew|totp|logout|recovery-codes|run|prune)$", path):
                    missing.append(f"{method.upper()} {path}: no request schema")
    assert not missing, "\n".join(missing)
    # Every $ref resolves.
    text = str(doc)
    for ref in set(re.findall(r"#/components/schemas/([\w.-]+)", text)):
        assert ref in schemas, ref
    # Requests keep their optional fields optional; responses say what is always there.
    assert "tls" not in schemas["RouteSpec"].get("required", [])
    assert {"id", "host", "tls", "policies"} <= set(schemas["Route"]["required"])
    assert doc["paths"]["/api/routes"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RouteSpec"
    }


def test_an_undocumented_route_is_caught():
    from console_api import Api
    from console_api.openapi import build_document, response_of

    api = Api()

    @api.route("GET", "/api/new-thing", summary="x")
    async def new_thing(req):  # pragma: no cover - never called
        return {}

    assert response_of(api.operations[0]) is ...
    doc = build_document(api, version="t")
    assert doc["paths"]["/api/new-thing"]["get"]["responses"]["200"]["content"]["application/json"] == {}


def test_real_responses_match_their_schemas(server):
    """The document describes what the handlers really send (models refuse unknown keys)."""
    from pydantic import TypeAdapter

    from console_api.openapi import response_of
    from fsctl.openapi_dump import full_api

    hello = ROOT / "examples" / "hello" / "hello.yaml"
    assert server.fsctl("service", "apply", "-f", str(hello)).returncode == 0
    assert (
        server.api("POST", "/api/routes", json={"host": "hello.localhost", "upstreams": ["service:hello"]}).status_code
        == 200
    )
    server.api(
        "POST", "/api/alerts/rules", json={"name": "hot", "metric": "host_cpu_percent", "op": ">", "threshold": 1000}
    )
    server.api("POST", "/api/tokens", json={"name": "ci"})
    with tempfile.TemporaryDirectory() as tmp:
        ops = {(op.method, op.path): op for op in asyncio.run(full_api(Path(tmp))).operations}
    concrete = {
        "/api/health": "/api/health",
        "/api/status": "/api/status",
        "/api/auth/me": "/api/auth/me",
        "/api/auth/session": "/api/auth/session",
        "/api/tokens": "/api/tokens",
        "/api/users": "/api/users",
        "/api/audit": "/api/audit",
        "/api/services": "/api/services",
        "/api/services/{name}": "/api/services/hello",
        "/api/services/{name}/status": "/api/services/hello/status",
        "/api/services/{name}/versions": "/api/services/hello/versions",
        "/api/orch/limits": "/api/orch/limits",
        "/api/routes": "/api/routes",
        "/api/routes/{ref:.+}": "/api/routes/1",
        "/api/gate/metrics": "/api/gate/metrics",
        "/api/certs": "/api/certs",
        "/api/logs": "/api/logs?limit=5",
        "/api/logs/services": "/api/logs/services",
        "/api/metrics/query": "/api/metrics/query?name=host_cpu_percent&from=1m",
        "/api/metrics/names": "/api/metrics/names",
        "/api/metrics/top": "/api/metrics/top",
        "/api/services/{id}/metrics": "/api/services/hello/metrics?from=1m",
        "/api/probe/status": "/api/probe/status",
        "/api/alerts": "/api/alerts",
        "/api/alerts/rules": "/api/alerts/rules",
        "/api/alerts/rules/{ref}": "/api/alerts/rules/hot",
    }
    for path, url in concrete.items():
        spec = response_of(ops[("GET", path)])
        r = server.api("GET", url)
        assert r.status_code == 200, (url, r.text)
        TypeAdapter(spec).validate_python(r.json())


def test_real_snap_responses_match_their_schemas(server, tmp_path):
    """Snap's responses, jobs of every kind included (running and finished), against their models."""
    import time

    from pydantic import TypeAdapter

    from console_api.openapi import response_of
    from fsctl.openapi_dump import full_api

    with tempfile.TemporaryDirectory() as tmp:
        ops = {(op.method, op.path): op for op in asyncio.run(full_api(Path(tmp))).operations}

    def check(method, path, url=None, **kw):
        r = server.api(method, url or path, **kw)
        assert r.status_code == 200, (method, url or path, r.text)
        return TypeAdapter(response_of(ops[(method, path)])).validate_python(r.json())

    def finished(job):
        deadline = time.monotonic() + 120
        while job.state == "running":
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
            job = check("GET", "/api/snap/jobs/{id}", f"/api/snap/jobs/{job.id}")
        assert job.state == "done", job
        return job

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("hello\n" * 1000)
    (src / "b.bin").write_bytes(bytes(range(256)) * 200)
    check(
        "POST",
        "/api/snap/plans",
        json={"name": "app", "paths": [str(src)], "cron": "0 3 * * *", "keep_last": 1, "pre_hook": "true"},
    )
    assert check("GET", "/api/snap/plans")[0].next_runs
    backup = check("POST", "/api/snap/plans/{name}/run", "/api/snap/plans/app/run")
    check("GET", "/api/snap/status")
    backup = finished(backup)
    assert backup.result.snapshot.stats.files == 2
    (snap,) = check("GET", "/api/snap/snapshots")
    assert check("GET", "/api/snap/runs")[0].stats.files == 2
    restore = finished(
        check("POST", "/api/snap/restore", json={"snapshot": snap.id, "target": str(tmp_path / "restored")})
    )
    assert restore.result.ok and restore.result.files == 2
    assert finished(check("POST", "/api/snap/scrub", json={"all": True})).result.ok
    assert finished(check("POST", "/api/snap/forget", json={"dry_run": True})).result[0].keep
    assert finished(check("POST", "/api/snap/prune")).result.packs_deleted == 0
    assert check("GET", "/api/snap/shadows") == []
    assert check("GET", "/api/snap/status").jobs == []
    check("DELETE", "/api/snap/plans/{name}", "/api/snap/plans/app")


def test_the_uis_copy_of_the_document_is_current():
    """ui/openapi.json is what the UI's typed client is generated from (`make ui` rewrites it): a route
    or model change must be carried into it, and then `npm run build` type-checks every page against it."""
    import json

    committed = json.loads((ROOT / "ui" / "openapi.json").read_text())
    current = _full_document()
    committed["info"]["version"] = current["info"]["version"]
    assert committed == json.loads(json.dumps(current)), "run: python -m fsctl.openapi_dump ui/openapi.json"
