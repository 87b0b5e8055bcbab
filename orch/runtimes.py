"""`RuntimeSet`: the runtimes orch has, behind the one `Runtime` interface. Each call goes to the runtime named
by the instance's `InstanceConfig.runtime` (or, for `adopt`, by the record's `runtime`), so the supervisor
drives processes, containers and units with the same code."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from core.bus import DomainEvent
from core.ports import LogSink
from orch.cgroups import CgroupDriver
from orch.config import OrchSettings
from orch.runtime import ExitStatus, Instance, InstanceConfig, InstanceStats, Runtime, RuntimeError_

ExecIn = Callable[[list[str]], Awaitable[tuple[bool, str]]]


class RuntimeSet:
    """Dispatches to `runtimes` by name. `problem(name)` says why a runtime cannot run services now."""

    name = "set"

    def __init__(self, runtimes: Mapping[str, Runtime[Any]]) -> None:
        self.runtimes = dict(runtimes)

    def get(self, name: str) -> Runtime[Any]:
        rt = self.runtimes.get(name)
        if rt is None:
            raise RuntimeError_(f"the {name} runtime is not available on this platform")
        return rt

    def _of(self, instance: Instance) -> Runtime[Any]:
        return self.get(instance.config.runtime)

    async def problem(self, name: str) -> str | None:
        rt = self.runtimes.get(name)
        if rt is None:
            return f"the {name} runtime is not available on this platform"
        check = getattr(rt, "problem", None)
        return await check() if check is not None else None

    async def create(self, config: InstanceConfig) -> Instance:
        return await self.get(config.runtime).create(config)

    async def start(self, instance: Instance) -> None:
        await self._of(instance).start(instance)

    async def wait(self, instance: Instance) -> ExitStatus:
        return await self._of(instance).wait(instance)

    async def stop(self, instance: Instance, timeout_s: float | None = None) -> ExitStatus:
        return await self._of(instance).stop(instance, timeout_s)

    async def kill(self, instance: Instance, sig: int) -> None:
        await self._of(instance).kill(instance, sig)

    def stats(self, instance: Instance) -> InstanceStats:
        return self._of(instance).stats(instance)

    def inspect(self, instance: Instance) -> dict[str, Any]:
        return self._of(instance).inspect(instance)

    async def adopt(self, config: InstanceConfig, record: Mapping[str, Any]) -> Instance | None:
        rt = self.runtimes.get(str(record.get("runtime") or "process"))
        return await rt.adopt(config, record) if rt is not None else None

    async def remove(self, instance: Instance) -> None:
        await self._of(instance).remove(instance)

    def exec_in(self, instance: Instance) -> ExecIn | None:
        """How to run an exec health check inside the instance, when its runtime isolates it (containers);
        None means: run it on the host, as for a native process."""
        fn = getattr(self._of(instance), "exec_probe", None)
        if fn is None:
            return None
        return lambda argv: fn(instance, argv)

    async def close(self) -> None:
        for rt in self.runtimes.values():
            close = getattr(rt, "close", None)
            if close is not None:
                await close()


def make_runtimes(
    settings: OrchSettings,
    log_sink: LogSink,
    cgroups: CgroupDriver,
    *,
    data_dir: Path,
    run_dir: Path,
    on_event: Callable[[DomainEvent], None],
    process: Runtime[Any] | None = None,
) -> RuntimeSet:
    """The runtimes the settings ask for: process always, docker and systemd unless turned off."""
    from orch.docker import DockerRuntime
    from orch.process import ProcessRuntime
    from orch.systemd import SystemdRuntime

    st = settings
    runtimes: dict[str, Runtime[Any]] = {
        "process": process
        or ProcessRuntime(
            log_sink,
            cgroups,
            default_user=st.run_as_user,
            kill_grace_s=st.kill_grace_s,
            output_dir=run_dir / "out",
            output_max_bytes=st.output_file_max_bytes,
        )
    }
    if st.docker:
        # The owner label keeps platforms that share a dockerd (one per data dir) out of each other's way.
        owner = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
        runtimes["docker"] = DockerRuntime(
            log_sink,
            url=st.docker_host,
            owner=owner,
            prefix=st.docker_name_prefix,
            on_event=on_event,
            pull_timeout_s=st.docker_pull_timeout_s,
        )
    if st.systemd:
        runtimes["systemd"] = SystemdRuntime(
            log_sink,
            unit_dir=st.systemd_unit_dir,
            prefix=st.systemd_unit_prefix,
            command_prefix=st.systemd_command_prefix,
            enable=st.systemd_enable,
            poll_s=st.systemd_poll_s,
            cgroup_root=st.systemd_cgroup_root,
        )
    return RuntimeSet(runtimes)
