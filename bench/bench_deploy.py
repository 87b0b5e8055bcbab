"""Rolling deploys under load (`make bench-deploy`): through a real `fsctl serve` and its gate, an open-loop
client at a steady rate (default 1,000 requests/s, keep-alive) measures failed requests and the latency
p50/p99 in a window with no deploy and, in the same run, in an equal window during which a rolling deploy
of a new release runs (new instance beside the old, health-gated switch, 2 s drain). Goal: 0 failed,
p99 within 2x of the window without a deploy. Bounded: 2 x WINDOW_S seconds of traffic per round."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._product import ProductServe  # noqa: E402
from tests.conftest import kill_left_instances  # noqa: E402
from tests.orch._load import Load  # noqa: E402

RATE = float(os.environ.get("BENCH_DEPLOY_RATE", "1000"))
WINDOW_S = 8.0
ROUNDS = 3


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-deploy-"))
    work = tmp / "work"
    work.mkdir()
    shutil.copy(ROOT / "tests/orch/deployapp/app.py", work / "app.py")
    srv = ProductServe(tmp, None, env={"INFRACORE_PASSWORD_HASH_ROUNDS": "4", "INFRACORE_LOG_LEVEL": "warning"})
    api, data, http_port, h = srv.url, srv.data, srv.http_port, srv.headers
    try:
        spec = (
            f'name: app\ncmd: ["{sys.executable}", app.py, "${{PORT}}"]\nworkdir: {work}\n'
            'env: { VERSION: "${version}" }\nports: [{ name: http }]\n'
            'healthcheck: { http: "http://127.0.0.1:${PORT}/healthz", interval: 0.5s, timeout: 2s }\n'
            "deploy: { drain: 2s }\n"
        )
        httpx.post(f"{api}/api/services", headers=h, json={"yaml": spec, "filename": "app.yaml"}).raise_for_status()
        httpx.post(
            f"{api}/api/routes", headers=h, json={"host": "app.localhost", "upstreams": ["service:app"]}
        ).raise_for_status()
        url = f"http://127.0.0.1:{http_port}/"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url, headers={"Host": "app.localhost"}).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("app not reachable through the gate")
            time.sleep(0.1)
        print(
            f"rolling deploy under {RATE:g} req/s through the gate ({WINDOW_S:g} s windows, load avg "
            f"{os.getloadavg()[0]:.2f})"
        )
        print("round  window     sent  failed  achieved/s  p50 ms  p99 ms  deploy s")
        for rnd in range(1, ROUNDS + 1):
            load = Load(url, "app.localhost", rate=RATE, workers=32, max_seconds=3 * WINDOW_S).start()
            time.sleep(1.0)  # warm-up, not measured
            a0 = time.monotonic()
            time.sleep(WINDOW_S)
            b0 = time.monotonic()
            t = time.monotonic()
            r = httpx.post(f"{api}/api/services/app/deploy", headers=h, json={"version": f"v{rnd + 1}"})
            r.raise_for_status()
            dep = r.json()["deployment_id"]
            while True:
                d = httpx.get(f"{api}/api/deployments/{dep}", headers=h).json()
                if d["status"] not in ("pending", "running"):
                    break
                time.sleep(0.1)
            took = time.monotonic() - t
            time.sleep(max(0.0, b0 + WINDOW_S - time.monotonic()))
            b1 = time.monotonic()
            load.stop()
            fails_before = sum(load.failures.values())
            for name, lo, hi in (("no deploy", a0, b0), ("deploy", b0, b1)):
                lat = [x for at, x in load.latencies if lo <= at < hi]
                print(
                    f"{rnd:>5}  {name:<9} {len(lat):>6}  {fails_before if name == 'deploy' else 0:>6}  "
                    f"{len(lat) / (hi - lo):>10.0f}  {pct(lat, 0.5):>6.2f}  {pct(lat, 0.99):>6.2f}  "
                    + (f"{took:>7.2f} ({d['status']})" if name == "deploy" else "")
                )
            base = [x for at, x in load.latencies if a0 <= at < b0]
            during = [x for at, x in load.latencies if b0 <= at < b1]
            print(
                f"       p99 ratio deploy / no deploy: {pct(during, 0.99) / pct(base, 0.99):.2f}; "
                f"failures: {dict(load.failures) or 0}"
            )
            time.sleep(1.0)
    finally:
        srv.stop()
        kill_left_instances(data)  # the app's instances outlive the platform (orch's default)
        print(f"artifacts (logs) in {tmp}" if srv.proc.returncode else "")
        if not srv.proc.returncode:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
