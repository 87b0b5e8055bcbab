"""End to end: the access log through `fsctl serve`'s real wiring (gate → logbus in batches): every
request's line arrives, in order, and the batch still open when the server stops is written on the way out."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.gate.test_e2e import OriginThread


@pytest.fixture
def origin_thread():
    o = OriginThread()
    yield o
    o.stop()


def _paths(srv) -> list[str]:
    for attempt in range(3):  # a just-started server on a machine this loaded may take its time
        try:
            lines = srv.api("GET", "/api/logs?service=gate-access&limit=10000").json()["lines"]
            return [json.loads(x["text"])["path"] for x in lines]
        except httpx.TimeoutException:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def test_every_access_line_arrives_in_order_and_stop_writes_the_open_batch(
    server_factory, origin_thread, tmp_path: Path
):
    # A batch timer far away, so the last partial batch is written by the shutdown and nothing else.
    config = tmp_path / "config.yaml"
    config.write_text("logbus:\n  access_batch_s: 60\n  access_batch_lines: 100\n")
    srv = server_factory(extra_args=["--config", str(config)])
    r = srv.fsctl("route", "add", "--host", "app.test", "--upstream", origin_thread.addr)
    assert r.returncode == 0, r.stderr
    with httpx.Client(headers={"Host": "app.test"}) as c:
        for i in range(250):
            assert c.get(f"http://127.0.0.1:{srv.http_port}/echo/{i}").status_code == 200
    deadline = time.monotonic() + 20
    while len(paths := _paths(srv)) < 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert paths == [f"/echo/{i}" for i in range(200)]  # two full batches; 50 lines wait in the open one
    assert srv.stop() == 0
    again = server_factory(extra_args=["--config", str(config)])  # the same data dir
    assert _paths(again) == [f"/echo/{i}" for i in range(250)]


def test_a_burst_all_arrives_by_batch_size_and_at_stop(server_factory, tmp_path: Path):
    # No route needed: the gate's own 404s are logged too. A burst of 1,000 requests on 20 connections at
    # once: the full batches (of 64) arrive while the timer is a minute away, the rest when the server stops.
    config = tmp_path / "config.yaml"
    config.write_text("logbus:\n  access_batch_s: 60\n  access_batch_lines: 64\n")
    srv = server_factory(extra_args=["--config", str(config)])
    url = f"http://127.0.0.1:{srv.http_port}/burst/"

    def client(k: int) -> None:
        with httpx.Client(headers={"Host": "nowhere.test"}, timeout=30) as c:
            for i in range(50):
                assert c.get(f"{url}{k}-{i}").status_code == 404

    with ThreadPoolExecutor(20) as pool:
        list(pool.map(client, range(20)))
    deadline = time.monotonic() + 20
    while len(paths := _paths(srv)) < 960 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(paths) == 960  # 15 full batches; 40 lines wait in the open one
    assert srv.stop() == 0
    again = server_factory(extra_args=["--config", str(config)])
    assert sorted(_paths(again)) == sorted(f"/burst/{k}-{i}" for k in range(20) for i in range(50))
