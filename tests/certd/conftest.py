"""Fixtures for certd: a real Pebble (Let's Encrypt's test CA) started by `shared/peers/peers.sh`, a
stand-in HTTP-01 responder, and `CertdService`s on real SQLite files under `tmp_path`."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shlex
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from certd import CertdService, load_config
from core.bus import Event, EventBus
from core.clock import Clock
from core.ports import CertificateBoard, ChallengeStore
from core.schema import CORE_MIGRATIONS
from core.store import Store

REPO = Path(__file__).resolve().parents[2]
# Beside the repo, or where INFRACORE_PEERS_SH says (a worktree is one level deeper than the repo).
PEERS_SH = Path(os.environ.get("INFRACORE_PEERS_SH") or REPO / ".." / "shared" / "peers" / "peers.sh")


@dataclass(frozen=True)
class Pebble:
    directory: str
    ca_bundle: Path  # trust this for Pebble's own HTTPS API
    root_pem: Path  # the root that signs issued chains (new on every Pebble start)
    http01_port: int  # Pebble validates http://<name>:<port>/.well-known/acme-challenge/<token>
    env: dict[str, str]


def _read_env(path: Path) -> dict[str, str]:
    """`export K=V  # comment` lines of peers.env."""
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line.startswith("export "):
            continue
        key, _, value = line[len("export ") :].partition("=")
        parts = shlex.split(value, comments=True)
        env[key.strip()] = parts[0] if parts else ""
    return env


@pytest.fixture(scope="session")
def pebble() -> Pebble:
    """Pebble on 127.0.0.1:14000 through `peers.sh start` (idempotent; WITH_DOCKER=0)."""
    script = PEERS_SH.resolve()
    if not script.exists():
        pytest.skip(
            f"{script} is missing: the Pebble tests need the shared peers scripts cloned beside the repo "
            "(<repo>/../shared/peers/peers.sh), or INFRACORE_PEERS_SH set to it"
        )
    env = {**os.environ, "WITH_DOCKER": "0"}
    proc = subprocess.run(["bash", str(script), "start"], env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"{script} start failed with {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    peers_dir = Path(env.get("PEERS_DIR", "/tmp/infracore-peers"))
    values = _read_env(peers_dir / "peers.env")
    return Pebble(
        directory=values["ACME_DIRECTORY"],
        ca_bundle=Path(values["ACME_CA_BUNDLE"]),
        root_pem=Path(values["PEBBLE_ROOT_PEM"]),
        http01_port=int(values.get("PEBBLE_HTTP01_PORT", "5002")),
        env=values,
    )


@dataclass
class Responder:
    """Serves `ChallengeStore` tokens the way the gate's plain-HTTP listener does (see its docstring)."""

    store: ChallengeStore
    serving: bool = True
    hits: list[tuple[str, str, int]] = field(default_factory=list)  # (host header, token, status)


async def serve_responder(port: int, deadline_s: float = 90) -> tuple[Responder, web.AppRunner]:
    """A minimal HTTP-01 responder on 127.0.0.1:`port` (see `responder`); when another test run holds
    the port we retry binding until a deadline."""
    r = Responder(ChallengeStore())

    async def challenge(request: web.Request) -> web.Response:
        token = request.match_info["token"]
        value = r.store.get(token) if r.serving else None
        r.hits.append((request.headers.get("Host", ""), token, 200 if value else 404))
        if value is None:
            return web.Response(status=404, text="no such challenge")
        return web.Response(text=value)

    app = web.Application()
    app.router.add_get("/.well-known/acme-challenge/{token}", challenge)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    deadline = time.monotonic() + deadline_s
    while True:
        site = web.TCPSite(runner, "127.0.0.1", port)
        try:
            await site.start()
            break
        except OSError as e:
            if e.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                await runner.cleanup()
                raise
            await asyncio.sleep(0.2)  # someone else's test holds Pebble's validation port: wait our turn
    return r, runner


@pytest.fixture
async def responder(pebble: Pebble) -> AsyncIterator[Responder]:
    """A minimal HTTP-01 responder on 127.0.0.1:PEBBLE_HTTP01_PORT.

    It stands in for the gate's responder (which serves the same `ChallengeStore` on its plain-HTTP
    listener ahead of every route; its own tests live in tests/gate); the end-to-end test through
    `fsctl serve` comes with the gate. The port is fixed by Pebble, so when another test run holds
    it we retry binding until a deadline.
    """
    r, runner = await serve_responder(pebble.http01_port)
    yield r
    await runner.cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def own_pebble(pebble: Pebble, tmp_path: Path) -> Iterator[Callable[..., Pebble]]:
    """`own_pebble(validity_s=30)` → a Pebble of our own (the shared one's binary, TLS pair and DNS),
    on free ports — its HTTP-01 validation port too, so it never waits for the shared 5002 — with
    `certificateValidityPeriod` set: short-lived certificates for real. Stopped by its pid at the end."""
    procs: list[subprocess.Popen] = []
    shared = pebble.ca_bundle.parent  # <peers>/pebble: cert.pem/key.pem for Pebble's own HTTPS API

    def start(validity_s: int | None = None) -> Pebble:
        api, mgmt, http01, tls = _free_port(), _free_port(), _free_port(), _free_port()
        config: dict[str, Any] = {
            "listenAddress": f"127.0.0.1:{api}",
            "managementListenAddress": f"127.0.0.1:{mgmt}",
            "certificate": str(shared / "cert.pem"),
            "privateKey": str(shared / "key.pem"),
            "httpPort": http01,
            "tlsPort": tls,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
        if validity_s is not None:
            config["certificateValidityPeriod"] = validity_s
        cfg = tmp_path / f"pebble-{api}.json"
        cfg.write_text(json.dumps({"pebble": config}))
        log_path = tmp_path / f"pebble-{api}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                ["pebble", "-config", str(cfg), "-dnsserver", "127.0.0.1:8053", "-strict=false"],
                env={**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        procs.append(proc)
        trust = ssl.create_default_context(cafile=str(pebble.ca_bundle))
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"https://127.0.0.1:{api}/dir", verify=trust, timeout=2).raise_for_status()
                break
            except httpx.HTTPError as e:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"our Pebble did not start: {log_path.read_text()}") from e
                time.sleep(0.05)
        root = tmp_path / f"pebble-{api}-root.pem"
        root.write_bytes(httpx.get(f"https://127.0.0.1:{mgmt}/roots/0", verify=trust).content)
        return Pebble(
            directory=f"https://127.0.0.1:{api}/dir",
            ca_bundle=pebble.ca_bundle,
            root_pem=root,
            http01_port=http01,
            env={},
        )

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tls_handshake(cert_path: str, key_path: str, root_pem: Path, server_name: str) -> dict[str, Any]:
    """Serve the pair with real TLS on 127.0.0.1 and connect a client that trusts only Pebble's root:
    returns the peer certificate as the client verified it (raises on any verification failure)."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_path, key_path)
    client_ctx = ssl.create_default_context(cafile=str(root_pem))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (OSError, ssl.SSLError) as e:
            errors.append(e)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            client_ctx.wrap_socket(raw, server_hostname=server_name) as tls,
        ):
            peer: dict[str, Any] = tls.getpeercert() or {}
            tls.sendall(b"x")
    finally:
        t.join(10)
        listener.close()
    return peer


def unique_name(prefix: str = "c") -> str:
    """A fresh DNS name per test, so Pebble never reuses an authorization from another test."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}.test"


@dataclass
class Harness:
    """One CertdService with its kernel parts, as `fsctl serve` wires them."""

    service: CertdService
    store: Store
    bus: EventBus
    board: CertificateBoard
    challenges: ChallengeStore
    data_dir: Path
    events: list[Event] = field(default_factory=list)
    published: list[tuple[str, str, str]] = field(default_factory=list)  # (name, serial, source) per board change

    async def events_of(self, etype: str) -> list[Event]:
        return [e for e in await self.bus.read_after(0, 10_000) if e.type == etype]

    async def wait_for(self, predicate: Callable[[], Any], within_s: float = 60, what: str = "condition") -> Any:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            value = predicate()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out after {within_s}s waiting for {what}")


@pytest.fixture
async def certd_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """`await certd_factory(directory=..., ca_bundle=..., challenges=..., certd={...}, data="d")` → a
    started Harness; a second call with the same `data` reuses that data dir (a restart)."""
    made: list[Harness] = []

    async def make(
        *,
        directory: str,
        ca_bundle: Path | None = None,
        challenges: ChallengeStore | None = None,
        certd: dict[str, Any] | None = None,
        data: str = "data",
        email: str | None = None,
        start: bool = True,
        clock: Clock | None = None,
    ) -> Harness:
        data_dir = tmp_path / data
        data_dir.mkdir(exist_ok=True)
        store = Store(data_dir / "state.db")
        await store.open()
        await store.migrate("core", CORE_MIGRATIONS)
        bus = EventBus(store)
        await bus.start()
        board = CertificateBoard()
        challenges = challenges or ChallengeStore()
        service = CertdService(
            data_dir=data_dir,
            directory_url=directory,
            config=load_config(certd or {}),
            store=store,
            bus=bus,
            challenges=challenges,
            board=board,
            ca_bundle=ca_bundle,
            email=email,
            clock=clock,
        )
        h = Harness(service, store, bus, board, challenges, data_dir)
        board.on_change(
            lambda ref, name: h.published.append((name, ref.serial if ref else "", ref.source if ref else ""))
        )
        made.append(h)
        if start:
            await service.start()
        return h

    yield make
    for h in made:
        await h.service.stop(5)
        h.bus.close()
        await h.store.close()


@pytest.fixture
def free_tcp_port() -> Iterator[int]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    yield port
