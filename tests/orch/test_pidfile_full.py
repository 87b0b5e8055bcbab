"""A pidfile that cannot be written after a spawn (here: `<data>/run/orch` on a tmpfs filled to the last
byte): the child just started is stopped again and the start fails with an error naming the file — for a
deployment's staged instance and for the supervisor's restart — instead of a child no record points to."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import kill_left_instances
from tests.orch.test_deploy_recovery import _app, _by_slot
from tests.orch.test_deploy_shell import _finished
from tests.orch.test_supervisor import Harness, until


def _in(workdir: Path) -> list[int]:
    """Pids of the processes running in `workdir` (the app's instances)."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if os.readlink(p / "cwd") == str(workdir):
                    out.append(int(p.name))
            except OSError:
                continue
    return out


def _reason(o: Any) -> str:
    insts = o.describe("app")["instances"]
    return str(insts[0]["reason"] or "") if insts else ""


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    """`<data>/run/orch` (the pidfiles) and its `out/` (the output files and their manifests) on two small
    tmpfs mounts of their own, to fill one or the other."""
    d = tmp_path / "data" / "run" / "orch"
    d.mkdir(parents=True)
    mounted: list[Path] = []
    try:
        for where in (d, d / "out"):
            where.mkdir(exist_ok=True)
            if (
                os.geteuid() != 0
                or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)]).returncode
            ):
                pytest.skip("mounting a small tmpfs needs root")
            mounted.append(where)
        yield d
    finally:
        for where in reversed(mounted):
            subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture
async def h(tmp_path: Path, run_dir: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path)
    await harness.open()
    try:
        yield harness
        await harness.close()
    finally:
        kill_left_instances(tmp_path / "data")


def _fill(d: Path, name: str = "filler") -> Path:
    filler = d / name
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"x" * 512)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


async def test_a_pidfile_that_cannot_be_written_stops_the_child_and_fails_the_start(
    h: Harness, tmp_path: Path, run_dir: Path
) -> None:
    work = tmp_path / "work"
    o = await h.orch()
    await o.apply(_app(work, 1, ""), "app.yaml")
    await until(lambda: o.describe("app")["healthy"] == 1)
    (pid_v1,) = _in(work)
    filler = _fill(run_dir)
    # A deployment: its staged instance starts, its record cannot be written → stopped, the deployment fails
    # naming the file; v1 was never touched.
    d = await _finished(
        o,
        (await o.deploy("app", version="v2", actor="ci", overrides={"env": {"VERSION": "${version}"}}))[
            "deployment_id"
        ],
    )
    assert d["status"] in ("failed", "rolled_back"), d
    assert "pidfile" in d["error"] and "app-201.json could not be written (No space left on device)" in d["error"], d
    assert "was stopped again" in d["error"], d
    await until(lambda: _in(work) == [pid_v1])
    # The supervisor's start (stopped first: its record's removal frees a block, filled again): the same, then
    # a back-off and a retry.
    await o.stop_service("app")
    more = _fill(run_dir, "filler-2")
    await o.start_service("app")
    await until(lambda: "could not be written" in _reason(o))
    reason = _reason(o)
    assert "app-1 was started (pid" in reason and "app-1.json could not be written" in reason, reason
    await until(lambda: not _in(work), timeout=15)  # the attempt's child was stopped again, not left running
    filler.unlink()  # space again: the next retry starts it, recorded
    more.unlink()
    await until(lambda: o.describe("app")["healthy"] == 1, timeout=30)
    (pid,) = _in(work)
    assert _by_slot(o)[1][1] == pid and (run_dir / "app-1.json").exists()


async def test_an_output_manifest_that_cannot_be_written_stops_the_child_and_fails_the_start(
    h: Harness, tmp_path: Path, run_dir: Path
) -> None:
    work = tmp_path / "work"
    filler = _fill(run_dir / "out")
    o = await h.orch()
    await o.apply(_app(work, 1, ""), "app.yaml")
    await until(lambda: "output manifest" in _reason(o))
    reason = _reason(o)
    assert "could not be written (No space left on device); it was stopped again" in reason, reason
    await until(lambda: not _in(work), timeout=15)  # the child was stopped again, not left running
    assert not [p for p in (run_dir / "out").iterdir() if not p.name.startswith("filler")]  # nothing of it kept
    filler.unlink()
    await until(lambda: o.describe("app")["healthy"] == 1, timeout=30)
    (pid,) = _in(work)
    assert _by_slot(o)[1][1] == pid


async def test_an_old_instance_whose_record_cannot_move_aside_keeps_its_slot_record_while_it_drains(
    h: Harness, tmp_path: Path, run_dir: Path
) -> None:
    """The deployment switches slot 1 to the new instance, but the draining old one's record cannot be moved
    aside (`app-301.tmp` is taken by a directory): the slot's record keeps naming the old instance until it
    has stopped — a crash during the drain still finds it — and the new one stays under its staged record;
    then the slot's record names the new one."""
    import json

    work = tmp_path / "work"
    spec = _app(work, 1, "").replace("drain: 0s", "drain: 4s")
    o = await h.orch()
    await o.apply(spec, "app.yaml")
    await until(lambda: o.describe("app")["healthy"] == 1)
    (pid_v1,) = _in(work)
    (run_dir / "app-301.tmp").mkdir()  # the retired record's temporary file cannot be created
    dep = (await o.deploy("app", version="v2", actor="ci", overrides={"env": {"VERSION": "${version}"}}))[
        "deployment_id"
    ]
    await until(lambda: 1 in _by_slot(o) and _by_slot(o)[1][1] != pid_v1)  # switched; the old one drains
    pid_v2 = _by_slot(o)[1][1]
    assert pid_v1 in _in(work)

    def pid_in(index: int) -> int | None:
        path = run_dir / f"app-{index}.json"
        return json.loads(path.read_text())["pid"] if path.exists() else None

    assert pid_in(1) == pid_v1, "the draining old instance has no record"
    assert pid_in(201) == pid_v2
    d = await _finished(o, dep)
    assert d["status"] == "succeeded", d
    await until(lambda: _in(work) == [pid_v2], timeout=15)
    await until(lambda: pid_in(1) == pid_v2 and pid_in(201) is None, timeout=10)
