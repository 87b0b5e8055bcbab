"""HTTPS by default: routes with TLS redirect plain HTTP (301 GET/HEAD, 308 otherwise) to the gate's own
HTTPS port and the route's own host, never the ACME path; `redirect_https: false` and `tls: off` routes
are proxied. The rules as a table, then through the real `GateService` (state DB, HTTP and HTTPS
listeners) on loopback sockets, including hostile Host headers and the migration of stored routes."""

from __future__ import annotations

import asyncio
import json
import ssl
import time

import httpx
import pytest
import trustme
from cryptography import x509

from core.bus import EventBus
from core.ports import CertificateBoard, CertificateRef
from core.schema import CORE_MIGRATIONS
from core.store import Store
from gate.config import GateConfig
from gate.policies import CompiledPolicies, https_redirect
from gate.routes import RouteSpec
from gate.service import MIGRATIONS, GateService
from tests.gate.conftest import Origin


def _policies(host: str = "a.test", tls: str = "manual", port: int | None = 8443, **pol: object) -> CompiledPolicies:
    spec = RouteSpec(host=host, upstreams=["127.0.0.1:1"], tls=tls, policies=pol)
    return CompiledPolicies(spec.policies, https_redirect(spec, port))


# (route host, tls, redirect_https, https port, scheme, method, request host, target) → (status, Location)
CASES = [
    # Plain GET/HEAD → 301; other methods keep method and body → 308. The HTTPS port is kept unless 443.
    (
        ("a.test", "manual", True, 8443, "http", b"GET", "a.test", "/p?q=1&r=%2F"),
        (301, "https://a.test:8443/p?q=1&r=%2F"),
    ),
    (("a.test", "auto", True, 8443, "http", b"HEAD", "a.test", "/"), (301, "https://a.test:8443/")),
    (("a.test", "auto", True, 8443, "http", b"POST", "a.test", "/form"), (308, "https://a.test:8443/form")),
    (("a.test", "auto", True, 8443, "http", b"DELETE", "a.test", "/x"), (308, "https://a.test:8443/x")),
    (("a.test", "auto", True, 443, "http", b"GET", "a.test", "/x"), (301, "https://a.test/x")),
    (("a.test", "auto", True, None, "http", b"GET", "a.test", "/x"), (301, "https://a.test/x")),
    # The path and query exactly as sent (no decoding, no normalising); a target that looks like an
    # authority stays a path after our host.
    (
        ("a.test", "auto", True, 8443, "http", b"GET", "a.test", "//evil.example/x?u=https://evil.example"),
        (301, "https://a.test:8443//evil.example/x?u=https://evil.example"),
    ),
    (
        ("a.test", "auto", True, 8443, "http", b"GET", "a.test", "/%7E/a b?x=%00&y"),
        (301, "https://a.test:8443/%7E/a b?x=%00&y"),
    ),
    # An exact route names itself, whatever host the request matched it with.
    (("a.test", "manual", True, 8443, "http", b"GET", "other.test", "/"), (301, "https://a.test:8443/")),
    # Wildcard and catch-all routes name the (already validated) host the router matched.
    (("*.w.test", "manual", True, 8443, "http", b"GET", "x.w.test", "/"), (301, "https://x.w.test:8443/")),
    (("*", "manual", True, 8443, "http", b"GET", "[::1]", "/"), (301, "https://[::1]:8443/")),
    (("*", "manual", True, 8443, "http", b"GET", "", "/"), (400, None)),  # HTTP/1.0 without Host
    (("[::1]", "manual", True, 8443, "http", b"GET", "[::1]", "/v6"), (301, "https://[::1]:8443/v6")),
    # Never: over HTTPS, on the ACME path, for OPTIONS *, without TLS, or when turned off.
    (("a.test", "auto", True, 8443, "https", b"GET", "a.test", "/"), (None, None)),
    (("a.test", "auto", True, 8443, "http", b"GET", "a.test", "/.well-known/acme-challenge/tok"), (None, None)),
    (("a.test", "auto", True, 8443, "http", b"OPTIONS", "a.test", "*"), (None, None)),
    (("a.test", "off", True, 8443, "http", b"GET", "a.test", "/"), (None, None)),
    (("a.test", "manual", False, 8443, "http", b"GET", "a.test", "/"), (None, None)),
]


@pytest.mark.parametrize(("given", "expected"), CASES)
def test_redirect_table(given, expected):
    host, tls, on, port, scheme, method, req_host, target = given
    v = _policies(host, tls, port, redirect_https=on).check_redirect(scheme, method, req_host, target)
    status, location = expected
    if status is None:
        assert v is None
        return
    assert v is not None and v.status == status
    assert dict(v.headers).get(b"Location") == (location.encode() if location else None)


def test_redirect_is_the_default_only_with_tls():
    assert RouteSpec(host="a.test", upstreams=["127.0.0.1:1"]).policies.redirect_https is True
    assert _policies(tls="off").redirect is None and _policies(tls="off").trivial
    assert _policies(tls="auto").redirect is not None and not _policies(tls="auto").trivial
    assert _policies(tls="auto", redirect_https=False).redirect is None


def _trivial(pol, scheme: str) -> bool:
    """What the hot path (Exchange) tests: `trivial_https` for an HTTPS request, `trivial` for plain HTTP."""
    return pol.trivial_https if scheme == "https" else pol.trivial


def test_https_requests_on_a_default_tls_route_take_the_fast_path():
    """The redirect applies only to plain HTTP: an HTTPS request on a route with TLS and default policies
    has nothing to check (the hot path skips the policy calls); plain HTTP still goes through them."""
    pol = _policies(tls="auto")
    assert _trivial(pol, "https") and pol.trivial_https
    assert not _trivial(pol, "http") and not pol.trivial
    assert pol.check_redirect("http", b"GET", "a.test", "/") is not None
    off = _policies(tls="off")
    assert _trivial(off, "http") and _trivial(off, "https")
    # Any other check still runs for HTTPS too.
    for pol in (
        _policies(tls="auto", allow=["10.0.0.0/8"]),
        _policies(tls="auto", deny=["10.0.0.0/8"]),
        _policies(tls="off", allow=["10.0.0.0/8"]),
    ):
        assert not _trivial(pol, "https") and not _trivial(pol, "http")


@pytest.mark.parametrize(("given", "expected"), CASES)
def test_a_scheme_the_fast_path_skips_is_never_redirected(given, expected):
    host, tls, on, port, _scheme, method, req_host, target = given
    pol = _policies(host, tls, port, redirect_https=on)
    for s in ("http", "https"):
        if _trivial(pol, s):
            assert pol.check_redirect(s, method, req_host, target) is None
    # A route that redirects checks every plain-HTTP request; an HTTPS request never needs the checks.
    assert _trivial(pol, "http") is (tls == "off" or not on)
    assert _trivial(pol, "https")


# --- through the real gate ----------------------------------------------------------------------------


class Certs:
    """A throwaway CA whose leaves are published on a real CertificateBoard (what certd does)."""

    def __init__(self, board: CertificateBoard, tmp) -> None:
        self.board, self.tmp, self.ca, self.n = board, tmp, trustme.CA(), 0

    def publish(self, *names: str) -> None:
        self.n += 1
        leaf = self.ca.issue_cert(*names)
        cert_path, key_path = self.tmp / f"leaf{self.n}.crt", self.tmp / f"leaf{self.n}.key"
        cert_path.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
        key_path.write_bytes(leaf.private_key_pem.bytes())
        cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
        self.board.publish(
            CertificateRef(
                names=tuple(names),
                cert_path=str(cert_path),
                key_path=str(key_path),
                not_after=cert.not_valid_after_utc.timestamp(),
                issuer="test CA",
                serial=format(cert.serial_number, "x"),
                source="imported",
            )
        )

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx


@pytest.fixture
async def store(tmp_path):
    store = Store(tmp_path / "state.db")
    await store.open()
    await store.migrate("core", CORE_MIGRATIONS)
    bus = EventBus(store)
    await bus.start()
    store.bus = bus  # type: ignore[attr-defined]
    yield store
    bus.close()
    await store.close()


async def _service(store: Store, tmp_path, https_port: int | None = 0) -> tuple[GateService, CertificateBoard]:
    board = CertificateBoard()
    svc = GateService(
        GateConfig(),
        store=store,
        bus=store.bus,
        listen_host="127.0.0.1",  # type: ignore[attr-defined]
        listen_port=0,
        certificates=board,
        https_port=https_port,
        data_dir=tmp_path,
    )
    await svc.start()
    return svc, board


async def _raw(port: int, head: bytes, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """One request with exact bytes on a fresh connection: (status, headers lowercased, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + body)
        await writer.drain()
        async with asyncio.timeout(10):
            data = await reader.read(65536)
            while b"\r\n\r\n" not in data:
                more = await reader.read(65536)
                if not more:
                    break
                data += more
    finally:
        writer.close()
    top, _, rest = data.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    return int(lines[0].split()[1]), headers, rest


async def test_redirect_defaults_through_the_real_gate(store, tmp_path, origin: Origin):
    svc, board = await _service(store, tmp_path)
    try:
        tls_port = svc.tls.port
        assert tls_port != 443
        certs = Certs(board, tmp_path)
        await svc.add_route(RouteSpec(host="a.test", upstreams=[origin.addr], tls="manual"))
        await svc.add_route(
            RouteSpec(host="keep.test", upstreams=[origin.addr], tls="manual", policies={"redirect_https": False})
        )
        await svc.add_route(RouteSpec(host="plain.test", upstreams=[origin.addr]))
        await svc.add_route(RouteSpec(host="*.w.test", upstreams=[origin.addr], tls="manual"))
        await svc.add_route(RouteSpec(host="[::1]", upstreams=[origin.addr], tls="manual"))
        certs.publish("a.test")
        svc.state.challenges.put("tok1", "tok1.keyauth")
        http = f"http://127.0.0.1:{svc.bound_port}"
        async with httpx.AsyncClient() as c:
            r = await c.get(f"{http}/p/q?x=1&y=%2F&z", headers={"Host": "a.test"})
            assert r.status_code == 301
            assert r.headers["location"] == f"https://a.test:{tls_port}/p/q?x=1&y=%2F&z"
            assert (await c.head(f"{http}/h", headers={"Host": "a.test"})).status_code == 301
            r = await c.post(f"{http}/form?a=b", headers={"Host": "a.test"}, content=b"k=v" * 1000)
            assert r.status_code == 308 and r.headers["location"] == f"https://a.test:{tls_port}/form?a=b"
            assert not origin.requests  # nothing reached the upstream in the clear
            # The ACME path answers over plain HTTP, pending token or not.
            r = await c.get(f"{http}/.well-known/acme-challenge/tok1", headers={"Host": "a.test"})
            assert r.status_code == 200 and r.text == "tok1.keyauth"
            r = await c.get(f"{http}/.well-known/acme-challenge/unknown", headers={"Host": "a.test"})
            assert r.status_code == 404 and "location" not in r.headers
            # Turned off, or no TLS: proxied over plain HTTP.
            r = await c.get(f"{http}/echo", headers={"Host": "keep.test"})
            assert r.status_code == 200 and r.json()["path"] == "/echo"
            r = await c.get(f"{http}/echo", headers={"Host": "plain.test"})
            assert r.status_code == 200
        # The Location works: the same path over HTTPS on that port reaches the site.
        async with httpx.AsyncClient(verify=certs.client_context()) as c:
            r = await c.get(
                f"https://127.0.0.1:{tls_port}/echo?x=1",
                headers={"Host": "a.test"},
                extensions={"sni_hostname": "a.test"},
            )
            assert r.status_code == 200 and r.json()["path"] == "/echo?x=1"

        port = svc.bound_port
        assert port is not None
        # Hostile or odd Host headers: the redirect names the route's own host (or, for a wildcard, the
        # host the router matched, normalised), or the request is refused; never another site.
        cases = [
            (b"A.TEST", f"https://a.test:{tls_port}/"),
            (b"a.test.", f"https://a.test:{tls_port}/"),
            (b"a.test:1234", f"https://a.test:{tls_port}/"),
            (b"X.W.Test.:99", f"https://x.w.test:{tls_port}/"),
            (b"[::1]:8080", f"https://[::1]:{tls_port}/"),
            (b"[0:0::1]", f"https://[::1]:{tls_port}/"),
        ]
        for host, location in cases:
            status, headers, _ = await _raw(port, b"GET / HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
            assert (status, headers.get("location")) == (301, location), host
        for host in (
            b"a.test@evil.example",
            b"evil.example/a.test",
            b"a.test/x",
            b"a.test:80@evil.example",
            b"evil.example\\a.test",
            b"a.test:443:1",
            b"[::1]evil.example",
            b"a.test%2f.evil",
        ):
            status, headers, _ = await _raw(port, b"GET / HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
            assert status == 400 and "location" not in headers, host
        for host in (b"evil.example", b"a.b.w.test", b"w.test"):  # no route of ours: 404, no redirect
            status, headers, _ = await _raw(port, b"GET / HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
            assert status == 404 and "location" not in headers, host
        # Absolute-form target: its authority must agree with Host; the Location still names the route.
        status, headers, _ = await _raw(
            port, b"GET http://A.test:80/abs?q HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
        )
        assert (status, headers.get("location")) == (301, f"https://a.test:{tls_port}/abs?q")
        status, headers, _ = await _raw(
            port, b"GET http://evil.example/abs HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
        )
        assert status == 400 and "location" not in headers
        # HTTP/1.0 without Host on an exact route: still the route's name.
        status, headers, _ = await _raw(port, b"GET /old HTTP/1.0\r\n\r\n")
        assert status == 404  # no catch-all here: nothing matches an empty host
    finally:
        await svc.stop(2.0)


async def test_location_has_no_port_when_https_is_443(store, tmp_path, origin: Origin):
    # Without a certificate board no TLS listener binds (443 needs root); the configured port is used.
    svc = GateService(
        GateConfig(),
        store=store,
        bus=store.bus,
        listen_host="127.0.0.1",  # type: ignore[attr-defined]
        listen_port=0,
        https_port=443,
    )
    await svc.start()
    try:
        await svc.add_route(RouteSpec(host="a.test", upstreams=[origin.addr], tls="auto"))
        async with httpx.AsyncClient() as c:
            r = await c.get(f"http://127.0.0.1:{svc.bound_port}/x?y", headers={"Host": "a.test"})
        assert r.status_code == 301 and r.headers["location"] == "https://a.test/x?y"
    finally:
        await svc.stop(2.0)


async def test_stored_routes_get_the_redirect_default(store, tmp_path, origin: Origin):
    """A database from before the default changed: its TLS routes redirect after the upgrade."""
    await store.migrate("gate", MIGRATIONS[:1])
    old = {"tls": "manual", "upstreams": [origin.addr], "path": "/"}
    for host, tls in (("a.test", "manual"), ("plain.test", "off")):
        spec = RouteSpec(**{**old, "host": host, "tls": tls}).model_dump()
        spec["policies"]["redirect_https"] = False  # what every stored route carried: the old default
        async with store.transaction() as db:
            await db.execute(
                "INSERT INTO gate_routes (host, path, spec, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                (host, "/", json.dumps(spec), time.time(), time.time()),
            )
    svc, _ = await _service(store, tmp_path)
    try:
        assert all(r.spec.policies.redirect_https for r in svc.routes())
        async with httpx.AsyncClient() as c:
            r = await c.get(f"http://127.0.0.1:{svc.bound_port}/x", headers={"Host": "a.test"})
            assert r.status_code == 301 and r.headers["location"] == f"https://a.test:{svc.tls.port}/x"
            r = await c.get(f"http://127.0.0.1:{svc.bound_port}/echo", headers={"Host": "plain.test"})
            assert r.status_code == 200  # tls off: never redirected
        # Turned off on purpose afterwards: stays off across restarts.
        a = next(r for r in svc.routes() if r.spec.host == "a.test")
        await svc.patch_route(a.id, {"policies": {"redirect_https": False}})
    finally:
        await svc.stop(2.0)
    svc, _ = await _service(store, tmp_path)
    try:
        assert next(r for r in svc.routes() if r.spec.host == "a.test").spec.policies.redirect_https is False
    finally:
        await svc.stop(2.0)
