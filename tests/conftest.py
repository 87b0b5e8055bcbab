"""Shared fixtures: free loopback ports and a real `fsctl serve` subprocess on a temp data dir."""

from __future__ import annotations

import contextlib
import faulthandler
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
FSCTL = [sys.executable, "-m", "fsctl"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningServer:
    """A `fsctl serve` child process and how to talk to it."""

    proc: subprocess.Popen[bytes]
    data_dir: Path
    console_port: int
    http_port: int
    https_port: int
    log_path: Path
    env: dict[str, str]
    _tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.console_port}"

    @property
    def admin_password(self) -> str:
        return (self.data_dir / "initial-admin-password").read_text().strip()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def login(self, username: str = "admin", password: str | None = None) -> str:
        key = f"{username}:{password}"
        if key not in self._tokens:
            r = httpx.post(
                f"{self.url}/api/auth/login",
                json={"username": username, "password": password or self.admin_password},
                timeout=30,  # bcrypt in the worker pool: seconds on a loaded machine (httpx's default is 5 s)
            )
            assert r.status_code == 200, r.text
            self._tokens[key] = r.json()["token"]
        return self._tokens[key]

    def api(self, method: str, path: str, *, token: str | None = "admin", **kw: Any) -> httpx.Response:
        """A request to the console API; `token="admin"` logs in as the initial admin first."""
        headers = kw.pop("headers", {})
        if token == "admin":
            token = self.login()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kw)

    def fsctl(
        self, *args: str, input: str | None = None, token: str | None = "admin", timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run the CLI against this server."""
        env = {**self.env, "FSCTL_SERVER": self.url}
        if token == "admin":
            token = self.login()
        if token:
            env["FSCTL_TOKEN"] = token
        return subprocess.run(
            [*FSCTL, *args], input=input, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT
        )

    def wait_ready(self, timeout: float = 60) -> None:  # a start, not a speed check: 30 s passed on a loaded box
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"fsctl serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/api/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"fsctl serve not ready after {timeout}s:\n{self.log()}")

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"fsctl serve did not stop within {timeout}s after SIGTERM") from None
        return self.proc.returncode


def start_server(
    data_dir: Path,
    *,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
    console_port: int | None = None,
    wait: bool = True,
) -> RunningServer:
    data_dir.mkdir(parents=True, exist_ok=True)
    chosen_console = console_port
    for attempt in range(3):
        srv = _launch(data_dir, extra_args, env, chosen_console or free_port())
        if not wait:
            return srv
        try:
            srv.wait_ready()
            return srv
        except AssertionError:
            alive = srv.proc.poll() is None
            if alive:  # not ready in time: end it, or it outlives the test, owned by no fixture
                srv.proc.kill()
                srv.proc.wait()
            # A port free_port() handed out can be taken (by another program's outgoing connection) before
            # the server binds it; a failed start creates nothing, so start again on other ports. Only for
            # the ports picked here: a test that gives a taken port on purpose still sees the failure.
            ours = {srv.http_port, srv.https_port} | ({srv.console_port} if chosen_console is None else set())
            if alive or attempt == 2 or not any(f":{p} is already in use" in srv.log() for p in ours):
                raise
    raise AssertionError("unreachable")


def _launch(
    data_dir: Path, extra_args: list[str] | None, env: dict[str, str] | None, console_port: int
) -> RunningServer:
    http_port, https_port = free_port(), free_port()
    full_env = {
        **os.environ,
        "INFRACORE_PASSWORD_HASH_ROUNDS": "4",  # fast hashing for tests; the default is 12
        "INFRACORE_LOG_FORMAT": "json",
        "XDG_CONFIG_HOME": str(data_dir.parent / "xdg"),
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    full_env.pop("FSCTL_SERVER", None)
    full_env.pop("FSCTL_TOKEN", None)
    log_path = data_dir.parent / f"serve-{console_port}.log"
    args = [
        *FSCTL,
        "serve",
        "--data-dir",
        str(data_dir),
        "--console",
        f"127.0.0.1:{console_port}",
        "--http-port",
        str(http_port),
        "--https-port",
        str(https_port),
        *(extra_args or []),
    ]
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, env=full_env, cwd=ROOT)
    return RunningServer(proc, data_dir, console_port, http_port, https_port, log_path, full_env)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[RunningServer] = []

    def factory(name: str = "data", **kw: Any) -> RunningServer:
        srv = start_server(tmp_path / name, **kw)
        started.append(srv)
        return srv

    yield factory
    for srv in started:
        if srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait()
    for data_dir in {srv.data_dir for srv in started}:
        kill_left_instances(data_dir)


def kill_left_instances(data_dir: Path) -> None:
    """End the native service instances a test's server left running (they outlive `fsctl serve` by
    default), found by their pidfiles, with their cgroups."""
    from orch.cgroups import CgroupHandle
    from orch.process import proc_start_ticks

    for path in (data_dir / "run" / "orch").glob("*.json"):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(rec, dict) or rec.get("runtime", "process") != "process":
            continue
        pid = rec.get("pid")
        if isinstance(pid, int) and proc_start_ticks(pid) == rec.get("start_ticks"):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        cg = CgroupHandle.from_record(rec.get("cgroup"))
        if cg is not None:
            cg.kill_all()
            deadline = time.monotonic() + 5
            while cg.pids() and time.monotonic() < deadline:
                time.sleep(0.02)
            cg.remove()


@pytest.fixture
def server(server_factory: Any) -> RunningServer:
    return server_factory()


# The last resort against a hang. pytest-timeout (`timeout` in pyproject, `--timeout`, PYTEST_TIMEOUT, the
# `timeout` marker) fails a test once, by SIGALRM raising `Failed` where the test is: a hypothesis test
# catches that as a failing example and goes on generating and shrinking with no timer left (CI hung over 15
# minutes so on logbus's `re` oracle), a failed step cancels the timer for the rest of the test (a teardown
# that then hangs has none), and a C call that never checks for signals is not interrupted at all. So a
# watchdog is armed by pytest-timeout's own timer hooks, with the timeout it resolved (`settings.timeout`),
# in two stages: a minute past it a daemon thread prints every thread's stack to the real stderr and sends
# SIGINT (pytest stops and still prints its failures and summary, exit status 2); two minutes past it, for a
# main thread stuck in C that never sees the SIGINT, faulthandler's C thread (no GIL needed) prints the
# stacks and ends the process. pytest's faulthandler plugin and pytest-timeout cancel timers whenever a step
# fails (`pytest_exception_interact`); the watchdog is re-armed for what is left of its time right after,
# unless `--pdb` is debugging.
_WATCHDOG_SIGINT_AFTER = 60.0
_WATCHDOG_EXIT_AFTER = 120.0
_watchdog_fd: int | None = None


@dataclass
class _Watchdog:
    nodeid: str
    exit_at: float  # time.monotonic() of the second stage
    stop: threading.Event = field(default_factory=threading.Event)

    def arm_exit(self) -> None:
        assert _watchdog_fd is not None
        faulthandler.dump_traceback_later(max(self.exit_at - time.monotonic(), 1.0), exit=True, file=_watchdog_fd)

    def interrupt_after(self, delay: float) -> None:
        if self.stop.wait(delay) or _watchdog_fd is None:
            return
        os.write(_watchdog_fd, f"\n+++ watchdog: {self.nodeid} hangs; every thread's stack, then SIGINT\n".encode())
        faulthandler.dump_traceback(file=_watchdog_fd, all_threads=True)
        os.kill(os.getpid(), signal.SIGINT)


_watchdog: _Watchdog | None = None
_interacting = False


def pytest_configure(config: pytest.Config) -> None:
    global _watchdog_fd
    _watchdog_fd = os.dup(2)  # capture is suspended here: fd 2 is the terminal or CI log, not a capture file


@pytest.hookimpl(optionalhook=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> None:
    global _watchdog
    if not settings.timeout or _watchdog_fd is None:
        return  # returning None: pytest-timeout's own implementation still sets its timer
    timeout = float(settings.timeout)
    _watchdog = _Watchdog(item.nodeid, time.monotonic() + timeout + _WATCHDOG_EXIT_AFTER)
    threading.Thread(
        target=_watchdog.interrupt_after, args=(timeout + _WATCHDOG_SIGINT_AFTER,), name="watchdog", daemon=True
    ).start()
    _watchdog.arm_exit()


@pytest.hookimpl(optionalhook=True)
def pytest_timeout_cancel_timer(item: pytest.Item) -> None:
    global _watchdog
    if _watchdog is None or (_interacting and not item.config.getoption("usepdb")):
        return  # a failed step, not the end of the test: the watchdog stays (re-armed below)
    _watchdog.stop.set()
    faulthandler.cancel_dump_traceback_later()
    _watchdog = None


@pytest.hookimpl(hookwrapper=True)
def pytest_exception_interact(node: pytest.Item | pytest.Collector) -> Iterator[None]:
    global _interacting
    _interacting = True
    try:
        yield
    finally:
        _interacting = False
    if _watchdog is not None and not node.config.getoption("usepdb"):
        _watchdog.arm_exit()  # pytest's faulthandler plugin cancelled it


# A thread left running by a test (an aiosqlite connection never closed, say) keeps the interpreter
# alive after the last test: CI would hang until its own deadline. Name the test that left it and fail.
_leaked_threads: dict[int, str] = {}


def pytest_runtest_logfinish(nodeid: str, location: Any) -> None:
    for t in threading.enumerate():
        if not t.daemon and t is not threading.main_thread() and t.ident not in _leaked_threads:
            _leaked_threads[t.ident or 0] = f"{t.name} (alive after {nodeid})"


_exit_status = 0


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _exit_status
    _exit_status = int(exitstatus)


def pytest_unconfigure(config: pytest.Config) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        alive = [t for t in threading.enumerate() if not t.daemon and t is not threading.main_thread()]
        if not alive:
            return
        time.sleep(0.1)
    names = [_leaked_threads.get(t.ident or 0, t.name) for t in alive]
    sys.stderr.write(
        "\nERROR: threads still running after the tests (a resource was not closed):\n  " + "\n  ".join(names) + "\n"
    )
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(_exit_status or 3)  # the leaked threads would block interpreter exit forever


# asyncio's debug mode (asyncio_debug in pyproject) logs every loop step over 100 ms ("Executing <...> took
# 0.2 seconds"); pytest shows captured logs only for failing tests, so they are collected here and listed at
# the end: a step of the code under test in this list stalled every other connection for that long.
class _SlowLoopSteps(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.steps: list[tuple[float, str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        took = re.search(r" took (\d+\.\d+) seconds$", msg)
        if msg.startswith("Executing ") and took:
            test = os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" ", 1)[0]
            what = re.search(r"coro=<([^>]*)>|Handle ([^>]*)>", msg)
            self.steps.append((float(took.group(1)), test, (what.group(1) or what.group(2)) if what else msg[:200]))


_slow_steps = _SlowLoopSteps()
logging.getLogger("asyncio").addHandler(_slow_steps)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _slow_steps.steps:
        terminalreporter.section("asyncio loop steps over 100 ms (asyncio debug mode)")
        for took, test, what in sorted(_slow_steps.steps, reverse=True):
            terminalreporter.line(f"{took * 1000:6.0f} ms  {test}: {what}")
