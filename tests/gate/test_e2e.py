"""End to end: `fsctl serve` in a child process, routes added with the CLI, traffic through the edge port."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time

import httpx
import psutil
import pytest

from tests.gate.conftest import start_origin


class OriginThread:
    """A real origin (aiohttp) on its own loop in a thread, so sync test code can drive fsctl meanwhile."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.origin = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def boot() -> None:
            self.origin = await start_origin()
            self.ready.set()

        self.loop.run_until_complete(boot())
        self.loop.run_forever()

    @property
    def addr(self) -> str:
        return self.origin.addr

    def stop(self) -> None:
        fut = asyncio.run_coroutine_threadsafe(self.origin.runner.cleanup(), self.loop)
        fut.result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        assert not self.thread.is_alive()
        self.loop.close()  # unclosed, it was reported (ResourceWarning) in whichever later test the GC ran


@pytest.fixture
def origin_thread():
    o = OriginThread()
    yield o
    o.stop()


def test_route_add_ls_show_rm_and_proxy(server_factory, origin_thread):
    srv = server_factory()
    r = srv.fsctl("route", "add", "--host", "app.test", "--upstream", origin_thread.addr, "--path", "/api", "--strip")
    assert r.returncode == 0, r.stderr
    assert "added route 1: app.test/api" in r.stdout
    resp = httpx.get(f"http://127.0.0.1:{srv.http_port}/api/echo/x", headers={"Host": "app.test"})
    assert resp.status_code == 200 and resp.json()["path"] == "/echo/x"

    ls = srv.fsctl("route", "ls")
    assert ls.returncode == 0 and "app.test" in ls.stdout and "strip" in ls.stdout
    show = srv.fsctl("route", "show", "app.test/api")
    assert show.returncode == 0, show.stderr
    assert "upstreams:" in show.stdout and "1 requests" in show.stdout

    bad = srv.fsctl("route", "add", "--host", "bad host", "--upstream", origin_thread.addr)
    assert bad.returncode == 1 and "host" in bad.stderr and "not a valid DNS name" in bad.stderr
    dup = srv.fsctl("route", "add", "--host", "app.test", "--upstream", origin_thread.addr, "--path", "/api")
    assert dup.returncode == 1 and "already exists" in dup.stderr

    metrics = srv.api("GET", "/api/gate/metrics").json()
    assert metrics["routes"]["app.test/api"]["status"]["2xx"] == 1

    with httpx.Client() as c:
        for i in range(10):
            r = c.get(f"http://127.0.0.1:{srv.http_port}/api/echo/{i}", headers={"Host": "app.test"})
            assert r.status_code == 200
    rm = srv.fsctl("route", "rm", "1")
    assert rm.returncode == 0 and "removed route 1" in rm.stdout
    resp = httpx.get(f"http://127.0.0.1:{srv.http_port}/api/echo/x", headers={"Host": "app.test"})
    assert resp.status_code == 404

    # Every request is one access-log line in logbus, and the metrics count each one.
    deadline = time.monotonic() + 20
    lines: list = []
    while time.monotonic() < deadline:
        lines = srv.api("GET", "/api/logs?service=gate-access&limit=100").json()["lines"]
        if len(lines) >= 12:
            break
        time.sleep(0.2)
    assert len(lines) == 12, lines[-3:]
    assert "/echo/9" in json.dumps(lines) and "app.test/api" in json.dumps(lines)
    metrics = srv.api("GET", "/api/gate/metrics").json()
    assert metrics["total"]["requests"] == 12
    assert metrics["routes"]["app.test/api"]["status"]["2xx"] == 11

    audit = srv.api("GET", "/api/audit?action=route.*").json()
    assert {a["action"] for a in audit} >= {"route.add", "route.remove"}


def test_routes_survive_restart_and_acme_challenge_is_served_first(server_factory, origin_thread):
    srv = server_factory()
    r = srv.fsctl("route", "add", "--host", "*", "--upstream", origin_thread.addr, "--tls", "manual")
    assert r.returncode == 0, r.stderr
    # TLS → redirected by default, to the gate's HTTPS port (not the default 443 nothing listens on).
    resp = httpx.get(f"http://127.0.0.1:{srv.http_port}/x", headers={"Host": "a.test"})
    assert resp.status_code == 301 and resp.headers["location"] == f"https://a.test:{srv.https_port}/x"
    # Unknown ACME token: answered by the gate (404), never redirected.
    resp = httpx.get(f"http://127.0.0.1:{srv.http_port}/.well-known/acme-challenge/abc", headers={"Host": "a.test"})
    assert resp.status_code == 404
    assert srv.stop() == 0
    srv2 = server_factory("data")  # the same data dir
    resp = httpx.get(f"http://127.0.0.1:{srv2.http_port}/x", headers={"Host": "b.test"})
    assert resp.status_code == 301 and resp.headers["location"] == f"https://b.test:{srv2.https_port}/x"
    resp = httpx.post(f"http://127.0.0.1:{srv2.http_port}/x", headers={"Host": "b.test"})
    assert resp.status_code == 308


def test_big_bodies_both_ways_keep_gate_memory_small(server_factory, origin_thread):
    """A large upload and download through `fsctl serve`; the server's RSS stays bounded throughout.
    Size: INFRACORE_TEST_BIG_MB (default 256 MiB each way; the issue's 1 GB runs with =1024)."""
    total = int(os.environ.get("INFRACORE_TEST_BIG_MB", "256")) * 1024 * 1024
    srv = server_factory()
    added = srv.fsctl("route", "add", "--host", "big.test", "--upstream", origin_thread.addr, "--max-body", "0")
    assert added.returncode == 0, added.stderr
    proc = psutil.Process(srv.proc.pid)
    base_rss = proc.memory_info().rss
    peak = base_rss
    block = b"u" * (1024 * 1024)

    def body():
        nonlocal peak
        for i in range(total // len(block)):
            if i % 16 == 0:
                peak = max(peak, proc.memory_info().rss)
            yield block

    url = f"http://127.0.0.1:{srv.http_port}"
    with httpx.Client(timeout=120) as c:
        r = c.post(f"{url}/upload", headers={"Host": "big.test"}, content=body())
        assert r.status_code == 200 and r.json()["received"] == total
        got = 0
        with c.stream("GET", f"{url}/big?bytes={total}", headers={"Host": "big.test"}) as resp:
            for i, chunk in enumerate(resp.iter_raw(1024 * 1024)):
                got += len(chunk)
                if i % 16 == 0:
                    peak = max(peak, proc.memory_info().rss)
    assert got == total
    print(f"gate RSS: base {base_rss >> 20} MiB, peak {peak >> 20} MiB for {total >> 20} MiB each way")
    assert peak - base_rss < 40 * 1024 * 1024, (base_rss, peak)


def test_api_validation_roles_and_hidden_hashes(server_factory, origin_thread):
    import bcrypt

    srv = server_factory()
    bad = srv.api("POST", "/api/routes", json={"host": "a.test", "upstreams": ["nope"], "colour": "red"})
    assert bad.status_code == 400
    fields = {e["field"] for e in bad.json()["error"]["details"]["errors"]}
    assert fields == {"upstreams", "colour"}
    h = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    spec = {
        "host": "a.test",
        "upstreams": [origin_thread.addr],
        "policies": {"basic_auth": [{"username": "ann", "bcrypt_hash": h}]},
    }
    r = srv.api("POST", "/api/routes", json=spec)
    assert r.status_code == 200, r.text
    rid = r.json()["id"]
    assert srv.api("GET", f"/api/routes/{rid}").json()["policies"]["basic_auth"][0]["bcrypt_hash"] == h
    # A viewer sees the route but not the hash, and cannot change it.
    srv.api("POST", "/api/users", json={"username": "vic", "password": "viewer-pw-1", "role": "viewer"})
    vtok = srv.login("vic", "viewer-pw-1")
    seen = srv.api("GET", "/api/routes", token=vtok).json()
    assert seen[0]["policies"]["basic_auth"][0]["bcrypt_hash"] == "[hidden]"
    assert srv.api("DELETE", f"/api/routes/{rid}", token=vtok).status_code == 403
    # PUT replaces the spec atomically; the audit log never holds the hash.
    spec["path"], spec["strip_prefix"] = "/v2", True
    r = srv.api("PUT", f"/api/routes/{rid}", json=spec)
    assert r.status_code == 200 and r.json()["path"] == "/v2"
    audit = srv.api("GET", "/api/audit?action=route.*").json()
    assert audit and h not in json.dumps(audit)
    assert srv.api("GET", "/api/routes/a.test/v2").json()["id"] == rid
    assert srv.api("DELETE", "/api/routes/999").status_code == 404
    resp = httpx.get(f"http://127.0.0.1:{srv.http_port}/v2/echo", headers={"Host": "a.test"}, auth=("ann", "pw"))
    assert resp.status_code == 200


def test_route_request_buffer_option(server_factory, origin_thread):
    srv = server_factory()
    r = srv.fsctl("route", "add", "--host", "buf.test", "--upstream", origin_thread.addr, "--request-buffer", "1Ki")
    assert r.returncode == 0, r.stderr
    assert srv.api("GET", "/api/routes/buf.test").json()["request_buffer_bytes"] == 1024
    resp = httpx.post(f"http://127.0.0.1:{srv.http_port}/echo", headers={"Host": "buf.test"}, content=b"x" * 3000)
    assert resp.status_code == 200 and resp.json()["body_len"] == 3000  # past the buffer: streamed, whole
    bad = srv.fsctl("route", "add", "--host", "buf2.test", "--upstream", origin_thread.addr, "--request-buffer", "lots")
    assert bad.returncode != 0 and "--request-buffer" in bad.stderr
