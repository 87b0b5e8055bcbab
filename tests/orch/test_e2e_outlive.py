"""Native services outlive a real `fsctl serve`: stopped (SIGTERM) or killed (SIGKILL), the platform leaves
them running, the next start adopts them (same pid, health checks resume), and what they wrote meanwhile
reaches logbus, in order; a chatty child is never blocked by the platform being down. With
`orch: {stop_services_on_exit: true}` they stop with the platform."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.orch.conftest import alive
from tests.orch.test_e2e_orch import _status, _until

TICKER = """
import http.server, os, sys, threading, time

class Quiet(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a):
        pass

srv = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Quiet)
threading.Thread(target=srv.serve_forever, daemon=True).start()
trigger, done, i = sys.argv[2], sys.argv[3], 0
while True:
    os.write(1, b"o%06d\\n" % i)
    os.write(2, b"e%06d\\n" % i)
    i += 1
    if trigger != "-" and os.path.exists(trigger) and not os.path.exists(done):
        for j in range(50_000):  # 5 MB at once: far past what a pipe holds
            os.write(1, b"c%06d %s\\n" % (j, b"z" * 91))
        open(done, "w").close()
    time.sleep(0.02)
"""


def _spec(tmp_path: Path, name: str, trigger: str = "-", done: str = "-") -> Path:
    prog = tmp_path / "ticker.py"
    prog.write_text(TICKER)
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(
        f"name: {name}\n"
        f'cmd: ["{sys.executable}", "{prog}", "${{PORT}}", "{trigger}", "{done}"]\n'
        "ports: [{ name: http, internal: auto }]\n"
        'healthcheck: { http: "http://127.0.0.1:${PORT}/", interval: 0.3s, timeout: 2s, retries: 2 }\n'
        "stop_timeout: 2s\n"
    )
    return spec


def _log_lines(srv: Any, service: str, stream: str) -> list[str]:
    out: list[str] = []
    cursor = None
    while True:
        params = {"service": service, "stream": stream, "limit": "10000", **({"cursor": cursor} if cursor else {})}
        r = srv.api("GET", "/api/logs", params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        out += [x["text"] for x in page["lines"]]
        cursor = page.get("next_cursor")
        if not cursor or not page["lines"]:
            return out


def _seq(lines: list[str], prefix: str) -> list[int]:
    return [int(x[1:7]) for x in lines if x.startswith(prefix)]


def _running(srv: Any, name: str) -> int | None:
    d = _status(srv, name)
    insts = [i for i in d["instances"] if i["phase"] == "running" and i["healthy"]]
    return insts[0]["pid"] if d["status"] == "running" and insts else None


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_the_platform_goes_the_service_stays_and_its_output_arrives(
    server_factory: Any, tmp_path: Path, how: signal.Signals
) -> None:
    srv = server_factory("data")
    trigger, done = tmp_path / "burst", tmp_path / "burst-done"
    r = srv.fsctl("service", "apply", "-f", str(_spec(tmp_path, "ticker", str(trigger), str(done))))
    assert r.returncode == 0, r.stderr
    pid = _until(lambda: _running(srv, "ticker"), what="ticker running and healthy")
    _until(lambda: len(_log_lines(srv, "ticker", "stdout")) >= 10, what="output in logbus")
    if how == signal.SIGTERM:
        assert srv.stop() == 0
    else:
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(10)
    assert alive(pid), "the native service outlives the platform"
    trigger.touch()  # 5 MB while nobody reads: the child must not block
    _until(done.exists, timeout=30, what="the chatty child finished its burst while the platform was down")
    time.sleep(0.5)
    again = server_factory("data", console_port=srv.console_port)
    try:
        _until(lambda: _running(again, "ticker"), what="ticker adopted")
        d = _status(again, "ticker")
        inst = d["instances"][0]
        assert [i["pid"] for i in d["instances"]] == [pid] and inst["adopted"] and d["restarts"] == 0
        _until(lambda: len(_status(again, "ticker")["instances"][0]["health"]) >= 2, what="health checks resume")
        assert all(h["ok"] for h in _status(again, "ticker")["instances"][0]["health"])
        assert alive(pid)

        def caught_up() -> list[str] | None:
            lines = _log_lines(again, "ticker", "stdout")
            return lines if len(_seq(lines, "c")) == 50_000 and len(_seq(lines, "o")) > 200 else None

        lines = _until(caught_up, timeout=60, what="output written while the platform was down in logbus")
        errs = _seq(_log_lines(again, "ticker", "stderr"), "e")
        ticks = _seq(lines, "o")
        if how == signal.SIGTERM:  # a clean stop: exactly once, in order
            assert ticks == list(range(len(ticks))), "stdout: no gap, no duplicate"
            assert errs == list(range(len(errs))) and len(errs) > 200, "stderr: no gap, no duplicate"
            assert _seq(lines, "c") == list(range(50_000))
        else:  # a crash may replay the last batch the platform had not recorded as stored; nothing is lost
            assert sorted(set(ticks)) == list(range(len(set(ticks)))), "stdout: no gap"
            assert sorted(set(errs)) == list(range(len(set(errs)))), "stderr: no gap"
            assert len(ticks) - len(set(ticks)) <= 100
            assert sorted(set(_seq(lines, "c"))) == list(range(50_000))
        assert not any(x.startswith("o") for x in _log_lines(again, "ticker", "stderr")), "streams stay apart"
    finally:
        assert again.stop() == 0
    assert alive(pid), "left running again (the test's server_factory ends it)"


def test_stop_services_on_exit_stops_them_with_the_platform(server_factory: Any, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("orch:\n  stop_services_on_exit: true\n")
    srv = server_factory("data", env={"INFRACORE_CONFIG_FILE": str(config)})
    r = srv.fsctl("service", "apply", "-f", str(_spec(tmp_path, "ticker")))
    assert r.returncode == 0, r.stderr
    pid = _until(lambda: _running(srv, "ticker"), what="ticker running")
    assert srv.stop() == 0
    assert not alive(pid), "stop_services_on_exit: true stops native services with the platform"
