"""Output files of native instances (`orch.outfiles`): real children appending to their files while the
platform (a `ProcessRuntime` and its tailer) is up, down, and started again."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orch.logfiles import FileLogSink
from orch.outfiles import OutputFiles, collapsible, shippable
from orch.process import ProcessInstance, ProcessRuntime
from orch.runtime import InstanceConfig
from tests.orch.conftest import cgroup_driver, eventually, read_logs

PY = sys.executable


@pytest.mark.parametrize(
    ("data", "final", "want"),
    [
        (b"", False, 0),
        (b"abc", False, 0),  # a partial line waits for its newline
        (b"abc", True, 3),  # ... unless the stream ended
        (b"a\nb", False, 2),
        (b"a\nb\n", False, 4),
        (b"x" * 10, False, 0),
    ],
)
def test_shippable_cuts_after_the_last_newline(data: bytes, final: bool, want: int) -> None:
    assert shippable(data, final=final) == want


def test_shippable_ships_an_overlong_line_as_it_is() -> None:
    assert shippable(b"x" * 100, final=False, max_line=100) == 100
    assert shippable(b"x" * 99, final=False, max_line=100) == 0


@pytest.mark.parametrize(
    ("stored", "size", "max_bytes", "block", "want"),
    [
        (1000, 5000, 4096, 4096, 0),  # under the bound: nothing cut
        (10_000, 10_000, 4096, 4096, 8192),  # everything stored: whole blocks, never up to EOF
        (8192, 8192, 4096, 4096, 4096),  # EOF on a block boundary: one block stays
        (9000, 20_000, 4096, 4096, 8192),  # only what is stored
        (5000, 5000, 4096, 0, 0),
    ],
)
def test_collapsible_cuts_stored_whole_blocks(stored: int, size: int, max_bytes: int, block: int, want: int) -> None:
    assert collapsible(stored, size, max_bytes, block) == want


def _lines(logs: list[Path], service: str, stream: str) -> list[str]:
    """The output lines of `stream`, in the order the sinks got them (FileLogSink: `time inst stream line`)."""
    out = []
    for d in logs:
        for line in read_logs(d, service).splitlines():
            parts = line.split(" ", 3)
            if len(parts) == 4 and parts[2] == stream:
                out.append(parts[3])
    return out


async def _start(rt: ProcessRuntime, service: str, code: str) -> ProcessInstance:
    inst = await rt.create(InstanceConfig(service=service, index=1, argv=(PY, "-c", code), stop_timeout_s=1))
    await rt.start(inst)  # type: ignore[arg-type]
    return inst  # type: ignore[return-value]


@pytest.fixture
def shm_dir() -> Iterator[Path]:
    """A directory on tmpfs, where the file's head cannot be collapsed (truncation is the fallback)."""
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm here")
    d = Path("/dev/shm") / f"infracore-test-{secrets.token_hex(4)}"
    d.mkdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


async def test_a_chatty_child_never_blocks_while_the_platform_is_down(tmp_path: Path) -> None:
    """4 MB written while nothing reads (a pipe would block the child at 1 MB, forever): the child runs to
    its end, and the next platform ships all of it, once, in order, then deletes the files."""
    out = tmp_path / "out"
    rt1 = ProcessRuntime(FileLogSink(tmp_path / "logs1"), cgroup_driver(), output_dir=out)
    n = 40_000
    code = (
        f"import os, time\ntime.sleep(0.5)\nfor i in range({n}): os.write(1, b'%07d ' % i + b'x' * 92 + b'\\n')\n"
        "os.write(2, b'done\\n')\n"
    )
    inst = await _start(rt1, "chat", code)
    record = inst.record()
    await rt1.close()  # the platform is down before the child writes
    status = await asyncio.wait_for(rt1.wait(inst), 60)
    assert status.code == 0, status
    assert (out / Path(record["output"]).with_suffix(".stdout").name).stat().st_size == n * 101
    rt2 = ProcessRuntime(FileLogSink(tmp_path / "logs2"), cgroup_driver(), output_dir=out)
    try:
        assert await rt2.adopt(inst.config, record) is None  # gone: its output is still shipped
        await eventually(lambda: not list(out.iterdir()), timeout=60)  # shipped, then deleted
        logs = [tmp_path / "logs1", tmp_path / "logs2"]
        assert _lines(logs, "chat", "stdout") == [f"{i:07d} " + "x" * 92 for i in range(n)]
        assert _lines(logs, "chat", "stderr") == ["done"]
    finally:
        await rt2.close()
        await rt1.remove(inst)


_PACED = """
import os, sys, time
n, burst = int(sys.argv[1]), int(sys.argv[2])
for b in range(burst):  # a burst of 100 KB writes first (trimming), then a steady trickle
    os.write(1, b"".join(b"b%06d %s\\n" % (b * 1000 + j, b"y" * 91) for j in range(1000)))
for i in range(n):
    os.write(1, b"o%05d\\n" % i)
    os.write(2, b"e%05d\\n" % i)
    time.sleep(0.005)
os.write(1, b"no newline at the end")
"""


@pytest.mark.parametrize("where", ["ext4-or-whatever-tmp-is", "tmpfs"])
async def test_a_platform_restart_mid_stream_loses_and_repeats_nothing(
    tmp_path: Path, where: str, request: pytest.FixtureRequest
) -> None:
    """The tailer is stopped while the child writes and a new one adopts it: every line of both streams
    arrives exactly once and in order, the last partial line too; the files stay bounded while shipping
    (the stored head is cut: collapsed, or truncated on tmpfs), and go once the child ended."""
    out = (request.getfixturevalue("shm_dir") if where == "tmpfs" else tmp_path) / "out"
    max_bytes = 64 * 1024
    n, burst = 1000, 30  # the trickle lasts 5 s or more: the child outlives the first tailer
    rt1 = ProcessRuntime(FileLogSink(tmp_path / "logs1"), cgroup_driver(), output_dir=out, output_max_bytes=max_bytes)
    inst = await _start(rt1, "paced", _PACED.replace("sys.argv[1]", str(n)).replace("sys.argv[2]", str(burst)))
    record = inst.record()
    stdout_file = Path(record["output"]).with_suffix(".stdout")
    logs = [tmp_path / "logs1", tmp_path / "logs2"]
    await eventually(lambda: len(_lines(logs, "paced", "stdout")) >= burst * 1000 + 20, timeout=60)
    manifest = json.loads(Path(record["output"]).read_text())
    assert manifest["streams"]["stdout"]["base"] > 0, "the shipped head was cut"
    assert stdout_file.stat().st_size < burst * 100_000
    await rt1.close()  # platform down mid-stream
    await asyncio.sleep(0.5)
    rt2 = ProcessRuntime(FileLogSink(tmp_path / "logs2"), cgroup_driver(), output_dir=out, output_max_bytes=max_bytes)
    try:
        adopted = await rt2.adopt(inst.config, record)
        assert adopted is not None and adopted.pid == inst.pid
        await asyncio.wait_for(rt2.wait(adopted), 60)
        await eventually(lambda: not list(out.iterdir()), timeout=30)
        bursts = [f"b{i:06d} " + "y" * 91 for i in range(burst * 1000)]
        assert _lines(logs, "paced", "stdout") == [*bursts, *(f"o{i:05d}" for i in range(n)), "no newline at the end"]
        assert _lines(logs, "paced", "stderr") == [f"e{i:05d}" for i in range(n)]
        assert _lines([tmp_path / "logs2"], "paced", "stderr"), "part of it was shipped by the second tailer"
    finally:
        await rt2.close()
        await rt1.remove(inst)


@pytest.mark.parametrize(
    "manifest",
    [
        "not json",
        json.dumps([1, 2]),
        json.dumps(
            {
                "service": "x",
                "instance": "x-1",
                "pid": 1,
                "start_ticks": 1,
                "streams": {
                    "stdout": {"file": "../victim", "base": 0, "stored": 0},
                    "stderr": {"file": "../victim", "base": 0, "stored": 0},
                },
            }
        ),
        json.dumps({"service": "x", "instance": "x-1", "pid": "1; rm -rf /", "start_ticks": 1, "streams": {}}),
        json.dumps(
            {
                "service": "x",
                "instance": "x-1",
                "pid": 1,
                "start_ticks": 1,  # the right name, a symlink
                "streams": {
                    "stdout": {"file": "x-1-0000.stdout", "base": 0, "stored": 0},
                    "stderr": {"file": "x-1-0000.stderr", "base": 0, "stored": 0},
                },
            }
        ),
        json.dumps(
            {
                "service": "x",
                "instance": "x-1",
                "pid": 1,
                "start_ticks": 1,
                "streams": {
                    "stdout": {"file": "x-1-0000.stdout", "base": 5, "stored": 1},
                    "stderr": {"file": "x-1-0000.stderr", "base": 0, "stored": 0},
                },
            }
        ),
    ],
)
def test_a_bad_manifest_is_removed_and_touches_nothing(tmp_path: Path, manifest: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n" * 100_000)
    (out / "x-1-0000.json").write_text(manifest)
    os.symlink(victim, out / "x-1-0000.stdout")
    sink = FileLogSink(tmp_path / "logs")
    tailer = OutputFiles(sink, out, max_bytes=64 * 1024)
    tailer.start()
    try:
        assert tailer.pending() == 0
        assert not (out / "x-1-0000.json").exists()
    finally:
        tailer.close()
    assert victim.read_bytes() == b"precious\n" * 100_000
    assert not (tmp_path / "logs").exists()
    assert not list(out.iterdir()), "files of no (valid) manifest are removed"


async def test_a_forged_output_path_in_a_pidfile_is_not_followed(tmp_path: Path) -> None:
    """A pidfile record names its manifest; only that name, in this runtime's output dir, is used."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    streams = {s: {"file": f"v.{s}", "base": 0, "stored": 0} for s in ("stdout", "stderr")}
    (elsewhere / "v.json").write_text(
        json.dumps({"service": "v", "instance": "v-1", "pid": 1, "start_ticks": 1, "streams": streams})
    )
    for s in ("stdout", "stderr"):
        (elsewhere / f"v.{s}").write_bytes(b"not yours\n" * 10)
    rt = ProcessRuntime(FileLogSink(tmp_path / "logs"), cgroup_driver(), output_dir=tmp_path / "out")
    try:
        cfg = InstanceConfig(service="v", index=1, argv=("true",))
        for forged in (str(elsewhere / "v.json"), "..", str(elsewhere), "/", ".v.json"):
            assert await rt.adopt(cfg, {"pid": 2**22 + 7, "start_ticks": 1, "output": forged}) is None
        await asyncio.sleep(0.3)
        assert rt.outputs is not None and rt.outputs.pending() == 0
    finally:
        await rt.close()
    assert all((elsewhere / f"v.{s}").read_bytes() == b"not yours\n" * 10 for s in ("stdout", "stderr"))
    assert (elsewhere / "v.json").exists() and not (tmp_path / "logs").exists()
