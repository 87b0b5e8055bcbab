"""A real `fsctl serve` with snap: plans, a run with `snap.done` on the event stream, snapshots, restore,
scrub (exit 1 on damage, naming the file), forget/prune through the CLI, and refusals of bad input
and of viewers."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx

from console_api.schemas_snap import Shadow
from tests.e2e.test_events import sse_events
from tests.snap.helpers import digest, make_tree


def _server(server_factory: Any, tmp_path: Path) -> Any:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"snap:\n  restore_root: {tmp_path / 'restore'}\n  check_every_s: 1\n")
    return server_factory(extra_args=["--config", str(cfg)])


def _first_event(srv: Any, etype: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {srv.login()}", "Last-Event-ID": "0"}
    with httpx.stream("GET", f"{srv.url}/api/events", headers=headers, timeout=10) as r:
        for ev in sse_events(r.iter_lines()):
            if ev.get("event") == etype:
                return json.loads(ev["data"])["data"]
    raise AssertionError(f"no {etype} event")


def test_plan_run_restore_scrub_through_the_cli(server_factory: Any, tmp_path: Path) -> None:
    srv = _server(server_factory, tmp_path)
    src = tmp_path / "srv" / "data" / "app"
    src.mkdir(parents=True)
    make_tree(src, large_mib=3)

    out = srv.fsctl(
        "snap", "plan", "add", "--name", "app-daily", "--paths", str(src), "--keep-daily", "7", "--cron", "0 3 * * *"
    )
    assert out.returncode == 0, out.stderr
    assert "plan app-daily added (cron 0 3 * * *)" in out.stdout
    out = srv.fsctl("snap", "plan", "ls")
    assert "app-daily" in out.stdout and "0 3 * * *" in out.stdout and "0/7/4/3" in out.stdout

    out = srv.fsctl("snap", "run", "app-daily", timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("snapshot ") and " new, " in out.stdout
    done = _first_event(srv, "snap.done")
    assert done["plan"] == "app-daily" and done["new_bytes"] > 0 and done["files"] >= 8

    snaps = json.loads(srv.fsctl("snap", "ls", "--json").stdout)
    assert len(snaps) == 1 and snaps[0]["plan"] == "app-daily"
    sid = snaps[0]["id"]
    assert "SIZE/STORED" in srv.fsctl("snap", "ls").stdout

    target = tmp_path / "restored"
    out = srv.fsctl("snap", "restore", "--id", sid[:8], "--target", str(target), timeout=120)
    assert out.returncode == 0, out.stderr
    assert digest(target / str(src).lstrip("/")) == digest(src)
    out = srv.fsctl("snap", "restore", "--id", sid[:8], "--target", str(target))
    assert out.returncode == 1 and "exists and is not empty" in out.stderr

    out = srv.fsctl("snap", "scrub", "--all", timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stdout + out.stderr

    # a flipped byte in the pack holding big.bin: scrub exits 1 naming the file; restore refuses it
    repo = srv.data_dir / "snap" / "repo"
    packs = sorted((p for p in (repo / "packs").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    biggest = packs[-1]
    data = bytearray(biggest.read_bytes())
    data[len(data) // 3] ^= 0xFF
    os.chmod(biggest, 0o600)
    biggest.write_bytes(bytes(data))
    out = srv.fsctl("snap", "scrub", "--all", timeout=120)
    assert out.returncode == 1
    assert "DAMAGED" in out.stdout and f"damaged pack {biggest.name[:12]}" in out.stdout
    assert str(src / "big.bin") in out.stdout or str(src / "compressible.log") in out.stdout
    out = srv.fsctl("snap", "restore", "--id", sid, "--target", str(tmp_path / "r2"), timeout=120)
    assert out.returncode == 1 and "damaged: " in out.stderr and "file(s) damaged" in out.stderr

    runs = srv.api("GET", "/api/snap/runs").json()
    assert runs[0]["state"] == "done" and runs[0]["snapshot"] == sid
    audit = srv.api("GET", "/api/audit").json()
    actions = [a["action"] for a in (audit["items"] if isinstance(audit, dict) else audit)]
    assert {"snap.plan.add", "snap.run", "snap.restore", "snap.scrub"} <= set(actions)


def test_forget_and_prune_through_the_cli(server_factory: Any, tmp_path: Path) -> None:
    srv = _server(server_factory, tmp_path)
    src = tmp_path / "d"
    src.mkdir()
    assert (
        srv.fsctl(
            "snap",
            "plan",
            "add",
            "--name",
            "p",
            "--paths",
            str(src),
            "--keep-last",
            "1",
            "--keep-daily",
            "0",
            "--keep-weekly",
            "0",
            "--keep-monthly",
            "0",
        ).returncode
        == 0
    )
    for i in range(2):
        (src / f"f{i}").write_bytes(os.urandom(300_000))
        assert srv.fsctl("snap", "run", "p", timeout=120).returncode == 0
    # retention ran after each run: one snapshot is left
    assert len(json.loads(srv.fsctl("snap", "ls", "--json").stdout)) == 1
    out = srv.fsctl("snap", "forget", "--dry-run")
    assert out.returncode == 0 and "keep" in out.stdout
    out = srv.fsctl("snap", "prune", "--json", timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["blobs_dropped"] >= 0
    assert srv.fsctl("snap", "scrub", "--all").returncode == 0


def test_bad_input_and_viewers_are_refused(server_factory: Any, tmp_path: Path) -> None:
    srv = _server(server_factory, tmp_path)
    r = srv.api("POST", "/api/snap/plans", json={"name": "x", "paths": ["relative/path"]})
    assert r.status_code == 400 and "must be an absolute path" in r.text
    r = srv.api("POST", "/api/snap/plans", json={"name": "x", "paths": ["/srv"], "cron": "61 * * * *"})
    assert r.status_code == 400 and "not valid" in r.text
    r = srv.api("POST", "/api/snap/plans", json={"name": "x", "paths": ["/srv"], "keep_dialy": 3})
    assert r.status_code == 400 and "keep_dialy" in r.text
    r = srv.api("POST", "/api/snap/plans", json={"name": "../x", "paths": ["/srv"]})
    assert r.status_code == 400
    r = srv.api("POST", "/api/snap/plans", json={"name": "x", "paths": ["/srv"], "pre_hook": "sh -c 'unclosed"})
    assert r.status_code == 400 and "quote like a shell" in r.text
    r = srv.api("POST", "/api/snap/plans", json={"name": "x", "paths": ["/"]})
    assert r.status_code == 400 and "refused" in r.text
    r = srv.api("POST", "/api/snap/restore", json={"snapshot": "../../etc"})
    assert r.status_code in (400, 404)
    r = srv.api("POST", "/api/snap/restore", json={"snapshot": "abcd", "target": "relative"})
    assert r.status_code == 400
    r = srv.api("POST", "/api/snap/plans/nope/run")
    assert r.status_code == 404 and "no backup plan 'nope'" in r.text
    tok = srv.api("POST", "/api/tokens", json={"name": "v", "role": "viewer"}).json()["token"]
    assert srv.api("GET", "/api/snap/plans", token=tok).status_code == 200
    assert srv.api("POST", "/api/snap/plans", json={"name": "x", "paths": ["/srv"]}, token=tok).status_code == 403
    assert srv.api("POST", "/api/snap/prune", token=tok).status_code == 403
    assert srv.api("GET", "/api/snap/snapshots", token=None).status_code == 401


def test_shadow_instance_boots_from_restored_data(server_factory: Any, tmp_path: Path) -> None:
    srv = _server(server_factory, tmp_path)
    data = tmp_path / "srv" / "data" / "notes"
    data.mkdir(parents=True)
    (data / "notes.txt").write_text("notes v1\nbuy milk\n")
    app = Path(__file__).resolve().parents[2] / "examples" / "snap" / "notes_app.py"
    spec = tmp_path / "notes.yaml"
    spec.write_text(
        f"name: notes\ncmd: [python3, {app}, '${{PORT}}', {data}]\n"
        "ports: [{name: http, internal: auto}]\n"
        "healthcheck: {http: 'http://127.0.0.1:${PORT}/healthz', interval: 1s, timeout: 1s, retries: 2}\n"
    )
    out = srv.fsctl("service", "apply", "-f", str(spec), "--wait", "60", timeout=90)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (
        srv.fsctl("snap", "plan", "add", "--name", "notes-daily", "--paths", str(data), "--service", "notes").returncode
        == 0
    )
    assert srv.fsctl("snap", "run", "notes-daily", timeout=120).returncode == 0
    sid = json.loads(srv.fsctl("snap", "ls", "--json").stdout)[0]["id"]
    # the live data moves on after the backup; the shadow must serve what was backed up
    (data / "notes.txt").write_text("notes v1\nbuy milk\nbuy eggs (after the backup)\n")

    target = tmp_path / "restore" / "notes-check"
    out = srv.fsctl("snap", "restore", "--id", sid, "--target", str(target), "--shadow", timeout=150)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "shadow instance notes-shadow of notes: healthy" in out.stdout
    (shadow,) = srv.api("GET", "/api/snap/shadows").json()
    Shadow.model_validate(shadow)  # what the OpenAPI document (and the UI's client) says it is
    assert shadow["healthy"] and shadow["url"].startswith("http://127.0.0.1:")
    body = httpx.get(shadow["url"], timeout=5).text
    assert f"data dir: {target}{data}" in body and "buy milk" in body and "eggs" not in body
    live = srv.api("GET", "/api/services/notes").json()
    assert live["endpoints"] != shadow["endpoints"]  # its own port, beside the live service

    # the shadow is an orch service that outlives a restart of the platform: snap still knows it after one
    assert srv.stop() == 0
    srv = _server(server_factory, tmp_path)
    assert [s["name"] for s in srv.api("GET", "/api/snap/shadows").json()] == ["notes-shadow"]

    out = srv.fsctl("snap", "shadow", "rm", "notes-shadow")
    assert out.returncode == 0, out.stderr
    assert srv.api("GET", "/api/snap/shadows").json() == []
    assert srv.api("GET", "/api/services/notes-shadow").status_code == 404

    # a plan without a service cannot shadow: refused before anything is restored
    assert srv.fsctl("snap", "plan", "add", "--name", "plain", "--paths", str(data)).returncode == 0
    assert srv.fsctl("snap", "run", "plain", timeout=120).returncode == 0
    plain = next(s for s in json.loads(srv.fsctl("snap", "ls", "--json").stdout) if s["plan"] == "plain")
    out = srv.fsctl("snap", "restore", "--id", plain["id"], "--target", str(tmp_path / "x"), "--shadow")
    assert out.returncode == 1 and "names no service" in out.stderr
    assert not (tmp_path / "x").exists()
