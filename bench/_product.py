"""`fsctl serve` started as a user starts it, for the gate benchmarks' product runs.

A fresh temp data dir and no config file; only the ports (`--http-port`/`--https-port`/`--console`, all
non-root) and `INFRACORE_EDGE_HOST=127.0.0.1` (loopback only) differ from the defaults. The route is added
through the console API after logging in with the initial admin password the first start wrote. Every
thread of the process is pinned to the proxy core: it starts under `taskset`, so threads started later
inherit the mask, and `taskset -a -p` re-pins all threads once it is up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ProductServe:
    """One `fsctl serve` under `tmp/name`; `stop()` sends SIGTERM (and waits for its shutdown)."""

    def __init__(
        self, tmp: Path, cpu: str | None, name: str = "serve", root: Path = ROOT, env: dict[str, str] | None = None
    ) -> None:
        """`cpu`: the core(s) to pin every thread to (None: not pinned); `root`: the source tree to run
        (another checkout, to compare two versions in one run); `env`: extra variables (e.g. fewer bcrypt
        rounds, a quieter log)."""
        import httpx

        self.dir = tmp / name
        self.dir.mkdir()
        self.cpu = cpu
        self.console_port, self.http_port, self.https_port = _free_port(), _free_port(), _free_port()
        extra = env
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("INFRACORE_", "FSCTL_")) or k in ("INFRACORE_PURE", "INFRACORE_REQUIRE_ACCEL")
        }
        env |= {"INFRACORE_EDGE_HOST": "127.0.0.1", "XDG_CONFIG_HOME": str(self.dir / "xdg"), **(extra or {})}
        self.log = self.dir / "serve.log"
        self.data = self.dir / "data"
        pin = ["taskset", "-c", cpu] if cpu is not None else []
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    *pin,
                    sys.executable,
                    "-m",
                    "fsctl",
                    "serve",
                    "--data-dir",
                    str(self.dir / "data"),
                    "--console",
                    f"127.0.0.1:{self.console_port}",
                    "--http-port",
                    str(self.http_port),
                    "--https-port",
                    str(self.https_port),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=root,
            )
        self.pid = self.proc.pid
        self.url = f"http://127.0.0.1:{self.console_port}"
        deadline = time.monotonic() + 90
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"fsctl serve exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"fsctl serve not ready in 90 s:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)
        try:
            self._login()
        except BaseException:
            self.stop()
            raise

    def _login(self) -> None:
        import httpx

        password = (self.dir / "data" / "initial-admin-password").read_text().strip()
        r = httpx.post(f"{self.url}/api/auth/login", json={"username": "admin", "password": password}, timeout=60)
        r.raise_for_status()
        self.token = r.json()["token"]
        self.headers = {"Authorization": f"Bearer {self.token}"}
        self.pin()

    def pin(self) -> int:
        """Pin every thread the process has now to the proxy core; how many threads it has."""
        if self.cpu is None:
            return len(os.listdir(f"/proc/{self.pid}/task"))
        subprocess.run(["taskset", "-a", "-p", "-c", self.cpu, str(self.pid)], check=True, stdout=subprocess.DEVNULL)
        return len(os.listdir(f"/proc/{self.pid}/task"))

    def add_route(self, spec: dict[str, Any]) -> None:
        import httpx

        r = httpx.post(
            f"{self.url}/api/routes", json=spec, headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )
        if r.status_code >= 300:
            raise SystemExit(f"adding route {spec['host']} failed: {r.status_code} {r.text}")
        time.sleep(0.5)  # the gate installs the new table on its next tick
        self.pin()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
