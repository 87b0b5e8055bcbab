"""`fsctl route add|edit` against a real `fsctl serve`: HTTPS redirect by default (to the server's own
HTTPS port), `route edit` changing only the given fields, clear errors, and upstream warnings on stderr."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.gate.test_e2e import OriginThread


@pytest.fixture
def origin_thread():
    o = OriginThread()
    yield o
    o.stop()


def test_route_edit_redirect_default_and_warnings(server_factory, origin_thread):
    srv = server_factory()
    helptext = srv.fsctl("route", "add", "--help").stdout
    assert "--no-redirect-https" in helptext and "--hsts SECONDS" in helptext
    assert "Strict-Transport-Security" in srv.fsctl("route", "edit", "--help").stdout

    r = srv.fsctl("route", "add", "--host", "app.test", "--upstream", origin_thread.addr, "--tls", "manual")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    route_id = int(r.stdout.split()[2].rstrip(":"))
    http = f"http://127.0.0.1:{srv.http_port}"
    resp = httpx.get(f"{http}/x/y?a=1&b=%2F", headers={"Host": "app.test"})
    assert resp.status_code == 301
    assert resp.headers["location"] == f"https://app.test:{srv.https_port}/x/y?a=1&b=%2F"
    assert httpx.post(f"{http}/form", headers={"Host": "app.test"}, content=b"x").status_code == 308
    resp = httpx.get(f"{http}/.well-known/acme-challenge/none", headers={"Host": "app.test"})
    assert resp.status_code == 404 and "location" not in resp.headers
    before = json.loads(srv.fsctl("route", "show", str(route_id), "--json").stdout)

    # Only the given fields change.
    r = srv.fsctl("route", "edit", str(route_id), "--hsts", "600")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"updated route {route_id}: app.test (policies.hsts_max_age_s 0 → 600)"
    after = json.loads(srv.fsctl("route", "show", "app.test", "--json").stdout)
    assert after["policies"] == {**before["policies"], "hsts_max_age_s": 600}
    assert {k: v for k, v in after.items() if k not in ("policies", "certificate")} == {
        k: v for k, v in before.items() if k not in ("policies", "certificate")
    }
    r = srv.fsctl("route", "edit", "app.test", "--no-hsts", "--no-redirect-https", "--methods", "GET,POST")
    assert r.returncode == 0, r.stderr
    after = json.loads(srv.fsctl("route", "show", str(route_id), "--json").stdout)
    assert after["policies"]["hsts_max_age_s"] == 0 and after["policies"]["redirect_https"] is False
    assert after["methods"] == ["GET", "POST"] and after["upstreams"] == [origin_thread.addr]
    resp = httpx.get(f"{http}/echo", headers={"Host": "app.test"})
    assert resp.status_code == 200 and resp.json()["path"] == "/echo"  # no longer redirected
    r = srv.fsctl("route", "edit", str(route_id), "--all-methods", "--redirect-https")
    assert (
        r.returncode == 0 and json.loads(srv.fsctl("route", "show", str(route_id), "--json").stdout)["methods"] is None
    )
    assert httpx.get(f"{http}/echo", headers={"Host": "app.test"}).status_code == 301

    # Clear errors: unknown route, nothing to change, conflicting flags, a bad value (route kept).
    r = srv.fsctl("route", "edit", "999", "--hsts", "60")
    assert r.returncode == 1 and "no route with id 999" in r.stderr and "fsctl route ls" in r.stderr
    r = srv.fsctl("route", "edit", str(route_id))
    assert r.returncode == 1 and "nothing to change" in r.stderr
    r = srv.fsctl("route", "edit", str(route_id), "--hsts", "60", "--no-hsts")
    assert r.returncode == 2 and "not allowed with argument" in r.stderr
    r = srv.fsctl("route", "edit", str(route_id), "--tls", "auto", "--host", "*.app.test")
    assert r.returncode == 1 and "tls: auto needs an exact DNS name" in r.stderr
    assert json.loads(srv.fsctl("route", "show", str(route_id), "--json").stdout)["host"] == "app.test"
    # A duplicate add points at `route edit`, not at a hand-made PUT.
    r = srv.fsctl("route", "add", "--host", "app.test", "--upstream", origin_thread.addr)
    assert r.returncode == 1 and "fsctl route edit ID" in r.stderr and "PUT" not in r.stderr

    # Upstreams that look wrong are kept, with warnings on stderr (and in the API answer).
    r = srv.fsctl("route", "add", "--host", "svc.test", "--upstream", "service:doesnotexist")
    assert r.returncode == 0 and r.stdout.startswith("added route")
    assert "warning: upstream service:doesnotexist: orch has no service named 'doesnotexist'" in r.stderr
    r = srv.fsctl("route", "add", "--host", "name.test", "--upstream", "app:8080", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert len(data["warnings"]) == 1 and "upstream host 'app'" in data["warnings"][0]
    assert f"warning: {data['warnings'][0]}" in r.stderr
    r = srv.fsctl("route", "edit", "name.test", "--upstream", "service:nope:http")
    assert r.returncode == 0 and "orch has no service named 'nope'" in r.stderr
    r = srv.fsctl("route", "edit", "name.test", "--hsts", "5")  # upstreams unchanged: no warning again
    assert r.returncode == 0 and r.stderr == ""
    ls = srv.fsctl("route", "ls").stdout
    assert "svc.test" in ls and "name.test" in ls


def test_patch_api_validates_and_audits(server_factory):
    srv = server_factory()
    r = srv.api("POST", "/api/routes", json={"host": "p.test", "upstreams": ["127.0.0.1:9"], "tls": "manual"})
    assert r.status_code == 200 and r.json()["warnings"] == [] and r.json()["policies"]["redirect_https"] is True
    rid = r.json()["id"]
    r = srv.api("PATCH", f"/api/routes/{rid}", json={"policies": {"hsts": 1}})
    assert r.status_code == 400 and "policies.hsts" in r.text
    r = srv.api("PATCH", f"/api/routes/{rid}", json={"policies": {"hsts_max_age_s": 31536000}})
    assert r.status_code == 200 and r.json()["policies"]["hsts_max_age_s"] == 31536000
    assert r.json()["upstreams"] == ["127.0.0.1:9"] and r.json()["warnings"] == []
    r = srv.api("PATCH", "/api/routes/4242", json={"tls": "off"})
    assert r.status_code == 404
    r = srv.api("PUT", f"/api/routes/{rid}", json={"host": "p.test", "upstreams": ["service:ghost"]})
    assert r.status_code == 200 and "no service named 'ghost'" in r.json()["warnings"][0]
    audit = srv.api("GET", "/api/audit").json()
    rows = audit if isinstance(audit, list) else audit.get("entries", audit.get("items", []))
    assert any(a.get("action") == "route.update" for a in rows)
