"""The SSE event stream: ids, heartbeats, and resume with Last-Event-ID without gaps or duplicates."""

import json
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx

from tests.conftest import ROOT


def sse_events(lines: Iterator[str]) -> Iterator[dict]:
    event: dict = {}
    for line in lines:
        if line == "":
            if "data" in event:
                yield event
            event = {}
        elif line.startswith(":"):
            event.setdefault("comments", []).append(line)
            if "ping" in line:
                yield {"ping": True}
        else:
            name, _, value = line.partition(": ")
            event[name] = value


def read_events(server, n: int, *, last_event_id: int | None = None, timeout: float = 10) -> list[dict]:
    headers = {"Authorization": f"Bearer {server.login()}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    out = []
    with httpx.stream("GET", f"{server.url}/api/events", headers=headers, timeout=timeout) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for ev in sse_events(r.iter_lines()):
            if ev.get("ping"):
                continue
            out.append({"id": int(ev["id"]), "type": ev["event"], **json.loads(ev["data"])})
            if len(out) == n:
                break
    return out


def test_resume_with_last_event_id_gets_exactly_the_missed_events(server):
    server.api("POST", "/api/tokens", json={"name": "t0"})
    first = read_events(server, 2, last_event_id=0)  # user.created (first run) and token.created
    assert [e["type"] for e in first] == ["user.created", "token.created"]
    last_seen = first[-1]["id"]
    # While disconnected: five more events.
    for i in range(1, 6):
        assert server.api("POST", "/api/tokens", json={"name": f"t{i}"}).status_code == 200
    missed = read_events(server, 5, last_event_id=last_seen)
    assert [e["data"]["name"] for e in missed] == [f"t{i}" for i in range(1, 6)]
    ids = [e["id"] for e in missed]
    assert ids == sorted(ids) and ids[0] > last_seen and len(set(ids)) == 5


def test_live_events_and_heartbeats(server_factory):
    srv = server_factory(env={"INFRACORE_SSE_HEARTBEAT_S": "0.3"})
    headers = {"Authorization": f"Bearer {srv.login()}"}
    pings, got = 0, []
    with httpx.stream("GET", f"{srv.url}/api/events", headers=headers, timeout=10) as r:
        lines = r.iter_lines()
        t0 = time.monotonic()
        for ev in sse_events(lines):
            if ev.get("ping"):
                pings += 1
                if pings == 2:
                    srv.api("POST", "/api/tokens", json={"name": "live"})
                continue
            got.append(json.loads(ev["data"]))
            break
        assert time.monotonic() - t0 < 8
    assert pings >= 2
    assert got[0]["type"] == "token.created" and got[0]["data"]["name"] == "live"


def test_events_need_a_token_and_a_valid_id(server):
    assert httpx.get(f"{server.url}/api/events").status_code == 401
    r = httpx.get(
        f"{server.url}/api/events", headers={"Authorization": f"Bearer {server.login()}", "Last-Event-ID": "abc"}
    )
    assert r.status_code == 400 and "Last-Event-ID must be a whole number" in r.json()["error"]["message"]


def test_cli_events_follows_from_an_id(server):
    server.api("POST", "/api/tokens", json={"name": "cli-seen"})
    # `fsctl events` follows forever; run it briefly and read what it printed.
    env = {**server.env, "FSCTL_SERVER": server.url, "FSCTL_TOKEN": server.login()}
    with subprocess.Popen(  # `with` closes its stdout pipe too (kill and wait leave it open)
        [sys.executable, "-m", "fsctl", "events", "--since", "0"], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        try:
            lines = [proc.stdout.readline() for _ in range(2)]
        finally:
            proc.kill()
    assert "user.created" in lines[0] and "token.created" in lines[1] and "cli-seen" in lines[1]
