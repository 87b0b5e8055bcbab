"""Release history and diffs over big config files run in orch's parse pool (real worker processes), not
on the loop: a heartbeat task keeps ticking while two 1 MiB templates are diffed; line diffs are bounded."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from core.workers import WorkerPool
from orch import release
from orch.config import OrchSettings
from orch.service import OrchService
from tests.orch.conftest import cgroup_driver
from tests.orch.test_supervisor import FAST, Harness


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path)
    await harness.open()
    yield harness
    await harness.close()


def _conf(seed: int, size: int = 1024 * 1024) -> str:
    """`size` characters of short lines from a small set: many equal lines, difflib's slow case."""
    r = random.Random(seed)
    out, n = [], 0
    while n < size:
        line = f"key{r.randrange(40)} = value{r.randrange(40)}  # a comment that makes ~60 characters\n"
        out.append(line)
        n += len(line)
    return "".join(out)[: size - 1] + "\n"


def _spec(work: Path, content: str) -> dict[str, Any]:
    return {
        "name": "big",
        "cmd": ["sleep", "60"],
        "workdir": str(work),
        "replicas": 0,
        "config_files": [{"path": "app.ini", "content": content}],
    }


async def _max_gap(coro: Any) -> tuple[Any, float]:
    gaps: list[float] = []
    stop = asyncio.Event()

    async def beat() -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    t = asyncio.ensure_future(beat())
    await asyncio.sleep(0.05)
    try:
        got = await coro
    finally:
        stop.set()
        await t
    return got, max(gaps)


async def test_diff_and_history_of_two_1mib_templates_do_not_stall_the_loop(h: Harness, tmp_path: Path) -> None:
    pool = WorkerPool("control", workers=1, backlog=4, kind="process")
    await pool.start()
    o = OrchService(
        OrchSettings(**FAST),
        data_dir=tmp_path / "data",
        store=h.store,
        bus=h.bus,
        endpoints=h.endpoints,
        cgroups=cgroup_driver(),
        parse_pool=pool,
    )
    await o.start()
    h.orchs.append(o)
    try:
        work = tmp_path / "work"
        work.mkdir()
        a, b = _conf(1), _conf(2)
        assert len(a) == len(b) == 1024 * 1024
        await o.apply(_spec(work, a), "big.json")
        await o.apply(_spec(work, b), "big.json")
        await pool.run(len, "warm")  # the worker process is up (its start is not the point here)
        t0 = time.monotonic()
        got, gap = await _max_gap(o.diff("big", 1, 2))
        took = time.monotonic() - t0
        entry = next(c for c in got["changes"] if c["field"] == "config_files[app.ini].content")
        assert entry["diff"].startswith("--- from"), entry["diff"][:80]  # a real line diff (< MAX_DIFF_LINES)
        assert gap < 0.25, f"the loop stalled {gap:.3f}s during a {took:.2f}s diff"
        rels, gap = await _max_gap(o.releases("big"))
        assert [r["release"] for r in rels] == [2, 1] and "config_files[app.ini].content" in rels[0]["changes"]
        assert gap < 0.25, f"the loop stalled {gap:.3f}s listing releases"
    finally:
        await o.stop(5)
        await pool.stop(5)


def test_line_diffs_are_bounded() -> None:
    many = "".join(f"{i}\n" for i in range(release.MAX_DIFF_LINES + 1))
    doc = {"config_files": [{"path": "a", "content": "x\ny\n"}]}
    big = {"config_files": [{"path": "a", "content": many}]}
    (entry,) = release.diff(doc, big)
    assert entry["diff"] == f"(no line diff: more than {release.MAX_DIFF_LINES} lines)\n"
    (entry,) = release.diff(doc, {"config_files": [{"path": "a", "content": "x\nz\n"}]}, unified=False)
    assert "diff" not in entry and entry["to"] == "x\nz\n"
    wide = "".join(f"{'w' * 200}{i}\n" for i in range(release.MAX_DIFF_LINES))  # ~4 MiB of diff text
    (entry,) = release.diff(doc, {"config_files": [{"path": "a", "content": wide}]})
    assert len(entry["diff"]) <= release.MAX_DIFF_CHARS + 40 and entry["diff"].endswith("(diff cut at 1 MiB)\n")


def test_override_changes_keep_the_overridden_fields_with_secrets_as_markers() -> None:
    from orch.release import MAX_AUDIT_VALUE, override_changes

    a = {
        "release": 1,
        "version": "1",
        "spec": {"name": "web", "cmd": ["a"], "replicas": 1},
        "env": {"A": "1", "DB_PASS": "<secret set in release 1>"},
        "config_files": [{"path": "c.ini", "content": "x"}],
    }
    b = {
        "release": 2,
        "version": "v2",
        "spec": {"name": "web", "cmd": ["b"], "replicas": 2},
        "env": {"A": "1", "DB_PASS": "<secret set in release 2>", "NEW": "n"},
        "config_files": [{"path": "c.ini", "content": "y" * (MAX_AUDIT_VALUE + 1)}],
    }
    got = override_changes(a, b, ["env", "cmd", "config_files"])
    assert got["env.DB_PASS"] == {"from": "<secret set in release 1>", "to": "<secret set in release 2>"}
    assert got["env.NEW"] == {"from": None, "to": "n"} and "env.A" not in got
    assert got["spec.cmd"] == {"from": '["a"]', "to": '["b"]'}
    assert got["config_files[c.ini].content"]["from"] == "x"
    assert got["config_files[c.ini].content"]["to"].startswith(f"<{MAX_AUDIT_VALUE + 1} characters, sha256 ")
    # Not overridden: the replica count and the version label stay out.
    assert not {"spec.replicas", "version"} & set(got), got
