"""The `systemd` runtime: each instance is a unit `<prefix>-<service>-<n>.service` rendered by `orch.units`,
written atomically to the unit dir (the previous text kept for rollback), `daemon-reload`ed, optionally
enabled, started and stopped with `systemctl`; its state read with `systemctl show` (one call per poll
for all units), its output followed with `journalctl -o json` into the `LogSink`.

Every command goes through `command_prefix` (empty: this machine), so the runtime can drive a systemd
that runs elsewhere: the tests use a container whose PID 1 is systemd, reached by `docker exec -i`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from core.ports import LogSink
from core.tasks import TaskSet
from orch._files import ConfigFileRefused, write_inside
from orch.cgroups import CgroupHandle, Mounts
from orch.runtime import ExitStatus, InstanceConfig, InstanceStats, RuntimeError_
from orch.units import (
    SHOW_PROPERTIES,
    is_running,
    journal_line,
    parse_show,
    render_unit,
    setup_failure,
    unit_exit_status,
    unit_name,
)

log = structlog.get_logger("orch.systemd")


class UnitHost:
    """Where systemd runs: this machine (`prefix` empty) or another one reached through `prefix`."""

    def __init__(self, prefix: Sequence[str] = ()) -> None:
        self.prefix = list(prefix)

    async def run(
        self, argv: Sequence[str], *, stdin: bytes | None = None, timeout_s: float = 60, merge: bool = True
    ) -> tuple[int, str]:
        """(exit code, stdout + stderr, or stdout only without `merge`). A missing program is exit code 127."""
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.prefix,
                *argv,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT if merge else asyncio.subprocess.DEVNULL,
            )
        except OSError as e:
            return 127, f"cannot run {shlex.join([*self.prefix, *argv][:3])}: {e.strerror or e}"
        try:
            out, _ = await asyncio.wait_for(proc.communicate(stdin), timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            return 124, f"{shlex.join(argv[:3])} gave no answer within {timeout_s:g}s"
        return proc.returncode or 0, out.decode(errors="replace").strip()

    async def read_file(self, path: str) -> str | None:
        if not self.prefix:
            try:
                return Path(path).read_text()
            except OSError:
                return None
        rc, out = await self.run(["cat", path])
        return out + "\n" if rc == 0 else None

    async def write_file(self, path: str, content: str, mode: int = 0o644) -> None:
        """Atomically (a temporary file beside it, then a rename), its directory made if missing."""
        if not self.prefix:
            tmp = Path(path + ".tmp")
            tmp.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(content)
            os.chmod(tmp, mode)
            os.replace(tmp, path)
            return
        script = 'mkdir -p "$(dirname "$1")" && cat > "$1.tmp" && chmod "$2" "$1.tmp" && mv -f "$1.tmp" "$1"'
        rc, out = await self.run(["sh", "-c", script, "sh", path, f"{mode:o}"], stdin=content.encode())
        if rc != 0:
            raise OSError(f"cannot write {path}: {out}")

    async def remove_file(self, path: str) -> None:
        if not self.prefix:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
        await self.run(["rm", "-f", path])


@dataclass(eq=False)
class UnitInstance:
    config: InstanceConfig
    unit: str
    invocation_id: str | None = None
    main_pid: int | None = None
    control_group: str | None = None
    started_at: float | None = None
    adopted: bool = False
    exit: asyncio.Future[ExitStatus] | None = None
    stopping: bool = False
    journal: asyncio.subprocess.Process | None = None
    props: dict[str, str] = field(default_factory=dict)
    missing: str | None = None  # why it cannot start (found by create, raised by start)
    cursor: str | None = None  # the journal cursor of the last line passed on
    draining: bool = False

    @property
    def id(self) -> str:
        return self.config.instance

    def record(self) -> dict[str, Any]:
        return {
            "runtime": "systemd",
            "unit": self.unit,
            "invocation_id": self.invocation_id,
            "started_at": self.started_at,
            "version": self.config.version,
            "ports": dict(self.config.ports),
        }


class SystemdRuntime:
    """Runs instances as systemd units. See `orch.runtime.Runtime` for the contract."""

    name = "systemd"

    def __init__(
        self,
        log_sink: LogSink,
        *,
        unit_dir: str = "/etc/systemd/system",
        prefix: str = "infracore",
        command_prefix: Sequence[str] = (),
        systemctl: Sequence[str] = ("systemctl",),
        journalctl: Sequence[str] = ("journalctl",),
        enable: bool = False,
        poll_s: float = 1.0,
        cgroup_root: str = "",
    ) -> None:
        self.log_sink = log_sink
        self.unit_dir = unit_dir.rstrip("/")
        self.prefix = prefix
        self.host = UnitHost(command_prefix)
        self.systemctl = list(systemctl)
        self.journalctl = list(journalctl)
        self.enable = enable
        self.poll_s = poll_s
        self.cgroup_root = cgroup_root.rstrip("/")
        self._watched: dict[str, UnitInstance] = {}
        self._poller: asyncio.Task[Any] | None = None
        self._wake = asyncio.Event()
        self._ok_at = 0.0
        self._tasks = TaskSet("orch.systemd")

    async def _ctl(self, *args: str, check: bool = True) -> str:
        rc, out = await self.host.run([*self.systemctl, *args])
        if check and rc != 0:
            raise RuntimeError_(f"systemctl {' '.join(args)} failed (exit {rc}): {out[-500:]}")
        return out

    async def problem(self) -> str | None:
        """Why units cannot run (no systemd reachable), or None. A success is trusted for 10 s."""
        if time.monotonic() - self._ok_at < 10:
            return None
        rc, out = await self.host.run([*self.systemctl, "is-system-running"], timeout_s=10)
        state = out.strip().splitlines()[-1] if out.strip() else ""
        if state not in ("running", "degraded", "starting", "initializing"):
            where = f" through {shlex.join(self.host.prefix)}" if self.host.prefix else ""
            return f"the systemd runtime cannot reach systemd{where} ({out[-200:] or f'exit {rc}'})"
        self._ok_at = time.monotonic()
        return None

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        for inst in self._watched.values():
            self._end_journal(inst)
        await self._tasks.close()

    # --- lifecycle ------------------------------------------------------------------------------

    def unit_path(self, unit: str) -> str:
        return f"{self.unit_dir}/{unit}"

    async def create(self, config: InstanceConfig) -> UnitInstance:
        if not config.argv:
            raise RuntimeError_(f"{config.instance}: the systemd runtime needs cmd")
        argv = list(config.argv)
        unit = unit_name(self.prefix, config)
        if not argv[0].startswith("/"):
            rc, out = await self.host.run(["sh", "-c", 'command -v "$1"', "sh", argv[0]])
            if rc != 0 or not out.startswith("/"):
                # Reported by start, as a spawn failure is for every runtime; nothing is written.
                return UnitInstance(config, unit, missing=f"command {argv[0]!r} not found in systemd's PATH")
            argv[0] = out.splitlines()[0]
        try:
            text = render_unit(_with_argv(config, argv))
        except ValueError as e:
            raise RuntimeError_(str(e)) from None
        path = self.unit_path(unit)
        try:
            await self.host.write_file(path, text)
        except OSError as e:
            raise RuntimeError_(f"{config.instance}: {e}") from e
        for file_path, content, mode in config.config_files:
            if not self.host.prefix:  # this machine: walked without following symlinks, as native services
                try:
                    real = os.path.realpath(config.workdir or "/")
                    await asyncio.to_thread(write_inside, real, file_path, content, mode)
                except ConfigFileRefused as e:
                    raise RuntimeError_(f"{config.instance}: {e}") from e
                continue
            full = os.path.normpath(os.path.join(config.workdir or "/", file_path))
            try:
                await self.host.write_file(full, content, mode)
            except OSError as e:
                raise RuntimeError_(f"{config.instance}: config file {full}: {e}") from e
        await self._ctl("daemon-reload")
        if self.enable:
            await self._ctl("enable", unit)
        return UnitInstance(config, unit)

    async def start(self, instance: UnitInstance) -> None:
        if instance.missing:
            raise RuntimeError_(f"{instance.id}: {instance.missing}")
        rc, out = await self.host.run([*self.systemctl, "start", instance.unit])
        props = (await self._show([instance.unit])).get(instance.unit, {})
        setup = setup_failure(props)
        if setup is not None:
            raise RuntimeError_(f"{instance.id}: systemd could not start {instance.config.argv[0]}: {setup}")
        if rc != 0 and not props.get("InvocationID"):
            raise RuntimeError_(f"{instance.id}: systemctl start {instance.unit} failed: {out[-300:]}")
        # Otherwise it ran: a program that exits at once may fail the start job, yet it is an exit like any.
        instance.props = props
        instance.invocation_id = props.get("InvocationID") or None
        instance.main_pid = int(props.get("MainPID", "0")) or None
        instance.control_group = props.get("ControlGroup") or None
        instance.started_at = time.time()
        self._watch(instance, backlog=True)
        log.info("unit started", service=instance.config.service, unit=instance.unit, pid=instance.main_pid)

    async def _show(self, units: Sequence[str]) -> dict[str, dict[str, str]]:
        out = await self._ctl("show", "-p", ",".join(SHOW_PROPERTIES), *units, check=False)
        return parse_show(out)

    def _watch(self, instance: UnitInstance, *, backlog: bool) -> None:
        instance.exit = asyncio.get_running_loop().create_future()
        self._watched[instance.unit] = instance
        self._tasks.spawn(f"journal:{instance.unit}", self._follow_journal(instance, backlog))
        if self._poller is None or self._poller.done():
            self._poller = self._tasks.spawn("poll", self._poll())
        self._wake.set()

    async def _follow_journal(self, instance: UnitInstance, backlog: bool) -> None:
        match = (
            f"_SYSTEMD_INVOCATION_ID={instance.invocation_id}"
            if instance.invocation_id
            else f"_SYSTEMD_UNIT={instance.unit}"
        )
        argv = [*self.host.prefix, *self.journalctl, "-f", "-o", "json", "-n", "all" if backlog else "0", match]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                limit=1 << 20,
            )
        except OSError as e:
            log.warning("cannot follow the journal", unit=instance.unit, error=e.strerror)
            return
        instance.journal = proc
        assert proc.stdout is not None
        try:
            while (line := await proc.stdout.readline()) and not instance.draining:
                self._journal_entry(instance, line)
        finally:
            self._end_journal(instance)

    def _journal_entry(self, instance: UnitInstance, line: bytes) -> None:
        item = journal_line(line)
        if item is None:
            return
        stream, data, cursor = item
        if cursor:
            instance.cursor = cursor
        if data is not None:
            cfg = instance.config
            self.log_sink.append(cfg.service, cfg.instance, stream, data + b"\n")

    async def _drain_journal(self, instance: UnitInstance) -> None:
        """After the end: what the follower has not read yet, from its last cursor (exactly once)."""
        instance.draining = True  # the follower passes nothing more on: from here the cursor query does
        self._end_journal(instance)
        match = (
            f"_SYSTEMD_INVOCATION_ID={instance.invocation_id}"
            if instance.invocation_id
            else f"_SYSTEMD_UNIT={instance.unit}"
        )
        after = [f"--after-cursor={instance.cursor}"] if instance.cursor else []
        rc, out = await self.host.run([*self.journalctl, "-o", "json", "--no-pager", *after, match], merge=False)
        for line in out.splitlines() if rc == 0 else []:
            self._journal_entry(instance, line.encode())

    def _end_journal(self, instance: UnitInstance) -> None:
        if instance.journal is not None and instance.journal.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                instance.journal.kill()

    async def _poll(self) -> None:
        """One `systemctl show` per tick for every watched unit; an ended one resolves its exit future."""
        while self._watched:
            units = list(self._watched)
            states = await self._show(units)
            for unit in units:
                inst = self._watched.get(unit)
                props = states.get(unit)
                if inst is None or props is None:
                    continue
                # An inactive unit shows no InvocationID; a different one means someone restarted it.
                ours = props.get("InvocationID") in ("", inst.invocation_id) or not inst.invocation_id
                if ours and is_running(props):
                    inst.props = props
                    continue
                self._watched.pop(unit, None)
                status = unit_exit_status(props) if ours else ExitStatus(note="the unit was restarted from outside")
                self._tasks.spawn(f"ended:{unit}", self._ended(inst, status))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)

    async def _ended(self, instance: UnitInstance, status: ExitStatus) -> None:
        await self._drain_journal(instance)  # its last lines, before its end is reported
        log.info(
            "unit ended",
            service=instance.config.service,
            unit=instance.unit,
            status=status.detail,
            expected=instance.stopping,
        )
        if instance.exit is not None and not instance.exit.done():
            instance.exit.set_result(status)

    async def wait(self, instance: UnitInstance) -> ExitStatus:
        assert instance.exit is not None, "instance was never started"
        return await asyncio.shield(instance.exit)

    async def stop(self, instance: UnitInstance, timeout_s: float | None = None) -> ExitStatus:
        if instance.exit is None:
            return ExitStatus(note="never started")
        timeout = instance.config.stop_timeout_s if timeout_s is None else timeout_s
        instance.stopping = True
        if not instance.exit.done():
            await self.kill(instance, instance.config.stop_signal)
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(instance.exit), timeout + self.poll_s)
            except TimeoutError:
                log.warning("unit did not stop in time; killing it", unit=instance.unit, timeout_s=timeout)
                await self.kill(instance, signal.SIGKILL)
        return await asyncio.shield(instance.exit)

    async def kill(self, instance: UnitInstance, sig: int) -> None:
        await self._ctl("kill", f"--signal={int(sig)}", instance.unit, check=False)
        self._wake.set()

    async def remove(self, instance: UnitInstance) -> None:
        """Stops what is left, disables and deletes the unit file, and forgets its failed state."""
        if instance.missing:
            return
        self._watched.pop(instance.unit, None)
        self._end_journal(instance)
        await self._ctl("stop", instance.unit, check=False)
        if self.enable:
            await self._ctl("disable", instance.unit, check=False)
        await self.host.remove_file(self.unit_path(instance.unit))
        await self._ctl("daemon-reload", check=False)
        await self._ctl("reset-failed", instance.unit, check=False)

    # --- observation ----------------------------------------------------------------------------

    def _cgroup(self, instance: UnitInstance) -> CgroupHandle | None:
        if not instance.control_group:
            return None
        rel = self.cgroup_root + instance.control_group
        m = Mounts.read()
        if m.v1:
            return CgroupHandle("v1", {c: p / rel.lstrip("/") for c, p in m.v1.items()}, rel=rel)
        if m.v2 is not None:
            return CgroupHandle("v2", {"unified": m.v2 / rel.lstrip("/")}, rel=rel)
        return None

    def stats(self, instance: UnitInstance) -> InstanceStats:
        cg = self._cgroup(instance)
        if cg is None:
            return InstanceStats()
        cpu = cg.cpu_seconds()
        m = Mounts.read()
        if cpu is None and m.v2 is not None and cg.rel:
            # systemd on v1 with cpu and cpuacct mounted apart puts units in neither's cpuacct; the hybrid
            # unified tree still counts their CPU time in cpu.stat.
            cpu = CgroupHandle("v2", {"unified": m.v2 / cg.rel.lstrip("/")}).cpu_seconds()
        return InstanceStats(cpu, cg.memory_bytes(), len(cg.pids()) or None)

    def inspect(self, instance: UnitInstance) -> dict[str, Any]:
        ex = instance.exit.result() if instance.exit is not None and instance.exit.done() else None
        return {
            "id": instance.id,
            "runtime": self.name,
            "unit": instance.unit,
            "pid": instance.main_pid,
            "started_at": instance.started_at,
            "adopted": instance.adopted,
            "running": ex is None and instance.exit is not None,
            "exit": ex.to_dict() if ex else None,
            "cgroup": self.cgroup_root + instance.control_group if instance.control_group else None,
            "ports": dict(instance.config.ports),
            "active_state": instance.props.get("ActiveState"),
            "sub_state": instance.props.get("SubState"),
            "systemd_restarts": instance.props.get("NRestarts"),
        }

    # --- adoption -------------------------------------------------------------------------------

    async def adopt(self, config: InstanceConfig, record: Mapping[str, Any]) -> UnitInstance | None:
        unit, inv = record.get("unit"), record.get("invocation_id")
        if not isinstance(unit, str) or not unit:
            return None
        props = (await self._show([unit])).get(unit)
        if props is None or not is_running(props) or (inv and props.get("InvocationID") != inv):
            return None
        inst = UnitInstance(
            config,
            unit,
            invocation_id=props.get("InvocationID"),
            main_pid=int(props.get("MainPID", "0")) or None,
            control_group=props.get("ControlGroup") or None,
            started_at=record.get("started_at"),
            adopted=True,
            props=props,
        )
        self._watch(inst, backlog=False)
        log.info("unit adopted", service=config.service, unit=unit)
        return inst


def _with_argv(config: InstanceConfig, argv: list[str]) -> InstanceConfig:
    import dataclasses

    return dataclasses.replace(config, argv=tuple(argv))
