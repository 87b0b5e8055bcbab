"""`fsctl serve`: the composition root. Builds the kernel, wires the components, starts them in
dependency order on one uvloop loop and stops them in reverse on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import importlib
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import structlog

from console_api import Api, ConsoleServer, routes_core, session
from core.audit import AuditLog
from core.bus import EventBus
from core.component import Component
from core.errors import StartupError
from core.identity import Identity
from core.logging import configure_logging
from core.schema import CORE_MIGRATIONS
from core.settings import Settings
from core.store import Store
from core.tasks import TaskSet
from core.workers import preload
from fsctl import __version__
from fsctl.kernel import Kernel, Pools
from fsctl.preflight import preflight

log = structlog.get_logger("fsctl.serve")

# Each module has `wire(kernel) -> list[Component]`; they run (and their components start) in this
# order: producers of ports before their consumers.
WIRING: tuple[str, ...] = (
    "fsctl.wire_clients",
    "fsctl.wire_logbus",
    "fsctl.wire_orch",
    "fsctl.wire_probe",
    "fsctl.wire_certd",
    "fsctl.wire_gate",
    "fsctl.wire_snap",
    "fsctl.wire_security",  # last: it reads the facts of all the others
)


class DataDirLock:
    """An exclusive `flock` on `<data>/infracore.lock`, held for the server's lifetime."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "infracore.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StartupError(
                f"another Infra-Core server (pid {holder}) is using the data dir {self.path.parent}",
                hint="stop it first, or pass --data-dir for a separate instance",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def prepare_data_dir(path: Path) -> None:
    """Create the data dir (0700) and prove it is writable, or say precisely why not."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        reason = e.strerror or str(e)
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            reason = "permission denied" if e.errno != errno.EROFS else "read-only file system"
        raise StartupError(
            f"the data dir {path} is not writable: {reason}",
            hint="fix its permissions, or pass --data-dir (or set INFRACORE_DATA_DIR) to another directory",
        ) from e


def _wire(kernel: Kernel) -> list[Component]:
    components: list[Component] = []
    for name in WIRING:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue  # that component is not built yet
            raise
        components.extend(module.wire(kernel))
    return components


class Server:
    """The whole platform, built from settings. `run()` returns the process exit code."""

    def __init__(self, settings: Settings, *, banner: IO[str] | None = None) -> None:
        self.settings = settings
        self.banner = banner or sys.stderr
        self.components: list[Component] = []
        self.states: dict[str, str] = {}
        self.console: ConsoleServer | None = None
        self._stopping = asyncio.Event()

    def request_stop(self) -> None:
        self._stopping.set()

    def status(self) -> dict[str, Any]:
        return {
            "data_dir": str(self.settings.data_dir),
            "components": [{"name": c.name, "state": self.states.get(c.name, "new")} for c in self.components],
        }

    async def run(self, on_ready: Callable[[Server], None] | None = None) -> int:
        s = self.settings
        lock = DataDirLock(s.data_dir)
        try:
            if _exists(lock.path):
                # Another server on this data dir is the likelier reason its ports are taken: say that.
                lock.acquire()
            preflight(s, WIRING)  # a start that cannot succeed creates nothing and prints no password
            prepare_data_dir(s.data_dir)
            if not lock.held:
                lock.acquire()
        except BaseException:
            lock.release()
            raise
        store = Store(s.state_db)
        started: list[Component] = []
        bus = EventBus(store)
        pools = Pools()
        try:
            for pool in pools.all():  # first up, last down: every component may use them
                await pool.start()
            await store.open()
            await store.migrate("core", CORE_MIGRATIONS)
            await bus.start()
            await bus.prune(s.event_retention_count)
            identity = Identity(
                store, bus, session_ttl_s=s.session_ttl_s, hash_rounds=s.password_hash_rounds, workers=pools.control
            )
            audit = AuditLog(store)
            api = Api()
            kernel = Kernel(s, store, bus, identity, audit, api, TaskSet("kernel"), pools)
            ctx = routes_core.CoreContext(
                identity, audit, bus, __version__, heartbeat_s=s.sse_heartbeat_s, status=self.status
            )
            routes_core.register(api, ctx)
            session.register(api, identity)
            self.components = _wire(kernel)
            host, port = s.console_addr
            self.console = ConsoleServer(
                api,
                identity,
                audit,
                host=host,
                port=port,
                socket_path=s.console_socket,
                max_body_bytes=s.api_max_body_bytes,
                drain_timeout_s=s.drain_timeout_s,
                ui_dir=_ui_dir(),
                # The gate's own trusted proxies sit in front of it: their hops are skipped too.
                trusted_proxies=[*s.console_trusted_proxies, *_gate_trusted(s)],
                allowed_hosts=s.console_allowed_hosts,
                data_dir=s.data_dir,
                clients=kernel.services.clients,
            )
            self.console.on_stop.append(ctx.end_streams)
            self.components.append(self.console)
            password: str | None = None
            for comp in self.components:
                if comp is self.console:
                    # The first admin is made once everything else has started (the gate's listeners are
                    # bound), just before the console that takes its login: a start that fails earlier
                    # leaves no account and prints no password.
                    password = await identity.ensure_initial_admin(s.data_dir)
                self.states[comp.name] = "starting"
                await comp.start()
                started.append(comp)
                self.states[comp.name] = "running"
            if password:
                self._print_banner(password)
            self._install_signals()
            # Each worker process imports what its jobs need now (after start-up, which it would slow),
            # not on the first request.
            pools.edge.submit(preload, "gate.policies").add_done_callback(_preloaded)
            pools.control.submit(preload, "core.identity", "orch.spec").add_done_callback(_preloaded)
            log.info(
                "infracore ready",
                version=__version__,
                console=f"http://{host}:{self.console.bound_port}",
                data_dir=str(s.data_dir),
                components=[c.name for c in self.components],
            )
            if on_ready:
                on_ready(self)
            await self._stopping.wait()
            log.info("stopping", drain_timeout_s=s.drain_timeout_s)
            return 0
        finally:
            await self._stop(started)
            for pool in pools.all():
                await pool.stop(s.drain_timeout_s)
            bus.close()
            await store.close()
            lock.release()
            log.info("stopped")

    async def _stop(self, started: list[Component]) -> None:
        for comp in reversed(started):
            self.states[comp.name] = "stopping"
            try:
                await asyncio.wait_for(comp.stop(self.settings.drain_timeout_s), self.settings.drain_timeout_s + 5)
                self.states[comp.name] = "stopped"
            except Exception as e:  # one component failing to stop must not keep the rest running
                self.states[comp.name] = "failed"
                log.error("component failed to stop", component=comp.name, error=repr(e))

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)

    def _print_banner(self, password: str) -> None:
        path = self.settings.data_dir / "initial-admin-password"
        # The password goes only to a terminal (the person who started the first run). Without one —
        # under systemd stderr is the journal, in a container it is the log collector — it would be
        # kept and shipped where any log reader sees it: then only the file is named.
        isatty = getattr(self.banner, "isatty", None)
        if callable(isatty) and isatty():
            text = (
                "\n"
                "  Infra-Core first start: an admin account was created.\n"
                "    username: admin\n"
                f"    password: {password}\n"
                f"  (also saved, mode 0600, in {path}; change it with `fsctl user passwd admin`)\n"
            )
        else:
            text = (
                f"Infra-Core first start: an admin account 'admin' was created; its password is in {path} "
                "(mode 0600, readable only by the user running the server). Change it with `fsctl user passwd admin`.\n"
            )
        print(text, file=self.banner, flush=True)


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:
        return False  # an unreadable data dir: prepare_data_dir says why


def _gate_trusted(s: Settings) -> list[str]:
    value = s.gate.get("trusted_proxies") if isinstance(s.gate, dict) else None
    return [str(v) for v in value] if isinstance(value, list) else []


def _preloaded(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("parse worker warm-up failed", error=repr(fut.exception()))


def _ui_dir() -> Path | None:
    here = Path(__file__).resolve().parent.parent / "ui" / "dist"
    return here if here.is_dir() else None


def serve(settings: Settings) -> int:
    """Run the server until SIGTERM/SIGINT on a uvloop loop; returns the exit code."""
    import uvloop

    os.umask(0o077)  # everything the platform writes (state, keys, logs) is private unless made otherwise
    configure_logging(settings.log_level, settings.log_format)
    server = Server(settings)
    try:
        return uvloop.run(server.run())
    except StartupError as e:
        hint = f" ({e.hint})" if e.hint else ""
        print(f"fsctl serve: error: {e.message}{hint}", file=sys.stderr)
        return 1
