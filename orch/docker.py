"""The `docker` runtime: each instance is a container made through the Docker Engine API (aiodocker), against
`DOCKER_HOST` or the default socket. What goes into the container is decided in `orch.containers` (pure);
this module talks to dockerd: image presence (and a pull with progress events when missing), create,
start, a long-poll `wait` per container for its end, the multiplexed log stream to the `LogSink`, stop with
the spec's signal then SIGKILL after `stop_timeout`, `docker exec` for exec health checks, and adoption of
a container that outlived the platform by its id and labels. Restart decisions stay with orch.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import structlog
from aiodocker.containers import DockerContainer
from aiodocker.exceptions import DockerError

from core.bus import DomainEvent
from core.ports import LogSink
from core.tasks import TaskSet
from orch.cgroups import CgroupHandle, Mounts
from orch.containers import (
    LABEL_INDEX,
    LABEL_OWNER,
    LABEL_RELEASE,
    LABEL_SERVICE,
    LogFrames,
    config_files_tar,
    container_name,
    create_body,
    exit_status,
    ports_from_labels,
    volume_name,
)
from orch.events import ImagePull, ImagePullFailed, ImagePullProgress
from orch.runtime import ExitStatus, InstanceConfig, InstanceStats, RuntimeError_
from orch.volumes import parse_volume

log = structlog.get_logger("orch.docker")

EventFn = Callable[[DomainEvent], None]
_STREAM = aiohttp.ClientTimeout(total=None, sock_read=None, sock_connect=10)


def _msg(e: DockerError) -> str:
    return str(e.message).strip() if getattr(e, "message", None) else str(e)


@dataclass(eq=False)
class ContainerInstance:
    config: InstanceConfig
    name: str
    container_id: str | None = None
    pid: int | None = None  # host pid of the container's init
    started_at: float | None = None
    adopted: bool = False
    exit: asyncio.Future[ExitStatus] | None = None
    stopping: bool = False
    cgroup: CgroupHandle | None = None
    logs_done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def id(self) -> str:
        return self.config.instance

    def record(self) -> dict[str, Any]:
        return {
            "runtime": "docker",
            "container_id": self.container_id,
            "name": self.name,
            "started_at": self.started_at,
            "version": self.config.version,
            "ports": dict(self.config.ports),
            "container_ports": dict(self.config.container_ports),
        }


def _container_cgroup(container_id: str, pid: int | None) -> CgroupHandle | None:
    """The container's cgroup as dockerd made it (cgroupfs v1, v2, or the systemd driver's scope), read
    from /proc/PID/cgroup of its init so every layout is found the same way."""
    if pid is None:
        return None
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    m = Mounts.read()
    dirs: dict[str, Path] = {}
    rel = None
    for line in lines:
        _, ctrls, path = line.split(":", 2)
        if container_id not in path:
            continue
        for c in ctrls.split(","):
            if c in m.v1:
                dirs[c] = m.v1[c] / path.lstrip("/")
                rel = path
        if ctrls == "" and m.v2 is not None and not dirs:
            return CgroupHandle("v2", {"unified": m.v2 / path.lstrip("/")}, rel=path)
    return CgroupHandle("v1", dirs, rel=rel) if dirs else None


class DockerRuntime:
    """Runs instances as containers. See `orch.runtime.Runtime` for the contract.

    `prefix` names containers (`<prefix>-<service>-<n>`) and named volumes; `owner` is written into every
    container's labels so that several platforms sharing one dockerd never adopt or remove each other's."""

    name = "docker"

    def __init__(
        self,
        log_sink: LogSink,
        *,
        url: str | None = None,
        prefix: str = "infracore",
        owner: str = "",
        on_event: EventFn | None = None,
        pull_timeout_s: float = 600.0,
    ) -> None:
        self.log_sink = log_sink
        self.url = url
        self.prefix = prefix
        self.owner = owner
        self.on_event = on_event or (lambda _e: None)
        self.pull_timeout_s = pull_timeout_s
        self._docker: aiodocker.Docker | None = None
        self._reachable_at = 0.0
        self._pulls: dict[str, asyncio.Lock] = {}
        self._tasks = TaskSet("orch.docker")

    @property
    def docker(self) -> aiodocker.Docker:
        if self._docker is None:
            self._docker = aiodocker.Docker(url=self.url)  # needs the loop: made on first use
        return self._docker

    def where(self) -> str:
        return self.url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"

    async def problem(self) -> str | None:
        """Why containers cannot run now (dockerd unreachable), or None. A success is trusted for 10 s."""
        if time.monotonic() - self._reachable_at < 10:
            return None
        try:
            async with asyncio.timeout(5):
                await self.docker.version()
        except (DockerError, aiohttp.ClientError, OSError, TimeoutError, ValueError) as e:
            return (
                f"dockerd does not answer at {self.where()} ({type(e).__name__}: {e}); start Docker or set "
                "orch.docker_host"
            )
        self._reachable_at = time.monotonic()
        return None

    async def close(self) -> None:
        await self._tasks.close()
        if self._docker is not None:
            await self._docker.close()
            self._docker = None

    # --- lifecycle ------------------------------------------------------------------------------

    async def create(self, config: InstanceConfig) -> ContainerInstance:
        if not config.image:
            raise RuntimeError_(f"{config.instance}: the docker runtime needs image:")
        name = container_name(self.prefix, config)
        try:
            await self._ensure_image(config)
            await self._prepare_volumes(config)
            await self._clear_name(config, name)
            body = create_body(config, prefix=self.prefix, owner=self.owner)
            container = await self.docker.containers.create(config=body, name=name)
            files = config_files_tar(config)
            if files is not None:  # in place before the program starts, as for a native process
                await container.put_archive("/", files)
        except DockerError as e:
            raise RuntimeError_(f"{config.instance}: cannot create container {name}: {_msg(e)}") from e
        except (aiohttp.ClientError, OSError) as e:
            raise RuntimeError_(f"{config.instance}: dockerd at {self.where()} failed: {e}") from e
        return ContainerInstance(config, name, container_id=container.id)

    async def _ensure_image(self, config: InstanceConfig) -> None:
        image = config.image
        assert image is not None
        lock = self._pulls.setdefault(image, asyncio.Lock())
        async with lock:  # replicas of one service pull once
            try:
                await self.docker.images.inspect(image)
                return
            except DockerError as e:
                if e.status != 404:
                    raise
            log.info("pulling image", service=config.service, image=image)
            self.on_event(ImagePull(config.service, image, "started"))
            last = 0.0
            try:
                async with asyncio.timeout(self.pull_timeout_s):
                    async for item in self.docker.images.pull(image, stream=True):
                        if item.get("error"):
                            raise DockerError(500, str(item["error"]))
                        now = time.monotonic()
                        if now - last >= 1.0:  # progress at most once a second
                            last = now
                            self.on_event(
                                ImagePullProgress(
                                    service=config.service,
                                    image=image,
                                    status=item.get("status"),
                                    layer=item.get("id"),
                                    progress=item.get("progressDetail") or None,
                                )
                            )
            except (DockerError, TimeoutError) as e:
                why = _msg(e) if isinstance(e, DockerError) else f"no result within {self.pull_timeout_s:g}s"
                self.on_event(ImagePullFailed(config.service, image, "failed", why))
                raise RuntimeError_(
                    f"{config.instance}: image {image} is not on this machine and pulling it failed: {why}. "
                    "Check the name and tag, or, where no registry is reachable, load it with docker load / "
                    "docker build first"
                ) from None
            self.on_event(ImagePull(config.service, image, "done"))

    async def _prepare_volumes(self, config: InstanceConfig) -> None:
        for text in config.volumes:
            v = parse_volume(text)
            if v.kind == "bind":
                if not os.path.exists(v.source):
                    raise RuntimeError_(
                        f"{config.instance}: volumes: bind mount source {v.source} does not exist "
                        "on this host; create it first"
                    )
                continue
            vname = volume_name(self.prefix, config.service, v.source)
            await self.docker.volumes.create(
                {"Name": vname, "Labels": {LABEL_SERVICE: config.service, LABEL_OWNER: self.owner}}
            )

    async def _clear_name(self, config: InstanceConfig, name: str) -> None:
        """A container already named `name`: ours and left from an earlier run → removed; anyone else's →
        an error (never remove what we did not make)."""
        try:
            old = await self.docker.containers.get(name)
        except DockerError as e:
            if e.status == 404:
                return
            raise
        lbl = old._container.get("Config", {}).get("Labels") or {}
        if lbl.get(LABEL_OWNER) != self.owner or lbl.get(LABEL_SERVICE) != config.service:
            raise RuntimeError_(
                f"{config.instance}: a container named {name} exists and was not made by this "
                f"platform (labels {LABEL_SERVICE}/{LABEL_OWNER} differ); remove or rename it"
            )
        log.info("removing a leftover container", name=name, container=old.id[:12])
        await old.delete(force=True)

    async def start(self, instance: ContainerInstance) -> None:
        cfg = instance.config
        c = self._container(instance)
        try:
            await c.start()
            info = await c.show()
        except DockerError as e:
            raise RuntimeError_(f"{cfg.instance}: cannot start container {instance.name}: {_msg(e)}") from e
        instance.pid = info["State"].get("Pid") or None
        instance.started_at = time.time()
        instance.cgroup = _container_cgroup(instance.container_id or "", instance.pid)
        self._watch(instance, since=0)
        log.info(
            "container started",
            service=cfg.service,
            instance=cfg.instance,
            container=instance.name,
            id=(instance.container_id or "")[:12],
            image=cfg.image,
        )

    def _container(self, instance: ContainerInstance) -> DockerContainer:
        if instance.container_id is None:  # `create` sets it: an instance without one was never created
            raise RuntimeError_(f"{instance.id}: no container (the instance was never created)")
        return self.docker.containers.container(instance.container_id)

    def _watch(self, instance: ContainerInstance, since: int) -> None:
        instance.exit = asyncio.get_running_loop().create_future()
        self._tasks.spawn(f"logs:{instance.name}", self._pump_logs(instance, since))
        self._tasks.spawn(f"wait:{instance.name}", self._wait_exit(instance))

    async def _pump_logs(self, instance: ContainerInstance, since: int) -> None:
        cfg = instance.config
        frames = LogFrames()

        def emit(items: list[tuple[str, bytes]]) -> None:
            for stream in ("stdout", "stderr"):
                data = b"".join(line + b"\n" for s, line in items if s == stream)
                if data:
                    self.log_sink.append(cfg.service, cfg.instance, stream, data)

        params = {"follow": "1", "stdout": "1", "stderr": "1", "since": str(since)}
        try:
            # aiodocker's own log() joins stdout and stderr; the raw stream keeps them apart.
            async with self.docker._query(
                f"containers/{instance.container_id}/logs", params=params, timeout=_STREAM
            ) as resp:
                try:
                    async for chunk in resp.content.iter_any():
                        emit(frames.feed(chunk))
                finally:
                    # aiodocker's _query leaves the response to its caller: unclosed, the stream's
                    # connection stayed open until the GC found it (a ResourceWarning per container).
                    resp.close()
        except (DockerError, aiohttp.ClientError, OSError) as e:
            log.warning("container log stream ended", container=instance.name, error=str(e))
        finally:
            emit(frames.flush())
            instance.logs_done.set()

    async def _wait_exit(self, instance: ContainerInstance) -> None:
        c = self._container(instance)
        status: ExitStatus | None = None
        while status is None:
            try:
                await c.wait(timeout=_STREAM)
                state = (await c.show())["State"]
                if state.get("Running"):
                    continue  # dockerd restarted under us and wait returned early
                status = exit_status(state)
                for _ in range(3):
                    if not (status.signal == signal.SIGKILL and not status.oom_killed and instance.config.memory_bytes):
                        break
                    # dockerd learns of an OOM kill from an event that can land just after the exit: ask again.
                    await asyncio.sleep(0.3)
                    status = exit_status((await c.show())["State"])
            except DockerError as e:
                if e.status == 404:
                    status = ExitStatus(note="the container was removed from outside")
                else:
                    log.warning("waiting for a container failed; retrying", container=instance.name, error=_msg(e))
                    await asyncio.sleep(1)
            except (aiohttp.ClientError, OSError) as e:
                log.warning("dockerd unreachable while waiting for a container", container=instance.name, error=str(e))
                await asyncio.sleep(1)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(instance.logs_done.wait(), 2)  # its last lines before its end is reported
        log.info(
            "container exited",
            service=instance.config.service,
            container=instance.name,
            status=status.detail,
            expected=instance.stopping,
        )
        if instance.exit is not None and not instance.exit.done():
            instance.exit.set_result(status)

    async def wait(self, instance: ContainerInstance) -> ExitStatus:
        assert instance.exit is not None, "instance was never started"
        return await asyncio.shield(instance.exit)

    async def stop(self, instance: ContainerInstance, timeout_s: float | None = None) -> ExitStatus:
        if instance.exit is None:
            return ExitStatus(note="never started")
        timeout = instance.config.stop_timeout_s if timeout_s is None else timeout_s
        instance.stopping = True
        if not instance.exit.done():
            await self.kill(instance, instance.config.stop_signal)
            try:
                await asyncio.wait_for(asyncio.shield(instance.exit), timeout)
            except TimeoutError:
                log.warning("container did not stop in time; killing it", container=instance.name, timeout_s=timeout)
                await self.kill(instance, signal.SIGKILL)
        return await asyncio.shield(instance.exit)

    async def kill(self, instance: ContainerInstance, sig: int) -> None:
        try:
            await self._container(instance).kill(signal=signal.Signals(sig).name)
        except DockerError as e:
            if e.status not in (404, 409):  # gone, or not running: nothing to signal
                raise RuntimeError_(f"{instance.id}: cannot signal container {instance.name}: {_msg(e)}") from e

    async def remove(self, instance: ContainerInstance) -> None:
        """Removes the container (never its named volumes)."""
        if instance.container_id is None:
            return
        try:
            await self._container(instance).delete(force=True, v=False)
        except DockerError as e:
            if e.status != 404:
                log.warning("cannot remove container", container=instance.name, error=_msg(e))

    async def remove_volumes(self, service: str) -> list[str]:
        """Remove the named volumes this platform made for `service` (`fsctl service rm --volumes`)."""
        found = await self.docker.volumes.list(
            filters={"label": [f"{LABEL_SERVICE}={service}", f"{LABEL_OWNER}={self.owner}"]}
        )
        gone = []
        for v in found.get("Volumes") or []:
            try:
                await (await self.docker.volumes.get(v["Name"])).delete()
            except DockerError as e:
                log.warning("cannot remove volume", volume=v["Name"], error=_msg(e))
                continue
            gone.append(v["Name"])
        return gone

    # --- health ---------------------------------------------------------------------------------

    async def exec_probe(self, instance: ContainerInstance, argv: list[str]) -> tuple[bool, str]:
        """Run `argv` inside the container (`docker exec`), wait for it: (exit code == 0, detail). The caller
        bounds the time; a command still running then is left to end on its own (Docker cannot kill an exec)."""
        c = self._container(instance)
        try:
            ex = await c.exec(argv, stdout=True, stderr=True)
            out = bytearray()
            stream = ex.start(detach=False)
            try:
                while (msg := await stream.read_out()) is not None:
                    if len(out) < 4096:
                        out += msg.data
            finally:
                await stream.close()
            code = (await ex.inspect()).get("ExitCode")
        except DockerError as e:
            return False, f"docker exec failed: {_msg(e)}"
        tail = out.decode(errors="replace").strip().splitlines()[-1:]
        return code == 0, f"exit code {code}" + (f": {tail[0][:200]}" if tail else "")

    # --- observation ----------------------------------------------------------------------------

    def stats(self, instance: ContainerInstance) -> InstanceStats:
        cg = instance.cgroup
        if cg is None:
            return InstanceStats()
        return InstanceStats(cg.cpu_seconds(), cg.memory_bytes(), len(cg.pids()) or None)

    def inspect(self, instance: ContainerInstance) -> dict[str, Any]:
        ex = instance.exit.result() if instance.exit is not None and instance.exit.done() else None
        cfg = instance.config
        return {
            "id": instance.id,
            "runtime": self.name,
            "pid": instance.pid,
            "started_at": instance.started_at,
            "adopted": instance.adopted,
            "running": ex is None and instance.exit is not None,
            "exit": ex.to_dict() if ex else None,
            "cgroup": None,
            "container_id": instance.container_id,
            "container": instance.name,
            "image": cfg.image,
            "ports": dict(cfg.ports),
            "container_ports": dict(cfg.container_ports),
        }

    # --- adoption -------------------------------------------------------------------------------

    async def discover(self) -> list[dict[str, Any]]:
        """Adoption records, from their labels, of the running containers this platform made."""
        out = []
        for c in await self.docker.containers.list(
            filters={"label": [f"{LABEL_OWNER}={self.owner}"], "status": ["running"]}
        ):
            lbl = c._container.get("Labels") or {}
            host, inside = ports_from_labels(lbl)
            if not lbl.get(LABEL_INDEX, "").isdigit() or not lbl.get(LABEL_SERVICE):
                continue
            release = lbl.get(LABEL_RELEASE, "")
            out.append(
                {
                    "service": lbl[LABEL_SERVICE],
                    "index": int(lbl[LABEL_INDEX]),
                    "runtime": "docker",
                    "container_id": c.id,
                    "ports": host,
                    "container_ports": inside,
                    "version": int(release) if release.isdigit() else 0,
                    "started_at": c._container.get("Created"),
                }
            )
        return out

    async def adopt(self, config: InstanceConfig, record: Mapping[str, Any]) -> ContainerInstance | None:
        cid = record.get("container_id")
        if not isinstance(cid, str) or not cid:
            return None
        try:
            info = await self.docker.containers.container(cid).show()
        except DockerError as e:
            if e.status == 404:
                return None
            raise RuntimeError_(f"{config.instance}: cannot inspect container {cid[:12]}: {_msg(e)}") from e
        lbl = info.get("Config", {}).get("Labels") or {}
        if lbl.get(LABEL_OWNER) != self.owner or lbl.get(LABEL_SERVICE) != config.service:
            return None
        if not info["State"].get("Running"):
            return None  # it ended while the platform was away: orch starts a new one (and removes this one)
        inst = ContainerInstance(
            config,
            info["Name"].lstrip("/"),
            container_id=cid,
            pid=info["State"].get("Pid"),
            started_at=record.get("started_at"),
            adopted=True,
        )
        inst.cgroup = _container_cgroup(cid, inst.pid)
        self._watch(inst, since=int(time.time()))
        log.info("container adopted", service=config.service, container=inst.name, id=cid[:12])
        return inst
