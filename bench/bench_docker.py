"""Docker runtime figures, each beside a reference measured in the same run (`make bench-docker`):

1. start: `docker run -d -p 127.0.0.1:PORT:80 --init IMAGE` + an HTTP poll until 200 (reference) vs orch
   apply of an image service -> healthy endpoint published (what `service:NAME` routes to) and answering;
2. per-container collection cost with 20 containers: probe's collector (cgroup files, what `fsctl serve`
   runs every second) vs Docker's stats API (`GET /containers/ID/stats?stream=0&one-shot=1` per
   container): CPU of this process and of dockerd per 1 s tick, as % of one core.

Needs dockerd and the peers' image `infracore-test/busybox:1`. Bounded: 5 starts each, 20 containers, 20 ticks.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiodocker  # noqa: E402

from core.bus import EventBus  # noqa: E402
from core.ports import EndpointBoard, InstanceInfo  # noqa: E402
from core.schema import CORE_MIGRATIONS  # noqa: E402
from core.store import Store  # noqa: E402
from orch.config import OrchSettings  # noqa: E402
from orch.service import OrchService  # noqa: E402
from probe.collect import ServiceCollector  # noqa: E402

IMAGE = "infracore-test/busybox:1"
REPS = 5
CONTAINERS = 20
TICKS = 20
TAG = f"infracore-bench-{secrets.token_hex(3)}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def http_ok(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"GET / HTTP/1.0\r\n\r\n")
            line = await r.readline()
            w.close()
            if line.split(b" ")[1:2] == [b"200"]:
                return
        except (OSError, IndexError):
            pass
        await asyncio.sleep(0.01)
    raise RuntimeError(f"no 200 on {port}")


async def run(argv: list[str]) -> None:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if await proc.wait() != 0:
        raise RuntimeError(f"{argv[:3]} failed")


async def reference_starts() -> list[float]:
    """`docker run` (the CLI, as a person would) + an HTTP poll."""
    docker = shutil.which("docker")
    out = []
    for i in range(REPS):
        port = free_port()
        name = f"{TAG}-ref-{i}"
        t0 = time.perf_counter()
        await run([docker or "docker", "run", "-d", "--name", name, "--init", "-p", f"127.0.0.1:{port}:80", IMAGE])
        await http_ok(port, time.monotonic() + 60)
        out.append((time.perf_counter() - t0) * 1000)
        await run([docker or "docker", "rm", "-f", name])
    return out


async def orch_starts(tmp: Path) -> list[float]:
    store = Store(tmp / "state.db", synchronous="NORMAL")
    await store.open()
    await store.migrate("core", CORE_MIGRATIONS)
    bus = EventBus(store)
    await bus.start()
    board = EndpointBoard()
    changed = asyncio.Event()
    board.on_change(lambda _n, _e: changed.set())
    orch = OrchService(
        OrchSettings(docker_name_prefix=TAG, systemd=False, drain_before_stop_s=0),
        data_dir=tmp / "data",
        store=store,
        bus=bus,
        endpoints=board,
    )
    await orch.start()
    out = []
    try:
        for i in range(REPS + 1):
            name = f"site{i}"
            spec = (
                f"name: {name}\nimage: {IMAGE}\nports: [{{name: http, internal: 80}}]\n"
                "healthcheck: {http: 'http://127.0.0.1:${PORT}/', interval: 1s, timeout: 2s, retries: 2}\n"
            )
            t0 = time.perf_counter()
            await orch.apply(spec, f"{name}.yaml")
            while not board.get(name):
                changed.clear()
                await asyncio.wait_for(changed.wait(), 60)
            await http_ok(board.get(name)[0].port, time.monotonic() + 60)
            out.append((time.perf_counter() - t0) * 1000)
            await orch.delete(name)
    finally:
        await orch.stop(20)
        bus.close()
        await store.close()
    return out[1:]  # the first pays imports and the Docker client's first connection


def dockerd_cpu_s() -> float | None:
    try:
        pid = int(subprocess.run(["pidof", "dockerd"], capture_output=True, text=True).stdout.split()[0])
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


async def collection_cost() -> tuple[dict[str, float], dict[str, float]]:
    docker = aiodocker.Docker()
    ids = []
    try:
        for i in range(CONTAINERS):
            c = await docker.containers.run(config={"Image": IMAGE, "HostConfig": {"Init": True}}, name=f"{TAG}-c{i}")
            ids.append(c.id)
        infos = [
            InstanceInfo(service=f"c{i}", instance=f"c{i}-1", runtime="docker", state="running", container_id=cid)
            for i, cid in enumerate(ids)
        ]
        collector = ServiceCollector()
        collector.collect(infos, time.monotonic())  # first tick: finds the cgroup files

        async def measure(tick) -> dict[str, float]:  # type: ignore[no-untyped-def]
            cpu0, d0, w0 = time.process_time(), dockerd_cpu_s(), time.perf_counter()
            for _ in range(TICKS):
                await tick()
            n = TICKS
            ours = (time.process_time() - cpu0) / n
            d1 = dockerd_cpu_s()
            theirs = (d1 - d0) / n if d0 is not None and d1 is not None else float("nan")
            return {
                "ours_pct": ours * 100,
                "dockerd_pct": theirs * 100,
                "wall_ms": (time.perf_counter() - w0) / n * 1000,
            }

        async def probe_tick() -> None:
            collector.collect(infos, time.monotonic())
            await asyncio.sleep(0)

        async def stats_tick() -> None:
            await asyncio.gather(
                *(docker._query_json(f"containers/{cid}/stats", params={"stream": "0", "one-shot": "1"}) for cid in ids)
            )

        return await measure(probe_tick), await measure(stats_tick)
    finally:
        for cid in ids:
            await docker.containers.container(cid).delete(force=True)
        await docker.close()


def fmt(xs: list[float]) -> str:
    return f"median {statistics.median(xs):.0f} ms (min {min(xs):.0f}, max {max(xs):.0f}, n={len(xs)})"


async def main() -> None:
    print(f"load average {os.getloadavg()[0]:.1f}; image {IMAGE}; {os.cpu_count()} cores")
    ref = await reference_starts()
    print(f"reference: docker run + HTTP poll until 200: {fmt(ref)}")
    with tempfile.TemporaryDirectory() as tmp:
        ours = await orch_starts(Path(tmp))
    print(f"orch apply (image service) -> healthy endpoint published and answering: {fmt(ours)}")
    probe, stats = await collection_cost()
    print(
        f"per 1 s tick, {CONTAINERS} containers — probe's collector (cgroup files): {probe['ours_pct']:.2f} % of "
        f"a core here + {probe['dockerd_pct']:.2f} % in dockerd, {probe['wall_ms']:.1f} ms"
    )
    print(
        f"per 1 s tick, {CONTAINERS} containers — Docker stats API (one-shot, concurrent): "
        f"{stats['ours_pct']:.2f} % of a core here + {stats['dockerd_pct']:.2f} % in dockerd, "
        f"{stats['wall_ms']:.1f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
