"""The gate's HTTPS side: certificate selection by SNI from `CertificateBoard` entries, swapped live; a
self-signed fallback for names without a certificate; and the TLS listener that hands each connection
to the HTTP/1.1 proxy or the HTTP/2 front end by the ALPN protocol the client chose.

Theory of operation: `CertSelector` keeps one `ssl.SSLContext` per certificate in a map keyed by exact
name and by `*.wildcard`; the map is rebuilt on `board.on_change` and installed with one assignment,
so a handshake reads either the old map or the new one, never a mix. An SSL connection keeps the
context it was handed, so open connections keep their certificate. Contexts of unchanged certificates
(same files, same modification time, same serial) are reused; a certificate whose files do not load
is logged and the previous context for that name is kept (a broken renewal never replaces a working
certificate). The SNI callback runs on the loop inside the handshake: a dict lookup and one
assignment, nothing else.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import structlog

from core.errors import StartupError
from core.hostnames import find_host
from core.ports import CertificateBoard, CertificateRef
from gate.h2front import H2Front
from gate.h2pins import warn_if_unpinned
from gate.server import EdgeServer, http1_protocol
from gate.state import ProxyState

log = structlog.get_logger("gate.tls")

ALPN = ["h2", "http/1.1"]
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
FALLBACK_NAME = "infracore.invalid"


def server_context(cert_path: str, key_path: str) -> ssl.SSLContext:
    """A server context for one certificate: TLS >= 1.2, AEAD + forward-secret ciphers for TLS 1.2,
    no renegotiation, session tickets on (OpenSSL's default), ALPN h2 then http/1.1.
    Raises OSError / ssl.SSLError when the files do not load."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.set_alpn_protocols(ALPN)
    ctx.load_cert_chain(cert_path, key_path)
    return ctx


# --- the self-signed fallback -------------------------------------------------------------------------


def ensure_fallback(directory: Path, now: float, *, days: int = 3650) -> tuple[str, str]:
    """The fallback pair under `directory` (`fallback.crt`, `fallback.key`, key mode 0600), generated
    once and reused while it loads and is valid for another day. Returns (cert_path, key_path)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "fallback.crt", directory / "fallback.key"
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if cert.not_valid_after_utc.timestamp() > now + 86400 and key_path.exists():
            return str(cert_path), str(key_path)
    except (OSError, ValueError):
        pass
    key = ec.generate_private_key(ec.SECP256R1())
    start = datetime.datetime.fromtimestamp(now - 3600, datetime.UTC)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, FALLBACK_NAME),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Infra-Core fallback (no certificate for this name)"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(FALLBACK_NAME)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp_key, tmp_cert = key_path.with_suffix(".key.tmp"), cert_path.with_suffix(".crt.tmp")
    fd = os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    tmp_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.replace(tmp_key, key_path)
    os.replace(tmp_cert, cert_path)
    log.info("generated fallback certificate", path=str(cert_path))
    return str(cert_path), str(key_path)


# --- selection ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Served:
    """One loaded certificate: the board's entry and its context."""

    ref: CertificateRef
    ctx: ssl.SSLContext
    key: tuple[Any, ...]


def _file_key(ref: CertificateRef) -> tuple[Any, ...]:
    try:
        c, k = os.stat(ref.cert_path), os.stat(ref.key_path)
        return (ref.cert_path, ref.key_path, ref.serial, c.st_mtime_ns, c.st_size, k.st_mtime_ns)
    except OSError:
        return (ref.cert_path, ref.key_path, ref.serial, None)


def lookup(table: Mapping[str, Served], name: str) -> Served | None:
    """Exact name first, then a wildcard one label up (`a.example.com` → `*.example.com`); a name no
    certificate can carry (non-ASCII, `*`, too long) is None. See `core.hostnames`."""
    return find_host(table, name)


class CertSelector:
    """SNI → context, rebuilt from the board on every change. Used only on the loop."""

    def __init__(self, board: CertificateBoard, fallback_dir: Path, *, now: Callable[[], float]) -> None:
        self.board = board
        cert, key = ensure_fallback(fallback_dir, now())
        self.fallback = server_context(cert, key)
        self.fallback_path = cert
        self.fallback.sni_callback = self._sni
        self.table: Mapping[str, Served] = MappingProxyType({})
        self.handshakes_fallback = 0
        self.rebuild()
        board.on_change(self._on_change)

    @property
    def context(self) -> ssl.SSLContext:
        """The context the listener is created with (the fallback, carrying the SNI callback)."""
        return self.fallback

    def _on_change(self, ref: CertificateRef | None, name: str) -> None:
        self.rebuild()

    def rebuild(self) -> None:
        """Build the whole map from the board and install it with one assignment."""
        old_by_key = {s.key: s for s in self.table.values()}
        old_table = self.table
        new: dict[str, Served] = {}
        built: dict[int, Served] = {}
        for name, ref in self.board.all().items():
            served = built.get(id(ref))
            if served is None:
                key = _file_key(ref)
                served = old_by_key.get(key)
                if served is None or served.ref != ref:
                    try:
                        ctx = server_context(ref.cert_path, ref.key_path)
                    except (OSError, ssl.SSLError) as e:
                        log.error(
                            "certificate does not load; keeping the previous one",
                            name=name,
                            cert_path=ref.cert_path,
                            error=str(e),
                        )
                        prev = old_table.get(name)
                        if prev is not None:
                            new[name] = prev
                        continue
                    served = Served(ref, ctx, key)
                    log.info(
                        "certificate loaded",
                        names=list(ref.names),
                        serial=ref.serial,
                        issuer=ref.issuer,
                        source=ref.source,
                    )
                built[id(ref)] = served
            new[name] = served
        self.table = MappingProxyType(new)

    def _sni(self, sslobj: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        s = lookup(self.table, server_name) if server_name else None
        if s is None:
            self.handshakes_fallback += 1
            return None  # the listener's context is the fallback already
        sslobj.context = s.ctx
        return None

    def describe(self, host: str) -> dict[str, Any]:
        """What a handshake for `host` (a route's host pattern) is served: for `fsctl route`."""
        if not host or host == "*":
            s = None
        elif host.startswith("*."):  # a wildcard route is served by the wildcard certificate itself
            s = self.table.get(host.lower())
        else:
            s = lookup(self.table, host)
        if s is None:
            return {
                "source": "fallback",
                "issuer": "self-signed fallback",
                "not_after": None,
                "serial": "",
                "names": [],
                "cert_path": self.fallback_path,
            }
        r = s.ref
        return {
            "source": r.source,
            "issuer": r.issuer,
            "not_after": r.not_after,
            "serial": r.serial,
            "names": list(r.names),
            "cert_path": r.cert_path,
        }


# --- the listener ----------------------------------------------------------------------------------------


class AlpnDispatch(asyncio.Protocol):
    """Lives for the instant between the handshake and the first byte: picks HTTP/2 or HTTP/1.1 by
    ALPN, hands the transport to that protocol and steps aside."""

    __slots__ = ("state",)

    def __init__(self, state: ProxyState) -> None:
        self.state = state

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sslobj = transport.get_extra_info("ssl_object")
        chosen = sslobj.selected_alpn_protocol() if sslobj is not None else None
        app: asyncio.Protocol
        if chosen == "h2":
            app = H2Front(self.state)
        else:
            app = http1_protocol(self.state, "https")
        transport.set_protocol(app)
        app.connection_made(transport)

    def data_received(self, data: bytes) -> None:  # pragma: no cover - replaced before any data
        raise RuntimeError("ALPN dispatch received data")


@dataclass
class TlsListener:
    server: asyncio.Server
    port: int
    selector: CertSelector


async def start_tls_listener(
    edge: EdgeServer, host: str, port: int, selector: CertSelector, *, handshake_timeout_s: float = 10.0
) -> TlsListener:
    """Bind the HTTPS listener on the gate's existing `EdgeServer` (same state, routes, pool, sweeper,
    draining): `edge.stop()` closes it with the rest. Raises StartupError when the port is taken."""
    warn_if_unpinned()  # this listener speaks HTTP/2 through gate._h2conn, written against exact h2/hpack releases
    loop = asyncio.get_running_loop()
    state = edge.state
    try:
        server = await loop.create_server(
            lambda: AlpnDispatch(state),
            host,
            port,
            ssl=selector.context,
            ssl_handshake_timeout=handshake_timeout_s,
            backlog=2048,
            reuse_address=True,
        )
    except OSError as e:
        raise StartupError(
            f"the gate cannot listen for HTTPS on {host}:{port}: {e.strerror or e}",
            hint="another program uses that port; stop it or choose another with --https-port",
        ) from e
    edge.servers.append(server)
    edge.start_sweeper()  # (normally started already by the plain-HTTP listener)
    bound = int(server.sockets[0].getsockname()[1])
    log.info("gate listening", host=host, port=bound, scheme="https")
    return TlsListener(server, bound, selector)
