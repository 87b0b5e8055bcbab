"""The `process` runtime: each instance is a native child in its own session and process group.

Exit is noticed through a pidfd on the loop (no polling, no SIGCHLD handler of our own); stop signals the
whole process group and the instance's cgroup, then SIGKILLs both after the stop timeout, so nothing the
instance forked outlives it. stdout/stderr are files the child appends to, shipped to the `LogSink` by
`orch.outfiles` (so the child outlives the platform); without an output dir, pipes to the sink. An instance
that outlived a platform restart is adopted by pid + start time (never a recycled pid), and its output
continues from where the last run stopped shipping (pipes are reopened through `/proc/PID/fd`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from core.ports import LogSink, Stream
from orch._files import ConfigFileRefused, write_inside
from orch.cgroups import CgroupDriver, CgroupHandle
from orch.outfiles import OutputFiles
from orch.runtime import ExitStatus, InstanceConfig, InstanceStats, RuntimeError_

log = structlog.get_logger("orch.process")

_PASS_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "HOME", "PYTHONPATH")


def proc_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    return int(fields[19])


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes whose process group is `pgid`."""
    out: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        rest = raw[raw.rfind(")") + 2 :].split()
        if int(rest[2]) == pgid and rest[0] not in ("Z", "X"):
            out.append(int(entry.name))
    return out


def user_problem(user: str) -> str | None:
    """Why a process cannot be run as `user` here, or None (checked when a spec is applied)."""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return f"user {user!r} does not exist on this host"
    if os.geteuid() != 0 and pw.pw_uid != os.geteuid():
        return f"cannot run as {user!r}: the platform is not running as root"
    return None


def _same_process(pid: int, start_ticks: int | None) -> bool:
    """True while `pid` is the process that started at `start_ticks` (not a recycled pid)."""
    ticks = proc_start_ticks(pid)
    return ticks is not None and (start_ticks is None or ticks == start_ticks)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _spawn(
    argv: list[str], out_w: int, err_w: int, workdir: str | None, env: dict[str, str], uid: int | None, gid: int | None
) -> subprocess.Popen[bytes]:
    """fork+exec (vfork where Python can): a few milliseconds, fine on the loop, and no thread hand-off."""
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=out_w,
        stderr=err_w,
        cwd=workdir,
        env=env,
        start_new_session=True,
        close_fds=True,
        user=uid,
        group=gid,
        extra_groups=[] if uid is not None else None,
    )


@dataclass(eq=False)
class ProcessInstance:
    config: InstanceConfig
    cgroup: CgroupHandle | None = None
    pid: int | None = None
    start_ticks: int | None = None
    started_at: float | None = None
    adopted: bool = False
    popen: subprocess.Popen[bytes] | None = None
    pidfd: int | None = None
    oom_before: int = 0
    exit: asyncio.Future[ExitStatus] | None = None
    stopping: bool = False
    output: Path | None = None  # its output files' manifest (`orch.outfiles`)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.config.instance

    def record(self) -> dict[str, Any]:
        return {
            "runtime": "process",
            "pid": self.pid,
            "start_ticks": self.start_ticks,
            "started_at": self.started_at,
            "version": self.config.version,
            "ports": dict(self.config.ports),
            "cgroup": self.cgroup.to_record() if self.cgroup else None,
            **({"output": str(self.output)} if self.output else {}),
        }


class ProcessRuntime:
    """Runs instances as supervised native processes. See `orch.runtime.Runtime` for the contract."""

    name = "process"

    def __init__(
        self,
        log_sink: LogSink,
        cgroups: CgroupDriver,
        *,
        default_user: str | None = None,
        kill_grace_s: float = 5.0,
        output_dir: Path | None = None,
        output_max_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.log_sink = log_sink
        self.cgroups = cgroups
        self.default_user = default_user
        self.kill_grace_s = kill_grace_s
        self.outputs: OutputFiles | None = None
        if output_dir is not None:
            self.outputs = OutputFiles(log_sink, output_dir, max_bytes=output_max_bytes, alive=_same_process)
            self.outputs.start()

    async def close(self) -> None:
        """Ship the output there is now (instances keep writing to their files) and stop the tailer."""
        if self.outputs is not None:
            await asyncio.to_thread(self.outputs.close)

    # --- lifecycle ------------------------------------------------------------------------------

    async def create(self, config: InstanceConfig) -> ProcessInstance:
        if not config.argv:
            raise RuntimeError_(f"{config.instance}: the process runtime needs cmd (image is for docker)")
        cg = None
        if config.memory_bytes or config.cpu or self.cgroups.kind != "rlimit":
            name = f"{config.instance}-{secrets.token_hex(3)}"
            try:
                cg = self.cgroups.create(name, memory_bytes=config.memory_bytes, cpu=config.cpu)
            except OSError as e:
                raise RuntimeError_(f"{config.instance}: cannot set up its cgroup: {e.strerror or e}") from e
        return ProcessInstance(config, cg)

    async def start(self, instance: ProcessInstance) -> None:
        cfg = instance.config
        user = cfg.user or self.default_user
        uid = gid = None
        if user and os.geteuid() == 0:
            try:
                pw = pwd.getpwnam(user)
            except KeyError:
                raise RuntimeError_(f"{cfg.instance}: user {user!r} does not exist on this host") from None
            uid, gid = pw.pw_uid, pw.pw_gid
        elif user and user != pwd.getpwuid(os.geteuid()).pw_name:
            raise RuntimeError_(f"{cfg.instance}: cannot run as {user!r}: the platform is not running as root")
        env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ} | dict(cfg.env)
        workdir = cfg.workdir or None
        if workdir and not Path(workdir).is_dir():
            raise RuntimeError_(f"{cfg.instance}: workdir {workdir} does not exist")
        exe = cfg.argv[0]
        if "/" in exe:
            path = Path(workdir or ".", exe) if not exe.startswith("/") else Path(exe)
            if not os.access(path, os.X_OK):
                raise RuntimeError_(f"{cfg.instance}: {exe} is not an executable file")
        elif shutil.which(exe, path=env.get("PATH")) is None:
            raise RuntimeError_(f"{cfg.instance}: command {exe!r} not found in PATH ({env.get('PATH', '')})")
        for path_s, content, mode in cfg.config_files:
            if not workdir:
                raise RuntimeError_(f"{cfg.instance}: config file {path_s!r} needs a workdir to be written in")
            try:
                write_inside(os.path.realpath(workdir), path_s, content, mode)  # no link after this: refused
            except ConfigFileRefused as e:
                raise RuntimeError_(f"{cfg.instance}: {e}") from e
        argv = list(cfg.argv)
        cg = instance.cgroup
        if cg is not None:
            script = cg.join_script()
            setpriv = shutil.which("setpriv") if uid is not None else None
            if script and setpriv:
                # Join the cgroups while still root, then drop to the user: on cgroup v1 (and v2 without
                # delegation) an unprivileged process may not move itself into a root-owned cgroup.
                drop = f"exec {setpriv} --reuid={uid} --regid={gid} --clear-groups --"
                argv = ["/bin/sh", "-c", f'{script}\n{drop} "$@"', cfg.argv[0], *cfg.argv]
                uid = gid = None
            elif script:
                argv = ["/bin/sh", "-c", f'{script}\nexec "$@"', cfg.argv[0], *cfg.argv]
                if uid is not None:
                    cg.chown(uid, gid or 0)
            instance.oom_before = cg.oom_kills()
        files = None
        if self.outputs is not None:
            try:
                files = self.outputs.create(cfg.service, cfg.instance)
            except OSError as e:
                raise RuntimeError_(f"{cfg.instance}: cannot create its output files: {e.strerror or e}") from e
            out_r, err_r = -1, -1
            out_w, err_w = files.write_fds["stdout"], files.write_fds["stderr"]
        else:
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
        try:
            popen = _spawn(argv, out_w, err_w, workdir, env, uid, gid)
        except OSError as e:
            if files is not None:
                assert self.outputs is not None  # the files came from it
                self.outputs.discard(files)
            else:
                for fd in (out_r, err_r, out_w, err_w):
                    os.close(fd)
            raise RuntimeError_(f"{cfg.instance}: cannot start {exe}: {e.strerror or e}") from e
        if files is None:
            os.close(out_w)
            os.close(err_w)
        instance.popen = popen
        instance.pid = popen.pid
        instance.start_ticks = proc_start_ticks(popen.pid)
        instance.started_at = time.time()
        if files is not None:
            assert self.outputs is not None  # the files came from it
            try:
                self.outputs.started(files, popen.pid, instance.start_ticks)
            except OSError as e:
                # Without its manifest nobody would ship its output or find it after a restart: it goes again.
                self._signal_all(instance, signal.SIGKILL)
                await asyncio.to_thread(popen.wait)
                raise RuntimeError_(
                    f"{cfg.instance}: started (pid {popen.pid}) but its output manifest {files.manifest} could "
                    f"not be written ({e.strerror or e}); it was stopped again: free space in "
                    f"{files.manifest.parent} or make it writable"
                ) from e
            instance.output = files.manifest
        else:
            self.log_sink.attach(cfg.service, cfg.instance, "stdout", out_r)
            self.log_sink.attach(cfg.service, cfg.instance, "stderr", err_r)
        self._watch(instance)
        log.info(
            "instance started", service=cfg.service, instance=cfg.instance, pid=popen.pid, cgroup=cg.rel if cg else None
        )

    def _watch(self, instance: ProcessInstance) -> None:
        loop = asyncio.get_running_loop()
        instance.exit = loop.create_future()
        assert instance.pid is not None
        try:
            instance.pidfd = os.pidfd_open(instance.pid)
        except ProcessLookupError:
            self._on_exit(instance)
            return
        loop.add_reader(instance.pidfd, self._on_exit, instance)

    def _on_exit(self, instance: ProcessInstance) -> None:
        status: ExitStatus | None = None
        if instance.popen is not None:
            rc = instance.popen.poll()
            if rc is None:
                return  # not reaped yet: the pidfd stays readable, we are called again
            status = ExitStatus(code=rc if rc >= 0 else None, signal=-rc if rc < 0 else None)
        else:
            status = ExitStatus(note="exit status unknown (the process was adopted after a platform restart)")
        if instance.pidfd is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(instance.pidfd)
            os.close(instance.pidfd)
            instance.pidfd = None
        cg = instance.cgroup
        if cg is not None and status.signal == signal.SIGKILL and cg.oom_kills() > instance.oom_before:
            status = ExitStatus(code=None, signal=signal.SIGKILL, oom_killed=True)
        # The leader is gone: whatever it left in its group or cgroup goes with it (no orphans).
        if instance.pid is not None:
            _signal_group(instance.pid, signal.SIGKILL)
        if cg is not None:
            cg.kill_all(signal.SIGKILL)
        if instance.output is not None and self.outputs is not None:
            self.outputs.ended(instance.output)
        log.info(
            "instance exited",
            service=instance.config.service,
            instance=instance.id,
            pid=instance.pid,
            status=status.detail,
            expected=instance.stopping,
        )
        if instance.exit is not None and not instance.exit.done():
            instance.exit.set_result(status)

    async def wait(self, instance: ProcessInstance) -> ExitStatus:
        assert instance.exit is not None, "instance was never started"
        return await asyncio.shield(instance.exit)

    async def stop(self, instance: ProcessInstance, timeout_s: float | None = None) -> ExitStatus:
        if instance.exit is None:
            return ExitStatus(note="never started")
        timeout = instance.config.stop_timeout_s if timeout_s is None else timeout_s
        instance.stopping = True
        pgid = instance.pid
        assert pgid is not None
        if not instance.exit.done():
            self._signal_all(instance, instance.config.stop_signal)
            try:
                await asyncio.wait_for(asyncio.shield(instance.exit), timeout)
            except TimeoutError:
                log.warning("instance did not stop in time; killing it", instance=instance.id, timeout_s=timeout)
                self._signal_all(instance, signal.SIGKILL)
        status = await asyncio.shield(instance.exit)
        await self._reap_group(instance)
        return status

    def _signal_all(self, instance: ProcessInstance, sig: int) -> None:
        """`sig` once to every process of the instance: its group, and whatever in its cgroup left the group."""
        if instance.pid is not None:
            _signal_group(instance.pid, sig)
        if instance.cgroup is None:
            return
        if sig == signal.SIGKILL:
            instance.cgroup.kill_all(sig)
            return
        for pid in instance.cgroup.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.getpgid(pid) != instance.pid:
                    os.kill(pid, sig)

    async def _reap_group(self, instance: ProcessInstance) -> None:
        """Make sure nothing of the instance is left: SIGKILL the group/cgroup until both are empty."""
        assert instance.pid is not None
        deadline = time.monotonic() + self.kill_grace_s
        while True:
            left = group_members(instance.pid)
            if instance.cgroup is not None:
                left += [p for p in instance.cgroup.pids() if p not in left]
            if not left:
                return
            if time.monotonic() > deadline:
                log.error("processes of a stopped instance survive SIGKILL", instance=instance.id, pids=left)
                return
            self._signal_all(instance, signal.SIGKILL)
            await asyncio.sleep(0.02)

    async def kill(self, instance: ProcessInstance, sig: int) -> None:
        self._signal_all(instance, sig)

    async def remove(self, instance: ProcessInstance) -> None:
        if instance.cgroup is not None:
            for _ in range(50):
                if not instance.cgroup.pids():
                    break
                await asyncio.sleep(0.02)
            instance.cgroup.remove()

    # --- observation ----------------------------------------------------------------------------

    def stats(self, instance: ProcessInstance) -> InstanceStats:
        cg = instance.cgroup
        if cg is not None and cg.kind != "rlimit":
            pids = cg.pids()
            return InstanceStats(cg.cpu_seconds(), cg.memory_bytes(), len(pids))
        if instance.pid is None:
            return InstanceStats()
        try:
            import psutil

            p = psutil.Process(instance.pid)
            t = p.cpu_times()
            return InstanceStats(t.user + t.system, p.memory_info().rss, 1)
        except Exception:
            return InstanceStats()

    def inspect(self, instance: ProcessInstance) -> dict[str, Any]:
        ex = instance.exit.result() if instance.exit is not None and instance.exit.done() else None
        return {
            "id": instance.id,
            "runtime": self.name,
            "pid": instance.pid,
            "started_at": instance.started_at,
            "adopted": instance.adopted,
            "running": ex is None and instance.pid is not None,
            "exit": ex.to_dict() if ex else None,
            "cgroup": instance.cgroup.rel if instance.cgroup else None,
            "ports": dict(instance.config.ports),
        }

    # --- adoption -------------------------------------------------------------------------------

    async def adopt(self, config: InstanceConfig, record: Mapping[str, Any]) -> ProcessInstance | None:
        pid, ticks = record.get("pid"), record.get("start_ticks")
        gone = not isinstance(pid, int) or ticks is None or proc_start_ticks(pid) != ticks
        output = None
        if record.get("output"):
            name = Path(str(record["output"])).name  # a manifest of this runtime's output dir, nothing else
            if self.outputs is None or not name.endswith(".json") or name.startswith("."):
                log.warning(
                    "output of adopted instance cannot be shipped",
                    instance=config.instance,
                    record=str(record["output"]),
                )
            else:  # shipped from where the last run stopped, alive or not (a dead one's last lines too)
                output = self.outputs.dir / name
                self.outputs.adopt(output, ended=gone)
        if gone:
            return None
        assert isinstance(pid, int)
        inst = ProcessInstance(
            config,
            CgroupHandle.from_record(record.get("cgroup")),
            pid=pid,
            start_ticks=ticks,
            started_at=record.get("started_at"),
            adopted=True,
            output=output,
        )
        if inst.cgroup is not None:
            inst.oom_before = inst.cgroup.oom_kills()
        pipes: tuple[tuple[int, Stream], ...] = ((1, "stdout"), (2, "stderr")) if output is None else ()
        for fd_no, stream in pipes:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd_no}").startswith("pipe:"):
                    fd = os.open(f"/proc/{pid}/fd/{fd_no}", os.O_RDONLY | os.O_NONBLOCK)
                    self.log_sink.attach(config.service, config.instance, stream, fd)
            except OSError as e:
                log.warning(
                    "cannot reattach output of adopted instance",
                    instance=config.instance,
                    stream=stream,
                    error=e.strerror,
                )
        self._watch(inst)
        log.info("instance adopted", service=config.service, instance=config.instance, pid=pid)
        return inst
