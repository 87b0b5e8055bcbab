"""The loop's longest stall while an attack runs (issue 13): the latency of requests to an unrelated
route (through the gate) and to the console's /api/health, idle and during each attack, same run.

Attacks, each `--seconds` long from another process: (1) 8 clients sending wrong Basic-auth passwords
to a route whose hash has bcrypt's default cost (12) — with the per-address throttle at its default,
and raised so that bcrypt runs for every attempt; (2) 8 clients posting a 7x9 YAML alias bomb to
`POST /api/services`.

    .venv/bin/python bench/bench_loop_stalls.py [--root TREE] [--seconds 10]

`--root` runs `fsctl serve` from another source tree (e.g. `git archive` of an older commit) with this
tree's attack clients, for before/after figures. Bounded: every attack ends after `--seconds`.
"""

from __future__ import annotations

import argparse
import base64
import shutil
import sys
import tempfile
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import bcrypt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests._attack import finish_hammer, request, start_hammer  # noqa: E402
from tests.conftest import start_server  # noqa: E402
from tests.e2e.test_loop_stalls import _Ok, alias_bomb  # noqa: E402


def probe(srv, stop: threading.Event | None, n: int | None, timeout_s: float) -> tuple[list[float], list[float]]:
    console: list[float] = []
    gate: list[float] = []

    def timed(port: int, host: str, path: str) -> float:
        t0 = time.perf_counter()
        try:
            return request(port, host, path, timeout_s=timeout_s)[2]
        except OSError:  # no answer within timeout_s: counted as that long (a lower bound)
            return time.perf_counter() - t0

    for _ in range(n or 10_000):
        if stop is not None and stop.is_set():
            break
        console.append(timed(srv.console_port, f"127.0.0.1:{srv.console_port}", "/api/health"))
        gate.append(timed(srv.http_port, "open", "/"))
        time.sleep(0.04)
    return console, gate


def fmt(xs: list[float]) -> str:
    xs = sorted(xs)
    return f"p50 {xs[len(xs) // 2] * 1000:7.1f} ms  max {xs[-1] * 1000:8.1f} ms  (n={len(xs)})"


def attack(srv, label: str, seconds: float, **hammer) -> None:
    proc = start_hammer(seconds=seconds, **hammer)
    done = threading.Event()
    threading.Thread(target=lambda: (proc.wait(), done.set()), daemon=True).start()
    time.sleep(0.3)
    console, gate = probe(srv, done, None, timeout_s=30)
    counts = finish_hammer(proc, timeout_s=seconds * 30)
    print(f"{label}\n  attack {counts}\n  console {fmt(console)}\n  gate    {fmt(gate)}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=ROOT, help="source tree to run fsctl serve from")
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    tmp = Path(tempfile.mkdtemp(prefix="bench-stalls-"))
    has_throttle = "basic_auth_failures" in (args.root / "gate" / "config.py").read_text()
    env = {"PYTHONPATH": str(args.root)}
    hashed = bcrypt.hashpw(b"right", bcrypt.gensalt(12)).decode()
    wrong = {"Authorization": "Basic " + base64.b64encode(b"ann:wrong").decode()}
    import tests.conftest as tc

    tc.ROOT = args.root  # the server runs from --root (cwd and PYTHONPATH)
    configs = [("default settings", None)]
    if has_throttle:
        configs.append(("throttle raised (bcrypt on every attempt)", "gate:\n  basic_auth_failures: 10000\n"))
    try:
        for name, config in configs:
            extra = []
            if config:
                (tmp / "c.yaml").write_text(config)
                extra = ["--config", str(tmp / "c.yaml")]
            srv = start_server(tmp / f"data-{len(extra)}", extra_args=extra, env=env)
            try:
                for spec in (
                    {"host": "open", "upstreams": [f"127.0.0.1:{httpd.server_address[1]}"]},
                    {
                        "host": "locked",
                        "upstreams": [f"127.0.0.1:{httpd.server_address[1]}"],
                        "policies": {"basic_auth": [{"username": "ann", "bcrypt_hash": hashed}]},
                    },
                ):
                    assert srv.api("POST", "/api/routes", json=spec).status_code in (200, 201)
                console, gate = probe(srv, None, 100, timeout_s=10)
                print(f"== {args.root} — {name}\nidle\n  console {fmt(console)}\n  gate    {fmt(gate)}", flush=True)
                attack(
                    srv,
                    "basic-auth flood: 8 clients, wrong passwords (bcrypt cost 12)",
                    args.seconds,
                    port=srv.http_port,
                    host="locked",
                    path="/",
                    headers=wrong,
                    threads=8,
                )
                if config is None:
                    token = srv.login()
                    attack(
                        srv,
                        "YAML alias bomb flood: 8 clients POST /api/services (7 levels x 9 aliases)",
                        args.seconds,
                        port=srv.console_port,
                        host=f"127.0.0.1:{srv.console_port}",
                        path="/api/services",
                        method="POST",
                        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/yaml"},
                        body=alias_bomb(),
                        threads=8 if has_throttle else 1,
                    )  # before: one bomb is ~100 s
            finally:
                srv.proc.kill()
                srv.proc.wait()
    finally:
        httpd.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
