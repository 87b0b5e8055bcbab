"""Static files: try_files order, SPA fallback, precompressed variants, validators, ranges, traversal."""

from __future__ import annotations

import gzip
import os

import httpx
import pytest

from gate.static import StaticFile, not_modified, pick_file, plan_range


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text("<html>home</html>")
    (root / "assets" / "app.js").write_text("console.log(1);" * 100)
    (root / "assets" / "app.js.gz").write_bytes(gzip.compress((root / "assets" / "app.js").read_bytes()))
    (root / "docs").mkdir()
    (root / "docs" / "index.html").write_text("docs")
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(tmp_path / "secret.txt", root / "leak.txt")
    return root


@pytest.mark.parametrize(
    ("path", "spa", "expected"),
    [
        ("/", False, "index.html"),
        ("/docs", False, "docs/index.html"),
        ("/docs/", False, "docs/index.html"),
        ("/assets/app.js", False, "assets/app.js"),
        ("/nope", False, None),
        ("/nope", True, "index.html"),
        ("/nope.png", True, None),
        ("/leak.txt", False, None),
        ("/%2e%2e/secret.txt", False, None),
        ("/assets/%61pp.js", False, "assets/app.js"),
        ("/a%00b", False, None),
        ("/%ff", False, None),
    ],
)
def test_pick_file(site, path, spa, expected):
    f = pick_file(os.path.realpath(site), path, "", spa=spa)
    if expected is None:
        assert f is None
    else:
        assert f is not None and f.path == os.path.join(os.path.realpath(site), expected)


def test_precompressed_variant_chosen_by_accept_encoding(site):
    f = pick_file(os.path.realpath(site), "/assets/app.js", "br, gzip;q=0.8", spa=False)
    assert f.encoding == "gzip" and f.path.endswith(".gz") and f.content_type.startswith("text/javascript")
    assert pick_file(os.path.realpath(site), "/assets/app.js", "identity", spa=False).encoding is None


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("", 100, None),
        ("bytes=0-9", 100, (0, 9)),
        ("bytes=90-", 100, (90, 99)),
        ("bytes=-10", 100, (90, 99)),
        ("bytes=50-500", 100, (50, 99)),
        ("bytes=100-", 100, False),
        ("bytes=5-1", 100, False),
        ("bytes=0-1,5-6", 100, None),
        ("items=0-1", 100, None),
        ("bytes=x-y", 100, None),
        ("bytes=-0", 100, False),
    ],
)
def test_plan_range(header, size, expected):
    assert plan_range(header, size) == expected


def test_not_modified():
    f = StaticFile("/x", 1, 1_700_000_000.0, "text/plain", None, '"abc"')
    assert not_modified(f, '"abc"', "")
    assert not_modified(f, 'W/"abc", "zzz"', "")
    assert not not_modified(f, '"zzz"', "Wed, 01 Jan 2100 00:00:00 GMT")  # ETag wins
    assert not_modified(f, "", "Wed, 01 Jan 2100 00:00:00 GMT")
    assert not not_modified(f, "", "garbage")


async def test_static_route_end_to_end(gate_factory, site):
    g = await gate_factory()
    g.set_routes({"host": "a", "static_dir": str(site), "static_spa": True, "policies": {"security_headers": True}})
    base = f"http://127.0.0.1:{g.port}"
    async with httpx.AsyncClient() as c:
        r = await c.get(f"{base}/some/client/route", headers={"Host": "a"})
        assert r.status_code == 200 and r.text == "<html>home</html>"
        assert r.headers["x-content-type-options"] == "nosniff"
        r = await c.get(f"{base}/assets/app.js", headers={"Host": "a", "Accept-Encoding": "gzip"})
        assert r.headers["content-encoding"] == "gzip" and r.text == "console.log(1);" * 100
        etag = r.headers["etag"]
        r = await c.get(
            f"{base}/assets/app.js", headers={"Host": "a", "If-None-Match": etag, "Accept-Encoding": "gzip"}
        )
        assert r.status_code == 304 and r.content == b""
        r = await c.get(
            f"{base}/assets/app.js", headers={"Host": "a", "Range": "bytes=0-6", "Accept-Encoding": "identity"}
        )
        assert r.status_code == 206 and r.text == "console" and r.headers["content-range"] == "bytes 0-6/1500"
        r = await c.get(
            f"{base}/assets/app.js", headers={"Host": "a", "Range": "bytes=9999-", "Accept-Encoding": "identity"}
        )
        assert r.status_code == 416
        r = await c.get(f"{base}/leak.txt", headers={"Host": "a"})
        assert r.status_code == 404  # a symlink out of the root is never followed
        r = await c.post(f"{base}/", headers={"Host": "a"})
        assert r.status_code == 405
        r = await c.head(f"{base}/", headers={"Host": "a"})
        assert r.status_code == 200 and r.headers["content-length"] == "17" and r.content == b""
