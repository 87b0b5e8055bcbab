"""The `Runtime` interface every way of running an instance implements: `process`, `docker`, `systemd`.

A runtime runs *instances*: one replica of one service, described by an `InstanceConfig` that orch has
already expanded (`${PORT}` and friends substituted, ports allocated). The supervisor owns policy
(when to start, restart, give up); a runtime only does what it is told and reports what happened.
Conformance tests in `tests/orch/test_runtime_conformance.py` run against every implementation.
"""

from __future__ import annotations

import signal as _signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar


@dataclass(frozen=True)
class InstanceConfig:
    """Everything a runtime needs to run one instance. Values are final (already expanded)."""

    service: str
    index: int
    argv: tuple[str, ...] = ()
    image: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str | None = None
    user: str | None = None
    ports: Mapping[str, int] = field(default_factory=dict)
    memory_bytes: int | None = None
    cpu: float | None = None
    stop_timeout_s: float = 10.0
    stop_signal: int = int(_signal.SIGTERM)
    version: int = 0
    config_files: tuple[tuple[str, str, int], ...] = ()  # (path, content, mode)
    runtime: str = "process"  # which runtime of a `RuntimeSet` runs it
    entrypoint: tuple[str, ...] | None = None  # docker: replaces the image's ENTRYPOINT
    container_ports: Mapping[str, int] = field(default_factory=dict)  # docker: port name -> port inside
    volumes: tuple[str, ...] = ()  # docker: `SOURCE:TARGET[:ro]` as in the spec

    @property
    def instance(self) -> str:
        return f"{self.service}-{self.index}"


@dataclass(frozen=True)
class ExitStatus:
    """How an instance ended. `code` for a normal exit, `signal` when a signal ended it."""

    code: int | None = None
    signal: int | None = None
    oom_killed: bool = False
    note: str = ""  # e.g. "exit status unknown (adopted process)"

    @property
    def failed(self) -> bool:
        return self.oom_killed or self.signal is not None or (self.code is not None and self.code != 0)

    @property
    def detail(self) -> str:
        if self.oom_killed:
            return "killed by the OOM killer (memory limit reached)"
        if self.signal is not None:
            try:
                name = _signal.Signals(self.signal).name
            except ValueError:
                name = f"signal {self.signal}"
            return f"killed by {name}"
        if self.code is not None:
            return f"exit code {self.code}"
        return self.note or "exit status unknown"

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "signal": self.signal, "oom_killed": self.oom_killed, "detail": self.detail}


@dataclass(frozen=True)
class InstanceStats:
    cpu_seconds: float | None = None
    memory_bytes: int | None = None
    pids: int | None = None


class RuntimeError_(Exception):
    """A runtime could not do what it was asked (spawn failed, image missing, ...); the message says why."""


class Instance(Protocol):
    """A runtime's handle on one instance."""

    config: InstanceConfig

    @property
    def id(self) -> str: ...

    def record(self) -> dict[str, Any]:
        """What to persist so `Runtime.adopt` can find this instance again after the platform restarts."""


InstanceT = TypeVar("InstanceT", bound=Instance)


class Runtime(Protocol[InstanceT]):
    """Runs instances of its own kind, `InstanceT` (`RuntimeSet` hands each runtime only its own, by
    `config.runtime`). All methods are called on the loop; none may block it.

    - `create` prepares an instance (limits, files) without running it; `start` runs it and returns once it
      is spawned (not once it is healthy). A failed spawn raises `RuntimeError_` with the reason.
    - `wait` returns the `ExitStatus` once the instance has ended; it may be awaited by several tasks and
      again after it ended (same answer). Cancelling a waiter does not affect the instance.
    - `stop` is graceful: the stop signal to everything the instance started, then, after
      `stop_timeout_s`, SIGKILL to all of it. When it returns nothing of the instance runs. Idempotent.
    - `kill` sends one signal to the whole instance; it does not wait.
    - `stats` and `inspect` are cheap and never block.
    - `adopt` re-attaches to an instance from `record()` that outlived a platform restart, or returns
      None when it is gone (or the pid now belongs to something else).
    - `remove` frees what `create` made (cgroups, files); call it after the instance ended.
    - Output (stdout/stderr) goes to the `LogSink` the runtime was built with.
    """

    name: str

    async def create(self, config: InstanceConfig) -> InstanceT: ...

    async def start(self, instance: InstanceT) -> None: ...

    async def wait(self, instance: InstanceT) -> ExitStatus: ...

    async def stop(self, instance: InstanceT, timeout_s: float | None = None) -> ExitStatus: ...

    async def kill(self, instance: InstanceT, sig: int) -> None: ...

    def stats(self, instance: InstanceT) -> InstanceStats: ...

    def inspect(self, instance: InstanceT) -> dict[str, Any]: ...

    async def adopt(self, config: InstanceConfig, record: Mapping[str, Any]) -> InstanceT | None: ...

    async def remove(self, instance: InstanceT) -> None: ...
