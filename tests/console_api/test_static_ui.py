"""The console's pages at `/`: caching of hashed assets and of index.html, the SPA fallback for client
routes (never for /api/*), traversal attempts, and the page shown when the UI is not built."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from console_api import Api, ConsoleServer, routes_core
from core.audit import AuditLog
from core.bus import EventBus
from core.identity import Identity
from core.schema import CORE_MIGRATIONS
from core.store import Store


async def _console(tmp_path: Path, ui_dir: Path | None) -> AsyncIterator[str]:
    store = Store(tmp_path / "state.db")
    await store.open()
    await store.migrate("core", CORE_MIGRATIONS)
    bus = EventBus(store)
    identity = Identity(store, bus, hash_rounds=4)
    api = Api()
    routes_core.register(api, routes_core.CoreContext(identity, AuditLog(store), bus, "test"))
    console = ConsoleServer(
        api, identity, AuditLog(store), host="127.0.0.1", port=0, socket_path=None, max_body_bytes=1024, ui_dir=ui_dir
    )
    await console.start()
    try:
        yield f"http://127.0.0.1:{console.bound_port}"
    finally:
        await console.stop(1)
        await store.close()


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    d = tmp_path / "dist"
    (d / "assets").mkdir(parents=True)
    (d / "index.html").write_text('<!doctype html><div id="root"></div><script src="/assets/index-abc123.js">')
    (d / "assets" / "index-abc123.js").write_text("console.log('app');" * 200)
    (d / "favicon.svg").write_text("<svg/>")
    (tmp_path / "secret.txt").write_text("outside the build")
    return d


@pytest.fixture
async def built(tmp_path: Path, dist: Path) -> AsyncIterator[str]:
    async for url in _console(tmp_path, dist):
        yield url


async def test_assets_are_immutable_and_index_is_not_cached(built: str, dist: Path) -> None:
    async with httpx.AsyncClient(base_url=built) as c:
        r = await c.get("/assets/index-abc123.js", headers={"Accept-Encoding": "gzip"})
        assert r.status_code == 200
        assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert r.headers["Content-Encoding"] == "gzip" and r.headers["Content-Type"].startswith("text/javascript")
        assert r.text == (dist / "assets" / "index-abc123.js").read_text()  # httpx undid the gzip
        assert int(r.headers["Content-Length"]) < len(r.text) // 10
        raw = await c.get("/assets/index-abc123.js", headers={"Accept-Encoding": "identity"})
        assert "Content-Encoding" not in raw.headers and raw.text == r.text
        index = await c.get("/")
        assert index.status_code == 200 and 'id="root"' in index.text
        assert index.headers["Cache-Control"] == "no-cache"
        assert "frame-ancestors 'none'" in index.headers["Content-Security-Policy"]
        assert (await c.get("/favicon.svg")).headers["Cache-Control"] == "public, max-age=3600"


async def test_client_routes_get_index_but_api_and_missing_files_do_not(built: str) -> None:
    async with httpx.AsyncClient(base_url=built) as c:
        for path in ("/services", "/services/web", "/gateway/routes/3", "/login?next=/logs"):
            r = await c.get(path)
            assert r.status_code == 200 and 'id="root"' in r.text, path
            assert r.headers["Cache-Control"] == "no-cache"
        for path in ("/api/nope", "/api/services/x/nope", "/api"):
            r = await c.get(path)
            assert r.status_code == 404 and r.headers["Content-Type"].startswith("application/json"), path
            assert r.json()["error"]["code"] == "not_found"
        assert (await c.get("/assets/missing-123.js")).status_code == 404
        assert (await c.get("/robots.txt")).status_code == 404
        assert (await c.get("/api/health")).json()["status"] == "ok"


async def test_traversal_stays_inside_the_build(built: str) -> None:
    async with httpx.AsyncClient(base_url=built) as c:
        for path in (
            "/../secret.txt",
            "/assets/../../secret.txt",
            "/assets/%2e%2e/%2e%2e/secret.txt",
            "/%2e%2e/secret.txt",
            "/assets/..%2f..%2fsecret.txt",
            "/assets/%00.js",
            "/..%5csecret.txt",
        ):
            r = await c.get(path)
            assert "outside the build" not in r.text, path


async def test_without_a_build_the_page_says_how_to_build_it(tmp_path: Path) -> None:
    async for url in _console(tmp_path, None):
        async with httpx.AsyncClient(base_url=url) as c:
            for path in ("/", "/services"):
                r = await c.get(path)
                assert r.status_code == 200 and "make ui" in r.text and "npm run build" in r.text
                assert r.headers["Content-Type"].startswith("text/html")
            assert (await c.get("/api/health")).status_code == 200
            assert (await c.get("/api/nope")).status_code == 404
