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

Session resumption: OpenSSL encrypts session tickets (TLS 1.3 and 1.2) with keys it draws at random
when a context is created, and takes them from the context a connection starts on, whichever
certificate SNI then picks. The listener therefore starts every connection on the selector's current
*session context* (`ListenerContext.wrap_bio`), which is replaced by a fresh one every
`SESSION_KEY_LIFETIME_S`: ticket keys live at most that long (no key encrypts tickets forever, as a
context created once at start would), at the cost of one full handshake for a client whose ticket was
issued by the previous keys. The tickets' own lifetime (their `ticket_lifetime_hint`, the session timeout)
is OpenSSL's default, 7200 s, which Python's `ssl` cannot set; the rotation is what bounds resumption: a
ticket resumes until the keys that issued it are replaced, at most `SESSION_KEY_LIFETIME_S`. (Keeping the
previous keys for decryption, as nginx and Caddy do, is not possible here: OpenSSL takes a connection's
ticket keys from the context it starts on, before the ClientHello is read.)
"""

from __future__ import annotations

import asyncio
import datetime
import fcntl
import os
import ssl
import struct
import sys
import termios
import time
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
CLOSE_FLUSH_LIMIT_S = 30.0  # a closing connection's tail (and the close_notify wait) may take at most this long
SESSION_KEY_LIFETIME_S = 3600.0  # session-ticket keys (and the session-ID cache) are replaced hourly


def server_context(cert_path: str, key_path: str) -> ssl.SSLContext:
    """A server context for one certificate: TLS >= 1.2, AEAD + forward-secret ciphers for TLS 1.2,
    no renegotiation, session tickets on, one TLS 1.3 ticket per handshake, ALPN h2 then http/1.1.
    Raises OSError / ssl.SSLError when the files do not load."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.set_alpn_protocols(ALPN)
    # OpenSSL sends two TLS 1.3 tickets by default; each costs ~6 % of a full handshake's instructions
    # (bench/bench_tls_instr.py). One is what a client resumes its next connection with, and a resumed
    # handshake brings a new one (Go's and Caddy's servers send one too).
    ctx.num_tickets = 1
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

    def __init__(
        self,
        board: CertificateBoard,
        fallback_dir: Path,
        *,
        now: Callable[[], float],
        clock: Callable[[], float] = time.monotonic,
        session_key_lifetime_s: float = SESSION_KEY_LIFETIME_S,
    ) -> None:
        self.board = board
        self.now = now
        self.clock = clock
        self.fallback_dir = fallback_dir
        self.session_key_lifetime_s = session_key_lifetime_s
        cert, key = ensure_fallback(fallback_dir, now())
        self.fallback_path = cert
        self.fallback_files = (cert, key)
        self.fallback = self._new_session_context()
        self.rotate_at = clock() + session_key_lifetime_s
        self.session_key_rotations = 0
        self.listener_context = ListenerContext(self)
        self.table: Mapping[str, Served] = MappingProxyType({})
        self.rebuild()
        board.on_change(self._on_change)

    @property
    def context(self) -> ssl.SSLContext:
        """The context new connections start on (the fallback certificate, the SNI callback, the current
        session-ticket keys)."""
        return self.fallback

    def _new_session_context(self) -> ssl.SSLContext:
        ctx = server_context(*self.fallback_files)
        ctx.sni_callback = self._sni
        return ctx

    def session_context(self) -> ssl.SSLContext:
        """The context for a new connection; a fresh one (new ticket keys) once the current one is
        `session_key_lifetime_s` old. Connections keep the context they started on."""
        if self.clock() >= self.rotate_at:
            self.rotate_session_keys()
        return self.fallback

    def rotate_session_keys(self) -> None:
        """Start new connections on a new context, whose ticket keys OpenSSL draws at random. If the
        fallback files no longer load they are generated again; failing that, the old context stops
        issuing tickets (`OP_NO_TICKET`) rather than keep its keys."""
        self.rotate_at = self.clock() + self.session_key_lifetime_s
        try:
            ctx = self._new_session_context()
        except (OSError, ssl.SSLError) as e:
            log.error("fallback certificate does not load; generating it again", error=str(e))
            try:
                self.fallback_files = ensure_fallback(self.fallback_dir, self.now())
                self.fallback_path = self.fallback_files[0]
                ctx = self._new_session_context()
            except (OSError, ssl.SSLError, ValueError) as e2:
                log.error("session ticket keys not rotated; tickets disabled", error=str(e2))
                self.fallback.options |= ssl.OP_NO_TICKET
                return
        self.fallback = ctx
        self.session_key_rotations += 1
        log.info("session ticket keys rotated", rotations=self.session_key_rotations)

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

bad_sni_handshakes = 0  # handshakes refused because the SNI bytes were not ASCII (see `_quiet_bad_sni`)


def _quiet_bad_sni() -> None:
    """Python's ssl module decodes the client's SNI bytes as ASCII before any callback runs; when that
    fails it refuses the handshake and reports the UnicodeDecodeError through `sys.unraisablehook`,
    whose default prints a traceback to stderr: a client could make the gate write one per handshake.
    This wraps the hook (once per process) to count those and pass every other report on unchanged."""
    previous = sys.unraisablehook
    if getattr(previous, "gate_bad_sni", False):
        return

    def hook(unraisable: Any) -> None:
        global bad_sni_handshakes
        exc = unraisable.exc_value
        if (
            isinstance(exc, UnicodeDecodeError)
            and exc.encoding == "ascii"
            and isinstance(unraisable.object, bytes)
            and exc.object == unraisable.object
            and len(unraisable.object) <= 255
        ):
            bad_sni_handshakes += 1
            if bad_sni_handshakes & (bad_sni_handshakes - 1) == 0:  # 1st, 2nd, 4th, 8th ...: bounded logging
                log.warning("handshake refused: server name is not ASCII", count=bad_sni_handshakes)
            return
        previous(unraisable)

    hook.gate_bad_sni = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


class ListenerContext(ssl.SSLContext):
    """What the listener is bound with: the event loop wraps every accepted connection with `wrap_bio`,
    which this hands to the selector's current session context (so ticket keys rotate without binding
    the listener again). Its own OpenSSL context is never used for a handshake."""

    selector: CertSelector

    def __new__(cls, selector: CertSelector) -> ListenerContext:
        return super().__new__(cls, ssl.PROTOCOL_TLS_SERVER)

    def __init__(self, selector: CertSelector) -> None:
        self.selector = selector

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        return self.selector.session_context().wrap_bio(incoming, outgoing, server_side, server_hostname, session)


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


def _undelivered(transport: Any) -> int:
    """Bytes a closing TLS connection has not yet handed to the client's kernel: what the TLS layer still
    buffers plus what the socket's send queue holds (SIOCOUTQ: unsent and unacknowledged). 0 also when
    the socket is gone."""
    n = int(transport.get_write_buffer_size())
    sock = transport.get_extra_info("socket")
    if sock is None:
        return n
    try:
        queued = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except (OSError, ValueError):
        return n
    return n + int(struct.unpack("i", queued)[0])


async def _drop_silent_closers(state: ProxyState, close_notify_timeout_s: float) -> None:
    """asyncio's TLS shutdown timer starts when the transport is closed and, when it fires, drops what is
    still buffered: with a short timeout a slow reader would lose the tail of a `Connection: close`
    response. So the listener's timer is long (`CLOSE_FLUSH_LIMIT_S`), and this loop gives a closed TLS
    connection `close_notify_timeout_s` for the client's close_notify counted from when everything,
    close_notify included, has reached the client's kernel; then aborts it (nothing is lost then)."""
    interval = min(1.0, max(0.05, close_notify_timeout_s / 4))
    delivered_at: dict[Any, float] = {}
    while True:
        await asyncio.sleep(interval)
        now = state.clock()
        still: dict[Any, float] = {}
        for conn in list(state.clients):
            if not conn.closed:
                continue
            t = conn.transport
            if t is None or t.get_extra_info("ssl_object") is None or _undelivered(t):
                continue
            since = delivered_at.get(conn, now)
            if now - since >= close_notify_timeout_s:
                conn.abort()
            else:
                still[conn] = since
        delivered_at = still


async def start_tls_listener(
    edge: EdgeServer,
    host: str,
    port: int,
    selector: CertSelector,
    *,
    handshake_timeout_s: float = 10.0,
    shutdown_timeout_s: float = 3.0,
    flush_timeout_s: float = CLOSE_FLUSH_LIMIT_S,
) -> TlsListener:
    """Bind the HTTPS listener on the gate's existing `EdgeServer` (same state, routes, pool, sweeper,
    draining): `edge.stop()` closes it with the rest. Raises StartupError when the port is taken.
    A handshake not done in `handshake_timeout_s` is dropped. A closing connection first delivers what
    it has buffered (a client that stops reading is dropped by the send timeout, and the whole close by
    `flush_timeout_s`), then waits at most `shutdown_timeout_s` for the client's close_notify (asyncio's
    default, 30 s from the close, let a client that never answers hold its connection that long; a short
    one cut slow readers' tails, see `_drop_silent_closers`)."""
    _quiet_bad_sni()
    warn_if_unpinned()  # this listener speaks HTTP/2 through gate._h2conn, written against exact h2/hpack releases
    loop = asyncio.get_running_loop()
    state = edge.state
    try:
        server = await loop.create_server(
            lambda: AlpnDispatch(state),
            host,
            port,
            ssl=selector.listener_context,
            ssl_handshake_timeout=handshake_timeout_s,
            ssl_shutdown_timeout=max(flush_timeout_s, shutdown_timeout_s),
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
    state.tasks.spawn("tls-closer", _drop_silent_closers(state, shutdown_timeout_s))
    bound = int(server.sockets[0].getsockname()[1])
    log.info("gate listening", host=host, port=bound, scheme="https")
    return TlsListener(server, bound, selector)
