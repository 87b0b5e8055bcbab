"""A deadline-bounded HTTP GET for ACME Renewal Information (RFC 9773), beside the `acme` library's
`requests` session: the whole fetch (connect, proxy tunnel, TLS, headers, body) within one deadline.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import os
import socket
import ssl
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import requests

from certd import ari


class AriFailure(Exception):
    """The renewal information could not be fetched or used; `retry_after_s` is the server's
    Retry-After, if it sent one."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


def fetch(url: str, timeout_s: float, ca_bundle: Path | None) -> tuple[int, str | None, bytes]:
    """GET `url` (status, Retry-After, at most `ari.MAX_BODY + 1` bytes of body) within
    `timeout_s` in all — connecting, proxy tunnel, TLS, headers and body together (a name
    lookup cannot be cut short: one slower than that fails the fetch once it returns) — so a CA that
    trickles bytes cannot hold certd's only worker thread: every phase gets the time
    left as its socket timeout, the deadline is checked between phases, and a watchdog shuts down
    every socket this call made at the deadline (a per-read timeout alone restarts at every byte).
    The sockets are held here, not looked up on the connection, which lets go of its socket when
    the server answers `Connection: close`. Honours HTTPS_PROXY/HTTP_PROXY/NO_PROXY (an http://
    proxy; CONNECT for https) and REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE/SSL_CERT_FILE as `requests`
    does. Unauthenticated, no redirects, no compression."""
    parts = urllib.parse.urlsplit(url)
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if parts.scheme not in ("https", "http") or not host:
        raise AriFailure(f"not an http(s) URL: {url!r:.100}")
    https = parts.scheme == "https"
    port = port or (443 if https else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    late = f"{url} did not answer within {timeout_s:g} s in all"
    deadline = time.monotonic() + timeout_s
    held: list[socket.socket] = []  # every socket made here, for the watchdog and the final close
    expired, lock, done = threading.Event(), threading.Lock(), [False]

    def cut() -> None:  # in the timer thread: shutdown(2) wakes a recv blocked in the worker
        with lock:  # (never after the finally below closed the sockets: their numbers may be reused)
            if done[0]:
                return
            expired.set()
            for sock in held:
                with contextlib.suppress(OSError, ValueError):
                    fd = sock.fileno()  # -1 once closed, or once its descriptor moved to a TLS socket
                    if fd >= 0:
                        raw = socket.socket(fileno=fd)
                        try:
                            raw.shutdown(socket.SHUT_RDWR)
                        finally:
                            raw.detach()

    def hold(sock: socket.socket) -> socket.socket:
        with lock:
            held.append(sock)
        return sock

    def left() -> float:
        """The time left for the next phase; AriFailure when none is."""
        remaining = deadline - time.monotonic()
        if remaining <= 0 or expired.is_set():
            raise AriFailure(late)
        return remaining

    watchdog = threading.Timer(timeout_s, cut)
    watchdog.daemon = True
    watchdog.start()
    conn: http.client.HTTPConnection | None = None
    response: http.client.HTTPResponse | None = None
    try:
        proxy = _proxy_for(parts.scheme, host)
        ctx = ssl_context(ca_bundle) if https else None
        sock = _connect(*(proxy[:2] if proxy else (host, port)), left=left, hold=hold)
        hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        headers = {"User-Agent": "infracore-certd", "Accept-Encoding": "identity"}
        if proxy and https:
            _tunnel(sock, hostport, proxy[2], left)
        elif proxy:  # plain http through the proxy: the absolute URL, the origin's Host
            target = f"http://{hostport}{target}"
            headers["Host"] = hostport
            if proxy[2]:
                headers["Proxy-Authorization"] = proxy[2]
        if ctx is not None:
            sock = hold(ctx.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False))
            sock.settimeout(left())
            sock.do_handshake()  # type: ignore[attr-defined]
        conn = http.client.HTTPSConnection(host, port, context=ctx) if https else http.client.HTTPConnection(host, port)
        conn.sock = sock  # connected above, within the deadline: request() uses it as it is
        sock.settimeout(left())
        conn.request("GET", target, headers=headers)
        sock.settimeout(left())
        response = conn.getresponse()
        sock.settimeout(left())
        body = response.read(ari.MAX_BODY + 1)
        left()  # (a body cut by the watchdog reads as a short one)
        return response.status, response.getheader("Retry-After"), body
    except (OSError, http.client.HTTPException, ValueError) as e:
        if expired.is_set() or time.monotonic() >= deadline:
            raise AriFailure(late) from None
        raise AriFailure(f"cannot fetch {url}: {root_cause(e)}") from e
    finally:
        watchdog.cancel()
        with lock:
            done[0] = True
        if response is not None:
            response.close()  # (the connection forgot it when the server said `Connection: close`)
        if conn is not None:
            conn.close()
        for sock in held:
            sock.close()


def ssl_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """Verification as `requests` does it: the configured bundle, else REQUESTS_CA_BUNDLE,
    CURL_CA_BUNDLE or SSL_CERT_FILE, else certifi's; a directory is read as a CA path."""
    where = (
        (str(ca_bundle) if ca_bundle else None)
        or os.environ.get("REQUESTS_CA_BUNDLE")
        or os.environ.get("CURL_CA_BUNDLE")
        or os.environ.get("SSL_CERT_FILE")
        or requests.certs.where()
    )
    if os.path.isdir(where):
        return ssl.create_default_context(capath=where)
    return ssl.create_default_context(cafile=where)


def root_cause(e: BaseException) -> str:
    while e.__cause__ is not None or (e.args and isinstance(e.args[0], BaseException)):
        e = e.__cause__ or e.args[0]
    text = str(e)
    if "Connection refused" in text or isinstance(e, ConnectionRefusedError):
        return "connection refused"
    return text.split(": ", 1)[-1] if "Max retries" in text else text


def _proxy_for(scheme: str, host: str) -> tuple[str, int, str | None] | None:
    """The proxy (host, port, Proxy-Authorization value) the environment names for `scheme` URLs to
    `host` (HTTPS_PROXY/HTTP_PROXY, NO_PROXY), as `requests` picks it; None: go direct."""
    named = urllib.request.getproxies().get(scheme)
    if not named or urllib.request.proxy_bypass(host):
        return None
    proxy = urllib.parse.urlsplit(named if "://" in named else f"http://{named}")
    try:
        proxy_host, proxy_port = proxy.hostname, proxy.port or 80
    except ValueError:
        proxy_host = None
    if proxy.scheme != "http" or not proxy_host:
        raise AriFailure(
            f"the {scheme} proxy {proxy.scheme}://{proxy_host}: only an http:// proxy is supported here",
            retry_after_s=None,
        )
    auth = None
    if proxy.username is not None:
        pair = f"{urllib.parse.unquote(proxy.username)}:{urllib.parse.unquote(proxy.password or '')}"
        auth = "Basic " + base64.b64encode(pair.encode()).decode()
    return proxy_host, proxy_port, auth


def _connect(
    host: str, port: int, *, left: Callable[[], float], hold: Callable[[socket.socket], socket.socket]
) -> socket.socket:
    """A TCP connection to the first address of `host` that answers, each attempt bounded by the time
    left (a blackholed first address cannot take more than the whole deadline)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    error: OSError | None = None
    for family, kind, proto, _, address in infos:
        sock = hold(socket.socket(family, kind, proto))
        try:
            sock.settimeout(left())
            sock.connect(address)
            return sock
        except OSError as e:
            error = e
            sock.close()
    raise error or OSError(f"no address for {host}")


def _tunnel(sock: socket.socket, hostport: str, auth: str | None, left: Callable[[], float]) -> None:
    """CONNECT `hostport` through the proxy `sock` is connected to."""
    request = f"CONNECT {hostport} HTTP/1.1\r\nHost: {hostport}\r\n"
    if auth:
        request += f"Proxy-Authorization: {auth}\r\n"
    sock.settimeout(left())
    sock.sendall((request + "\r\n").encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        if len(answer) > 65536:
            raise AriFailure(f"the proxy's answer to CONNECT {hostport} is too long")
        sock.settimeout(left())
        data = sock.recv(4096)
        if not data:
            raise AriFailure(f"the proxy closed the connection at CONNECT {hostport}")
        answer += data
    head, rest = answer.split(b"\r\n\r\n", 1)
    status = head.split(b"\r\n", 1)[0].decode("latin-1")
    fields = status.split(None, 2)
    if len(fields) < 2 or not fields[0].startswith("HTTP/") or fields[1] != "200" or rest:
        raise AriFailure(f"the proxy refused CONNECT {hostport}: {status!r:.100}")
