"""Static files as an attacker (and a careless operator) would use them: roots that publish the system
or the platform's data refused everywhere routes are validated (model, service, CLI); files an
unprivileged user could not read, dotfiles, symlinks out of the root and encoded traversal answer 404
through a real gate on a real socket, while ordinary files keep their validators and ranges."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from core.bus import EventBus
from core.errors import ValidationFailed
from core.schema import CORE_MIGRATIONS
from core.store import Store
from gate.config import GateConfig
from gate.routes import RouteSpec
from gate.service import GateService
from gate.static import check_static_root, pick_file, static_root_problem

SECRET = b"TOP-SECRET-CONTENT"
DATA = "/data/ic"


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/", "whole file system"),
        ("//", "whole file system"),
        ("/.", "whole file system"),
        ("/etc", "/etc"),
        ("/etc/nginx/html", "/etc"),
        ("/root", "/root"),
        ("/root/site", "/root"),
        ("/proc/self/root", "/proc"),
        ("/sys", "/sys"),
        ("/dev", "/dev"),
        ("/boot", "/boot"),
        ("/run/secrets", "/run"),
        ("/var/lib", "/var/lib"),
        ("/var/lib/docker/volumes/x", "/var/lib"),
        ("/var/log/nginx", "/var/log"),
        ("/usr", "/usr"),
        ("/usr/share/nginx/html", "/usr"),
        ("/bin", "/bin"),
        ("/sbin", "/sbin"),
        ("/lib64", "/lib64"),
        ("/var", "contains the system directory"),
        ("/home", "other users"),
        ("/home/", "other users"),
        ("/srv", "other users"),
        ("/tmp", "other users"),
        ("/opt", "other users"),
        ("/mnt", "other users"),
        ("/srv/www/../../etc", "/etc"),
        ("/srv/./../etc/ssl", "/etc"),
        (DATA, "it is the platform's data dir"),
        (DATA + "/certs", "inside the platform's data dir"),
        ("/data", "contains the platform's data dir"),
    ],
)
def test_refused_roots(path, why):
    problem = static_root_problem(path, DATA)
    assert problem is not None and why in problem


@pytest.mark.parametrize(
    "path",
    [
        "/srv/www",
        "/var/www/html",
        "/var/www",
        "/home/ann/site",
        "/tmp/build",
        "/data/other",
        "/data2",
        "/opt/app/dist",
        "/srv/etc",
    ],
)
def test_allowed_roots(path):
    assert static_root_problem(path, DATA) is None


def test_symlinks_are_resolved_before_judging(tmp_path: Path):
    data = tmp_path / "data"
    (data / "certs").mkdir(parents=True)
    (tmp_path / "www").mkdir()
    links = {"to-root": "/", "to-etc": "/etc", "to-data-certs": str(data / "certs"), "to-tmp-parent": str(tmp_path)}
    for name, target in links.items():
        os.symlink(target, tmp_path / "www" / name)
    assert check_static_root(str(tmp_path / "www"), str(data)) is None
    for name, why in [
        ("to-root", "whole file system"),
        ("to-etc", "/etc"),
        ("to-data-certs", "data dir"),
        ("to-tmp-parent", "contains the platform's data dir"),
    ]:
        problem = check_static_root(str(tmp_path / "www" / name), str(data))
        assert problem is not None and "resolves to" in problem and why in problem, (name, problem)
    # The data dir itself given through a symlink is recognised too.
    os.symlink(data, tmp_path / "data-link")
    assert "data dir" in (check_static_root(str(data / "certs"), str(tmp_path / "data-link")) or "")


def test_route_model_refuses_system_roots_with_the_field_and_reason():
    with pytest.raises(ValidationError, match=r"static_dir '/' cannot be served: it is the whole file system"):
        RouteSpec(host="a.test", static_dir="/")
    with pytest.raises(ValidationError, match="inside the system directory /etc"):
        RouteSpec(host="a.test", static_dir="/etc/infracore")
    with pytest.raises(ValidationError, match="static_dotfiles applies only"):
        RouteSpec(host="a.test", upstreams=["127.0.0.1:1"], static_dotfiles="allow")
    with pytest.raises(ValidationError, match="static_dotfiles"):
        RouteSpec(host="a.test", static_dir="/srv/www", static_dotfiles="yes")  # type: ignore[arg-type]
    assert RouteSpec(host="a.test", static_dir="/srv/www").static_dotfiles == "deny"


@pytest.fixture
async def service_with_data_dir(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    store = Store(data / "state.db")
    await store.open()
    await store.migrate("core", CORE_MIGRATIONS)
    bus = EventBus(store)
    await bus.start()
    svc = GateService(GateConfig(), store=store, bus=bus, listen_host="127.0.0.1", listen_port=0, data_dir=data)
    await svc.start()
    yield svc
    await svc.stop(2.0)
    bus.close()
    await store.close()


async def test_service_refuses_data_dir_and_symlinked_system_roots(service_with_data_dir: GateService, tmp_path: Path):
    svc = service_with_data_dir
    (tmp_path / "data" / "certs").mkdir()
    (tmp_path / "www").mkdir()
    os.symlink("/etc", tmp_path / "etc-link")
    ok = await svc.add_route(RouteSpec(host="ok.test", static_dir=str(tmp_path / "www")))
    for host, root, why in [
        ("d.test", tmp_path / "data" / "certs", "inside the platform's data dir"),
        ("p.test", tmp_path, "contains the platform's data dir"),
        ("e.test", tmp_path / "etc-link", "resolves to /etc"),
    ]:
        with pytest.raises(ValidationFailed) as e:
            await svc.add_route(RouteSpec(host=host, static_dir=str(root)))
        assert f"invalid route {host}: static_dir" in e.value.message and why in e.value.message
        assert e.value.details["errors"][0]["field"] == "static_dir" and e.value.hint
    # Updating the good route to a bad root is refused as well; the table (and the DB) keep the old one.
    with pytest.raises(ValidationFailed, match="resolves to /etc"):
        await svc.update_route(ok.id, RouteSpec(host="ok.test", static_dir=str(tmp_path / "etc-link")))
    assert [r.spec for r in svc.routes()] == [ok.spec]
    rows = await svc.store.fetchall("SELECT host FROM gate_routes")
    assert [r["host"] for r in rows] == ["ok.test"]


async def test_stored_route_whose_root_became_a_system_dir_is_skipped_at_start(
    service_with_data_dir: GateService, tmp_path: Path
):
    svc = service_with_data_dir
    (tmp_path / "www").mkdir()
    bad = tmp_path / "www-link"
    os.symlink(tmp_path / "www", bad)
    await svc.add_route(RouteSpec(host="a.test", static_dir=str(bad)))
    await svc.add_route(RouteSpec(host="b.test", static_dir=str(tmp_path / "www")))
    os.unlink(bad)
    os.symlink("/etc", bad)  # someone re-points the link while the platform is down
    other = GateService(
        GateConfig(), store=svc.store, bus=svc.bus, listen_host="127.0.0.1", listen_port=0, data_dir=tmp_path / "data"
    )
    await other.start()
    try:
        assert [r.spec.host for r in other.routes()] == ["b.test"]
    finally:
        await other.stop(1)


def test_cli_route_add_refuses_system_and_data_roots(server_factory, tmp_path: Path):
    srv = server_factory()
    os.symlink("/etc", tmp_path / "innocent")
    for root, why in [
        ("/", "it is the whole file system"),
        ("/etc", "inside the system directory /etc"),
        (str(srv.data_dir), "it is the platform's data dir"),
        (str(tmp_path / "innocent"), "resolves to /etc"),
    ]:
        r = srv.fsctl("route", "add", "--host", "s.test", "--static-dir", root)
        assert r.returncode != 0, (root, r.stdout)
        assert "static_dir" in r.stderr and why in r.stderr, (root, r.stderr)
    r = srv.fsctl("route", "ls", "--json")
    assert r.returncode == 0 and "s.test" not in r.stdout


# --- serving ---------------------------------------------------------------------------------------------


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "site"
    r.mkdir()
    os.chmod(r, 0o755)
    _write(r / "index.html", b"<html>home</html>")
    _write(r / "app.js", b"x" * 1000)
    _write(r / "secret600.txt", SECRET, 0o600)
    _write(r / "no-other-read.txt", SECRET, 0o640)
    _write(r / "private" / "file.txt", SECRET)
    os.chmod(r / "private", 0o700)
    _write(r / "searchable" / "file.txt", b"public-in-searchable")  # o+x without o+r on the directory: fine
    os.chmod(r / "searchable", 0o711)
    _write(r / ".env", SECRET)
    _write(r / ".htpasswd", SECRET)
    _write(r / ".git" / "config", SECRET)
    _write(r / "assets" / ".hidden", SECRET)
    _write(r / ".well-known" / "security.txt", b"Contact: mailto:sec@example.test")
    _write(r / ".well-known" / ".private", SECRET)
    os.symlink(".git/config", r / "config.txt")  # a plain name resolving to a dotfile
    _write(tmp_path / "outside.txt", SECRET)
    os.symlink(tmp_path / "outside.txt", r / "leak.txt")
    os.symlink(tmp_path, r / "up")  # a directory symlink out of the root
    os.symlink("/etc", r / "etc")
    return r


# Names that exist but must look missing: exactly 404, like a file that is not there.
HIDDEN = [
    "/secret600.txt",
    "/no-other-read.txt",
    "/private/file.txt",
    "/.env",
    "/.htpasswd",
    "/.git/config",
    "/.git/",
    "/assets/.hidden",
    "/.well-known/.private",
    "/config.txt",
    "/leak.txt",
    "/up/outside.txt",
    "/etc/passwd",
    "/etc/hostname",
    "/%2eenv",
    "/%2Egit/config",
    "/.%65nv",
    "/private%2ffile.txt",
]
# Traversal and encoding tricks: refused by the parser (400) or by the file picker (404).
TRICKS = [
    "/%2e%2e/outside.txt",
    "/%2E%2E/outside.txt",
    "/..%2foutside.txt",
    "/..%2Foutside.txt",
    "/%2e%2e%2foutside.txt",
    "/.%2e/outside.txt",
    "/assets/..%2f..%2foutside.txt",
    "/%252e%252e/outside.txt",
    "/..%5coutside.txt",
    "/%5c..%5coutside.txt",
    "/..\\outside.txt",
    "/secret600.txt%00.html",
    "/%00",
    "/%c0%ae%c0%ae/outside.txt",
    "/%ff",
    "/./secret600.txt",
    "/assets/../.env",
    "/up/../up/outside.txt",
]


async def _get(g, target: str) -> tuple[int, bytes]:
    raw = await g.raw(f"GET {target} HTTP/1.1\r\nHost: s.test\r\nConnection: close\r\n\r\n".encode())
    return int(raw.split(b" ", 2)[1]), raw


async def test_attacks_get_nothing_over_real_sockets(gate_factory, root: Path):
    g = await gate_factory()
    g.set_routes({"host": "s.test", "static_dir": str(root)})
    for target in HIDDEN:
        status, raw = await _get(g, target)
        assert status == 404 and SECRET not in raw and b"root:" not in raw, (target, raw[:200])
    for target in TRICKS:
        status, raw = await _get(g, target)
        assert status in (400, 404) and SECRET not in raw, (target, raw[:200])
    _, missing = await _get(g, "/no-such-file")
    _, hidden = await _get(g, "/secret600.txt")
    assert missing.split(b"\r\n", 1)[0] == hidden.split(b"\r\n", 1)[0]  # indistinguishable status lines
    assert (await _get(g, "/app.js"))[0] == 200  # the same gate still serves what is public


async def test_spa_fallback_does_not_reveal_hidden_files(gate_factory, root: Path):
    g = await gate_factory()
    g.set_routes({"host": "s.test", "static_dir": str(root), "static_spa": True})
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{g.port}", headers={"Host": "s.test"}) as c:
        for path in ["/private/file.txt", "/.git/config", "/.env", "/private"]:
            r = await c.get(path)
            assert SECRET.decode() not in r.text, path
            assert r.status_code == 404 or r.text == "<html>home</html>", (path, r.status_code)


async def test_public_files_keep_validators_and_ranges(gate_factory, root: Path):
    g = await gate_factory()
    g.set_routes({"host": "s.test", "static_dir": str(root)})
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{g.port}", headers={"Host": "s.test"}) as c:
        r = await c.get("/app.js")
        assert r.status_code == 200 and r.content == b"x" * 1000 and r.headers["accept-ranges"] == "bytes"
        etag = r.headers["etag"]
        assert (await c.get("/app.js", headers={"If-None-Match": etag})).status_code == 304
        r = await c.get("/app.js", headers={"Range": "bytes=10-19"})
        assert r.status_code == 206 and r.content == b"x" * 10 and r.headers["content-range"] == "bytes 10-19/1000"
        r = await c.get("/searchable/file.txt")
        assert r.status_code == 200 and r.text == "public-in-searchable"
        r = await c.get("/.well-known/security.txt")
        assert r.status_code == 200 and r.text.startswith("Contact:")
        assert (await c.get("/")).text == "<html>home</html>"


async def test_dotfiles_served_only_when_the_route_opts_in(gate_factory, root: Path):
    g = await gate_factory()
    g.set_routes({"host": "s.test", "static_dir": str(root), "static_dotfiles": "allow"})
    os.chmod(root / ".env", 0o644)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{g.port}", headers={"Host": "s.test"}) as c:
        assert (await c.get("/.env")).content == SECRET
        assert (await c.get("/.git/config")).content == SECRET
        assert (await c.get("/config.txt")).content == SECRET
        # Opting in to dotfiles does not lift the other rules.
        os.chmod(root / ".env", 0o600)
        assert (await c.get("/.env")).status_code == 404
        assert (await c.get("/private/file.txt")).status_code == 404
        assert (await c.get("/leak.txt")).status_code == 404


def test_precompressed_variant_obeys_the_same_rules(root: Path):
    _write(root / "big.js", b"y" * 100)
    _write(root / "big.js.gz", SECRET, 0o600)  # a variant nobody else may read is never chosen
    real = os.path.realpath(root)
    f = pick_file(real, "/big.js", "gzip", spa=False)
    assert f is not None and f.encoding is None and f.path.endswith("big.js")
    os.chmod(root / "big.js.gz", 0o644)
    f = pick_file(real, "/big.js", "gzip", spa=False)
    assert f is not None and f.encoding == "gzip"


def test_permission_rule_reads_modes_not_euid(root: Path):
    """The suite runs as root, which can open everything: the rule must come from the modes alone."""
    real = os.path.realpath(root)
    assert pick_file(real, "/app.js", "", spa=False) is not None
    for path, mode in [(root / "app.js", 0o640), (root, 0o750)]:
        old = stat.S_IMODE(os.stat(path).st_mode)
        os.chmod(path, mode)
        try:
            assert pick_file(real, "/app.js", "", spa=False) is None, oct(mode)
        finally:
            os.chmod(path, old)


def test_a_file_swapped_after_its_checks_is_not_opened(root: Path, tmp_path: Path):
    """A local user who can write in the site swaps a symlink to a secret in for a file (or for a
    directory above it) between `pick_file`'s checks and the open: the open refuses it."""
    from gate._static_io import open_checked

    real = os.path.realpath(root)
    _write(root / "sub" / "page.txt", b"page")
    secret = tmp_path / "shadow"
    _write(secret, SECRET, 0o600)
    f = pick_file(real, "/sub/page.txt", "", spa=False)
    assert f is not None
    with open_checked(f) as fh:
        assert fh.read() == b"page"
    os.unlink(root / "sub" / "page.txt")
    os.symlink(secret, root / "sub" / "page.txt")  # the file itself becomes a symlink
    with pytest.raises(OSError):
        open_checked(f)
    os.rename(root / "sub", root / "sub-old")
    _write(tmp_path / "elsewhere" / "page.txt", SECRET)
    os.symlink(tmp_path / "elsewhere", root / "sub")  # a directory above it becomes a symlink
    with pytest.raises(OSError, match="changed"):
        open_checked(f)
    os.unlink(root / "sub")
    _write(root / "sub" / "page.txt", b"new content, new inode")
    with pytest.raises(OSError, match="changed"):
        open_checked(f)  # replaced: pick again (a new request does)
    assert pick_file(real, "/sub/page.txt", "", spa=False) is not None
