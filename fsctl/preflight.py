"""What `fsctl serve` checks before it creates anything: every component's config section, the files the
config names, and the listen addresses (bound and released). A start that would fail on one of these
fails first: no data dir created, no initial admin, no password printed."""

from __future__ import annotations

import errno
import importlib
import socket
from collections.abc import Callable
from contextlib import ExitStack

from core.errors import StartupError
from core.settings import Settings


def _logbus(s: Settings) -> None:
    importlib.import_module("fsctl.wire_logbus").load_logbus_config(s.logbus)


def _orch(s: Settings) -> None:
    importlib.import_module("fsctl.wire_orch").load_orch_settings(s.orch)


def _probe(s: Settings) -> None:
    importlib.import_module("probe.config").load_probe_config(s.probe)


def _certd(s: Settings) -> None:
    importlib.import_module("certd").load_config(s.certd)
    bundle = s.acme_ca_bundle
    if bundle is not None and not bundle.is_file():  # the same check certd's start makes, made earlier
        raise StartupError(
            f"the ACME CA bundle {bundle} does not exist or is not a file",
            hint="fix --acme-ca-bundle / INFRACORE_ACME_CA_BUNDLE, or leave it unset for public CAs",
        )


def _gate(s: Settings) -> None:
    importlib.import_module("gate.config").load_gate_config(s.gate)


def _snap(s: Settings) -> None:
    importlib.import_module("snap.config").load_snap_config(s.snap).passphrase()  # the file must be readable


def _security(s: Settings) -> None:
    importlib.import_module("secscan").load_security_config(s.security)


# By wiring module (see fsctl.serve.WIRING): a component that is not built is not checked either.
CONFIG_CHECKS: dict[str, Callable[[Settings], None]] = {
    "fsctl.wire_logbus": _logbus,
    "fsctl.wire_orch": _orch,
    "fsctl.wire_probe": _probe,
    "fsctl.wire_certd": _certd,
    "fsctl.wire_gate": _gate,
    "fsctl.wire_snap": _snap,
    "fsctl.wire_security": _security,
}


def check_config(settings: Settings, wiring: tuple[str, ...]) -> None:
    """Each wired component's section validated by the component's own loader (a StartupError names the key)."""
    for name in wiring:
        check = CONFIG_CHECKS.get(name)
        if check is None:
            continue
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue
            raise
        check(settings)


def listen_addresses(settings: Settings) -> list[tuple[str, str, int, str]]:
    """(what, host, port, flag) for each TCP address the server will listen on."""
    host, port = settings.console_addr
    return [
        ("the console", host, port, "--console HOST:PORT"),
        ("the gate", settings.edge_host, settings.http_port, "--http-port"),
        ("the gate's HTTPS", settings.edge_host, settings.https_port, "--https-port"),
    ]


def check_listen(addresses: list[tuple[str, str, int, str]]) -> None:
    """Bind and listen on every address at once (as the listeners will, with SO_REUSEADDR), then release
    them: a port another program holds, a privileged port without the right, an address this host does
    not have, or two of our own listeners on one port, are found before anything is created."""
    with ExitStack() as held:
        for what, host, port, flag in addresses:
            if port == 0:
                continue  # any free port: cannot be taken
            try:
                infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            except socket.gaierror as e:
                raise StartupError(
                    f"{what} cannot listen on {host}:{port}: {e.strerror}",
                    hint=f"use an address of this host with {flag}",
                ) from e
            for family, kind, proto, _, addr in infos:
                sock = held.enter_context(socket.socket(family, kind, proto))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    sock.bind(addr)
                    sock.listen(1)
                except OSError as e:
                    raise _listen_error(what, host, port, flag, e) from e


def _listen_error(what: str, host: str, port: int, flag: str, e: OSError) -> StartupError:
    where = f"{host}:{port}"
    if e.errno == errno.EADDRINUSE:
        return StartupError(
            f"{what} address {where} is already in use",
            hint=f"stop the program using port {port} (`ss -ltnp 'sport = :{port}'` names it), "
            f"or choose another with {flag}",
        )
    if e.errno in (errno.EACCES, errno.EPERM):
        return StartupError(
            f"{what} cannot listen on {where}: permission denied",
            hint=f"ports below 1024 need root or CAP_NET_BIND_SERVICE; choose another with {flag}",
        )
    if e.errno == errno.EADDRNOTAVAIL:
        return StartupError(
            f"{what} cannot listen on {where}: this host has no such address",
            hint=f"use an address of this host with {flag}",
        )
    return StartupError(f"{what} cannot listen on {where}: {e.strerror or e}", hint=f"check {flag}")


def preflight(settings: Settings, wiring: tuple[str, ...]) -> None:
    """Everything that can refuse a start without state: run before the data dir is touched."""
    check_config(settings, wiring)
    check_listen(listen_addresses(settings))
