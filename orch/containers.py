"""The docker runtime's pure part: container names and labels, the Engine API create body from an
`InstanceConfig`, the `ExitStatus` from a container's state, and the decoder of Docker's multiplexed
log stream. No I/O here; `orch.docker` sends and receives.

Restarts are orch's (the supervisor's policies, back-off and crash-loop detection), so every container
is created with `RestartPolicy: no`; `Init: true` puts Docker's tiny init as PID 1 so signals reach the
program and zombies are reaped; ports are published on 127.0.0.1 only.
"""

from __future__ import annotations

import io
import math
import posixpath
import signal as _signal
import struct
import tarfile
from collections.abc import Mapping
from typing import Any

from orch.runtime import ExitStatus, InstanceConfig
from orch.volumes import parse_volume

LABEL_SERVICE = "infracore.service"
LABEL_INDEX = "infracore.index"
LABEL_INSTANCE = "infracore.instance"
LABEL_RELEASE = "infracore.release"
LABEL_OWNER = "infracore.owner"  # which platform (data dir) made it: several may share one dockerd
LABEL_PORTS = "infracore.ports"  # name=host:container,... so an adopted container's ports are known


def container_name(prefix: str, config: InstanceConfig) -> str:
    return f"{prefix}-{config.service}-{config.index}"


def volume_name(prefix: str, service: str, name: str) -> str:
    """Named volumes belong to their service: `data` of service `blog` is `infracore-blog-data`."""
    return f"{prefix}-{service}-{name}"


def labels(config: InstanceConfig, owner: str) -> dict[str, str]:
    ports = ",".join(f"{n}={hp}:{config.container_ports.get(n, hp)}" for n, hp in sorted(config.ports.items()))
    return {
        LABEL_SERVICE: config.service,
        LABEL_INDEX: str(config.index),
        LABEL_INSTANCE: config.instance,
        LABEL_RELEASE: str(config.version),
        LABEL_OWNER: owner,
        LABEL_PORTS: ports,
    }


def ports_from_labels(lbl: Mapping[str, str]) -> tuple[dict[str, int], dict[str, int]]:
    """(host ports, container ports) by port name, from `LABEL_PORTS`; ({}, {}) when absent or garbled."""
    host: dict[str, int] = {}
    inside: dict[str, int] = {}
    for item in filter(None, lbl.get(LABEL_PORTS, "").split(",")):
        name, _, pair = item.partition("=")
        hp, _, cp = pair.partition(":")
        if not (name and hp.isdigit() and cp.isdigit()):
            return {}, {}
        host[name], inside[name] = int(hp), int(cp)
    return host, inside


def create_body(config: InstanceConfig, *, prefix: str, owner: str) -> dict[str, Any]:
    """The body of `POST /containers/create` for `config` (which must have an image)."""
    assert config.image is not None
    signame = _signal.Signals(config.stop_signal).name
    exposed: dict[str, dict[str, Any]] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for name, host_port in config.ports.items():
        key = f"{config.container_ports.get(name, host_port)}/tcp"
        exposed[key] = {}
        bindings.setdefault(key, []).append({"HostIp": "127.0.0.1", "HostPort": str(host_port)})
    mounts = []
    for text in config.volumes:
        v = parse_volume(text)
        source = v.source if v.kind == "bind" else volume_name(prefix, config.service, v.source)
        mounts.append({"Type": v.kind, "Source": source, "Target": v.target, "ReadOnly": v.read_only})
    host: dict[str, Any] = {
        "Init": True,
        "RestartPolicy": {"Name": "no"},
        "PortBindings": bindings,
        "Mounts": mounts,
        "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "2"}},
    }
    if config.memory_bytes:
        host["Memory"] = config.memory_bytes
        host["MemorySwap"] = config.memory_bytes  # no swap on top: the limit is the limit
    if config.cpu:
        host["NanoCpus"] = int(config.cpu * 1e9)
    body: dict[str, Any] = {
        "Image": config.image,
        "Env": [f"{k}={v}" for k, v in config.env.items()],
        "Labels": labels(config, owner),
        "StopSignal": signame,
        "StopTimeout": max(1, math.ceil(config.stop_timeout_s)),
        "ExposedPorts": exposed,
        "Tty": False,
        "OpenStdin": False,
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "HostConfig": host,
    }
    if config.argv:
        body["Cmd"] = list(config.argv)
    if config.entrypoint is not None:
        body["Entrypoint"] = list(config.entrypoint) if config.entrypoint else [""]
    if config.workdir:
        body["WorkingDir"] = config.workdir
    if config.user:
        body["User"] = config.user
    return body


def config_files_tar(config: InstanceConfig) -> bytes | None:
    """The spec's `config_files` as a tar to unpack at `/` in the container (relative paths are relative to
    `workdir`, else to `/`), or None when there are none. Small files: built in memory."""
    if not config.config_files:
        return None
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, content, mode in config.config_files:
            full = posixpath.normpath(posixpath.join(config.workdir or "/", path))
            data = content.encode()
            info = tarfile.TarInfo(full.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def exit_status(state: Mapping[str, Any]) -> ExitStatus:
    """A container's `State` (from inspect) as an `ExitStatus`. Docker's init reports a program killed by
    signal N as exit code 128+N, which is read back as that signal, as a shell would."""
    code = state.get("ExitCode")
    if state.get("OOMKilled"):
        return ExitStatus(signal=int(_signal.SIGKILL), oom_killed=True)
    if not isinstance(code, int):
        return ExitStatus(note=f"exit status unknown (container state {state.get('Status', '?')})")
    if 128 < code <= 128 + 64:
        return ExitStatus(signal=code - 128)
    if code == 127 and state.get("Error"):
        return ExitStatus(code=code, note=str(state["Error"]))
    return ExitStatus(code=code)


class LogFrames:
    """Decodes Docker's multiplexed stream (8-byte header: stream 1|2, 3 zero bytes, big-endian length)
    into whole lines per stream; a line split across frames or reads is joined, a line longer than
    `max_line` is cut. Feed bytes as they come; `flush` returns what is left at the end."""

    HEADER = struct.Struct(">BxxxL")

    def __init__(self, max_line: int = 64 * 1024) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._partial: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        """(stream, line without newline) for every line completed by `data`."""
        self._buf += data
        out: list[tuple[str, bytes]] = []
        while len(self._buf) >= 8:
            kind, length = self.HEADER.unpack_from(self._buf)
            if len(self._buf) < 8 + length:
                break
            payload = bytes(self._buf[8 : 8 + length])
            del self._buf[: 8 + length]
            stream = "stderr" if kind == 2 else "stdout"
            part = self._partial[stream]
            part += payload
            *lines, rest = bytes(part).split(b"\n")
            out.extend((stream, line) for line in lines)
            if len(rest) > self.max_line:
                out.append((stream, rest))
                rest = b""
            part[:] = rest
        return out

    def flush(self) -> list[tuple[str, bytes]]:
        out = [(s, bytes(p)) for s, p in self._partial.items() if p]
        for p in self._partial.values():
            p.clear()
        return out
