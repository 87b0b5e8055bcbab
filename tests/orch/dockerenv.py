"""The Docker side of the orch tests: is dockerd reachable (the reason when not, for the skip), the test
image (the peers' `infracore-test/busybox:1` with every busybox applet linked, made once by a commit,
since no registry is reachable), and removal of what a test made, found by its owner label."""

from __future__ import annotations

import functools
import http.client
import json
import os
import socket
from typing import Any
from urllib.parse import quote

BASE_IMAGE = "infracore-test/busybox:1"
FULL_IMAGE = "infracore-test/busybox-full:1"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def _socket_path() -> str | None:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    return host[len("unix://") :] if host.startswith("unix://") else None


def api(method: str, path: str, body: Any = None, timeout: float = 60) -> tuple[int, Any]:
    """One synchronous Engine API call (for session setup, outside any event loop)."""
    sock = _socket_path()
    assert sock is not None
    conn = _UnixConnection(sock, timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(raw) if raw else None
    except ValueError:
        return resp.status, raw.decode(errors="replace")


@functools.cache
def docker_problem() -> str | None:
    """Why the docker tests cannot run here (no dockerd, no test image), or None; also makes FULL_IMAGE."""
    sock = _socket_path()
    if sock is None:
        return f"DOCKER_HOST={os.environ['DOCKER_HOST']} is not a unix socket (the tests need a local dockerd)"
    try:
        status, _ = api("GET", "/_ping", timeout=5)
    except OSError as e:
        return f"no dockerd at unix://{sock} ({e.strerror or e}); start it with ../shared/peers/peers.sh start"
    if status != 200:
        return f"dockerd at unix://{sock} answers /_ping with {status}"
    if api("GET", f"/images/{quote(FULL_IMAGE, safe='')}/json")[0] == 200:
        return None
    if api("GET", f"/images/{quote(BASE_IMAGE, safe='')}/json")[0] != 200:
        return f"no image {BASE_IMAGE} (peers.sh start builds it)"
    status, made = api(
        "POST",
        "/containers/create",
        {"Image": BASE_IMAGE, "Cmd": ["/bin/busybox", "sh", "-c", "/bin/busybox --install -s /bin; true"]},
    )
    if status != 201:
        return f"cannot make the test image: {made}"
    cid = made["Id"]
    try:
        api("POST", f"/containers/{cid}/start")
        api("POST", f"/containers/{cid}/wait")
        status, out = api("POST", f"/commit?container={cid}&repo={quote(FULL_IMAGE.split(':')[0], safe='')}&tag=1")
        if status != 201:
            return f"cannot commit the test image: {out}"
    finally:
        api("DELETE", f"/containers/{cid}?force=1")
    return None


async def remove_owned(runtime: Any, owner: str) -> None:
    """Remove every container and volume labelled with `owner` (what one test made), through `runtime`."""
    from aiodocker.exceptions import DockerError

    from orch.containers import LABEL_OWNER

    docker = runtime.docker
    for c in await docker.containers.list(all=True, filters={"label": [f"{LABEL_OWNER}={owner}"]}):
        try:
            await c.delete(force=True)
        except DockerError:
            pass
    found = await docker.volumes.list(filters={"label": [f"{LABEL_OWNER}={owner}"]})
    for v in found.get("Volumes") or []:
        try:
            await (await docker.volumes.get(v["Name"])).delete()
        except DockerError:
            pass


SYSTEMD_IMAGE = "infracore-test/systemd:1"
_systemd: dict[str, Any] = {}


def systemd_container() -> tuple[str | None, str]:
    """(name of a running container whose PID 1 is systemd, or None; the reason when None). Started once per
    test session from SYSTEMD_IMAGE (`make systemd-image` builds it), removed at exit."""
    if "name" in _systemd or "why" in _systemd:
        return _systemd.get("name"), _systemd.get("why", "")
    why = docker_problem()
    if why is None and api("GET", f"/images/{quote(SYSTEMD_IMAGE, safe='')}/json")[0] != 200:
        why = f"no image {SYSTEMD_IMAGE}: build it with `make systemd-image` (debootstrap, ~2 min)"
    if why is not None:
        _systemd["why"] = why
        return None, why
    name = f"infracore-systemd-{os.getpid()}"
    # As peers/README.md describes: systemd as PID 1 needs SYS_ADMIN, no seccomp filter, the host's cgroup
    # tree (cgroupns=host), and tmpfs on /run. Nothing of the host's /tmp is mounted: systemd-tmpfiles
    # cleans /tmp at boot.
    status, made = api(
        "POST",
        f"/containers/create?name={name}",
        {
            "Image": SYSTEMD_IMAGE,
            "Cmd": ["/lib/systemd/systemd"],
            "StopSignal": "SIGRTMIN+3",
            "Labels": {"infracore.test": "systemd"},
            "HostConfig": {
                "CapAdd": ["SYS_ADMIN"],
                "SecurityOpt": ["seccomp=unconfined"],
                "CgroupnsMode": "host",
                "Binds": ["/sys/fs/cgroup:/sys/fs/cgroup:rw"],
                "Tmpfs": {"/run": "", "/run/lock": ""},
            },
        },
    )
    if status != 201:
        _systemd["why"] = f"cannot create the systemd container: {made}"
        return None, _systemd["why"]
    api("POST", f"/containers/{made['Id']}/start")
    import atexit
    import time

    atexit.register(lambda: api("DELETE", f"/containers/{made['Id']}?force=1"))
    deadline = time.monotonic() + 60
    state = ""
    while time.monotonic() < deadline:  # booted: is-system-running says running (or degraded)
        _, state = in_container(name, ["systemctl", "is-system-running"])
        if state.strip() in ("running", "degraded"):
            _systemd["name"], _systemd["id"] = name, made["Id"]
            return name, ""
        time.sleep(0.2)
    _systemd["why"] = f"systemd in {name} did not finish booting within 60 s (state {state.strip()!r})"
    return None, _systemd["why"]


def in_container(name: str, argv: list[str]) -> tuple[int, str]:
    """Run `argv` in container `name` and wait: (exit code, output)."""
    import time

    status, ex = api("POST", f"/containers/{name}/exec", {"Cmd": argv, "AttachStdout": True, "AttachStderr": True})
    assert status == 201, ex
    _, out = api("POST", f"/exec/{ex['Id']}/start", {"Detach": False, "Tty": True})
    for _ in range(200):
        info = api("GET", f"/exec/{ex['Id']}/json")[1]
        if not info["Running"]:
            return info["ExitCode"], out if isinstance(out, str) else ""
        time.sleep(0.05)
    return -1, "timed out"


def docker_oom_unreliable() -> str | None:
    """Why dockerd's OOMKilled cannot be trusted now: measured here, while a container runs systemd as PID 1
    on the host's cgroup v1 tree (cgroupns=host, as the systemd tests need), dockerd reports OOM kills
    as plain exit 137 with OOMKilled false, even for `docker run -m`."""
    if _systemd.get("name"):
        return "a systemd test container shares the host's cgroup v1 tree: dockerd misses OOM events meanwhile"
    return None
