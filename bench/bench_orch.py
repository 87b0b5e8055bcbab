"""Orch figures, each beside a reference measured in the same run (`make bench-orch`):

1. start: `python3 -m http.server` spawned directly until it accepts (reference) vs orch apply → healthy
   endpoint published (includes the first health probe);
2. crash recovery: kill -9 → a new healthy endpoint (back-off + spawn + probe) vs the direct spawn;
3. health-driven restart through the gate (`fsctl serve`, `service:hello` route, one replica): how long
   clients see 503 + Retry-After, and how many requests succeed/fail, while a closed-loop client runs.

Bounded: 5 repetitions each for 1-2, 3 restarts for 3; all on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._product import ProductServe  # noqa: E402
from core.bus import EventBus  # noqa: E402
from core.ports import EndpointBoard  # noqa: E402
from core.schema import CORE_MIGRATIONS  # noqa: E402
from core.store import Store  # noqa: E402
from orch.config import OrchSettings  # noqa: E402
from orch.service import OrchService  # noqa: E402
from tests.conftest import kill_left_instances  # noqa: E402

REPS = 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_accepting(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.002)
    raise RuntimeError("not accepting")


def direct_spawn_ms() -> float:
    port = free_port()
    t0 = time.perf_counter()
    p = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_accepting(port)
    dt = (time.perf_counter() - t0) * 1000
    p.kill()
    p.wait()
    return dt


SPEC = f"""\
name: web
cmd: ["{sys.executable}", "-m", "http.server", "--bind", "127.0.0.1", "${{PORT}}"]
ports: [{{ name: http }}]
healthcheck: {{ http: "http://127.0.0.1:${{PORT}}/", interval: 1s, timeout: 2s, retries: 2 }}
restart_policy: always
"""


async def orch_figures(tmp: Path) -> tuple[list[float], list[float]]:
    store = Store(tmp / "state.db", synchronous="NORMAL")
    await store.open()
    await store.migrate("core", CORE_MIGRATIONS)
    bus = EventBus(store)
    await bus.start()
    board = EndpointBoard()
    changed = asyncio.Event()
    board.on_change(lambda name, eps: changed.set())
    orch = OrchService(
        OrchSettings(backoff_initial_s=0.1, crashloop_failures=100),
        data_dir=tmp / "data",
        store=store,
        bus=bus,
        endpoints=board,
    )
    await orch.start()

    async def until_endpoint(other_than: int | None = None) -> int:
        while True:
            eps = board.get("web")
            if eps and eps[0].port != other_than:
                return eps[0].port
            changed.clear()
            await asyncio.wait_for(changed.wait(), 30)

    starts, recoveries = [], []
    for i in range(REPS):
        t0 = time.perf_counter()
        await orch.apply(SPEC.replace("restart_policy", f"env: {{N: '{i}'}}\nrestart_policy"), "web.yaml")
        if i == 0:
            await until_endpoint()
        else:
            # A new version replaces the instance: wait for the replacement's endpoint.
            while not (board.get("web") and orch.describe("web")["instances"][0]["version"] == i + 1):
                changed.clear()
                await asyncio.wait_for(changed.wait(), 30)
        starts.append((time.perf_counter() - t0) * 1000)
    for _ in range(REPS):
        pid = orch.describe("web")["instances"][0]["pid"]
        old = board.get("web")[0].port
        t0 = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        while True:
            d = orch.describe("web")
            if d["status"] == "running" and d["instances"][0]["pid"] not in (None, pid) and board.get("web"):
                break
            changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), 0.05)
        recoveries.append((time.perf_counter() - t0) * 1000)
        del old
    await orch.stop(10)
    bus.close()
    await store.close()
    return starts[1:], recoveries  # the first start pays imports and cgroup detection


def gate_gap(tmp: Path) -> list[dict[str, object]] | None:
    import httpx

    srv = ProductServe(tmp, None, env={"INFRACORE_PASSWORD_HASH_ROUNDS": "4", "INFRACORE_LOG_LEVEL": "warning"})
    api, data, http_port, h = srv.url, srv.data, srv.http_port, srv.headers
    try:
        if httpx.get(f"{api}/api/routes", headers=h).status_code == 404:
            return None
        flag = tmp / "unhealthy"
        spec = (ROOT / "examples/hello/hello.yaml").read_text().replace("${SPEC_DIR}", str(ROOT / "examples/hello"))
        spec = spec.replace("interval: 5s", "interval: 0.5s").replace("start_period: 10s", "start_period: 5s")
        spec = spec.replace("retries: 3", "retries: 2").replace("on-failure:3", "always")
        spec = spec.replace("env: { GREETING: hi }", f"env: {{ GREETING: hi, UNHEALTHY_FILE: '{flag}' }}")
        r = httpx.post(f"{api}/api/services", headers=h, json={"yaml": spec, "filename": "hello.yaml"})
        r.raise_for_status()
        r = httpx.post(f"{api}/api/routes", headers=h, json={"host": "hello.localhost", "upstreams": ["service:hello"]})
        r.raise_for_status()
        url = f"http://127.0.0.1:{http_port}/"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url, headers={"Host": "hello.localhost"}).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    "hello not reachable through the gate: "
                    + httpx.get(f"{api}/api/services/hello", headers=h).text[:3000]
                )
            time.sleep(0.1)
        results = []
        for _ in range(3):
            counts: Counter[str] = Counter()
            gap: list[float] = []
            stop = threading.Event()

            def hammer(counts: Counter[str] = counts, gap: list[float] = gap, stop: threading.Event = stop) -> None:
                first = None
                with httpx.Client(headers={"Host": "hello.localhost"}, timeout=5) as c:
                    while not stop.is_set():
                        try:
                            resp = c.get(url)
                            key = f"{resp.status_code}" + ("+Retry-After" if "retry-after" in resp.headers else "")
                        except httpx.HTTPError as e:
                            key = type(e).__name__
                        counts[key] += 1
                        if key != "200" and first is None:
                            first = time.monotonic()
                        elif key == "200" and first is not None:
                            gap.append(time.monotonic() - first)
                            first = None

            restarts = httpx.get(f"{api}/api/services/hello", headers=h).json()["restarts"]
            t = threading.Thread(target=hammer)
            t.start()
            time.sleep(0.5)
            flag.write_text("1")
            while httpx.get(f"{api}/api/services/hello", headers=h).json()["restarts"] == restarts:
                time.sleep(0.05)
            flag.unlink()
            deadline = time.monotonic() + 30
            while not gap and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)
            stop.set()
            t.join()
            results.append({"counts": dict(counts), "gap_s": round(sum(gap), 3)})
            time.sleep(1.0)  # let the stable-run window reset nothing: back-off grows across runs (reported)
        httpx.delete(f"{api}/api/services/hello", headers=h)
        return results
    finally:
        srv.stop()
        kill_left_instances(data)  # services outlive the platform (orch's default): none may stay behind


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ref = [direct_spawn_ms() for _ in range(REPS)]
        starts, recoveries = asyncio.run(orch_figures(tmp))
        print(
            f"reference: direct spawn of http.server until it accepts: median {statistics.median(ref):.0f} ms "
            f"(min {min(ref):.0f}, max {max(ref):.0f}, n={len(ref)})"
        )
        print(
            f"orch apply (new version) -> healthy endpoint published: median {statistics.median(starts):.0f} ms "
            f"(min {min(starts):.0f}, max {max(starts):.0f}, n={len(starts)})"
        )
        print(
            f"orch kill -9 -> restarted and healthy: median {statistics.median(recoveries):.0f} ms "
            f"(min {min(recoveries):.0f}, max {max(recoveries):.0f}, n={len(recoveries)}; back-off initial 0.1 s)"
        )
        gaps = gate_gap(tmp)
        if gaps is None:
            print("gate not wired: health-restart gap not measured")
        else:
            for i, g in enumerate(gaps, 1):
                print(
                    f"health-driven restart #{i} through the gate (1 replica): clients saw {g['counts']} "
                    f"— gap {g['gap_s']} s"
                )


if __name__ == "__main__":
    main()
