"""Output files shipped into a real logbus: the tailer paces on logbus's free buffer (a backlog waits in the
file; nothing is dropped) and records positions only once logbus has written them."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from logbus.config import LogbusConfig
from logbus.search import Query, decode_cursor
from logbus.service import LogbusService
from orch.process import ProcessRuntime
from orch.runtime import InstanceConfig
from tests.orch.conftest import cgroup_driver, eventually


async def _texts(svc: LogbusService, service: str, stream: str) -> list[str]:
    out: list[str] = []
    cursor = None
    while True:
        res = await svc.query(Query((service,), streams=frozenset({stream}), limit=10_000, cursor=cursor))
        out += [str(x["text"]) for x in res.lines]
        if res.next_cursor is None:
            return out
        cursor = decode_cursor(res.next_cursor)


async def test_a_backlog_waits_in_the_file_and_nothing_is_dropped(tmp_path: Path) -> None:
    buffer = 64 * 1024
    svc = LogbusService(tmp_path / "logs", LogbusConfig(buffer_bytes=buffer))
    await svc.start()
    rt = ProcessRuntime(svc, cgroup_driver(), output_dir=tmp_path / "out")
    try:
        svc.writer.pause()  # a disk that does not keep up: logbus's buffer fills
        n = 20_000  # 2 MB: 30 times the buffer
        code = f"import os\nfor i in range({n}): os.write(1, b'%06d ' % i + b'q' * 93 + b'\\n')\n"
        inst = await rt.create(InstanceConfig(service="flood", index=1, argv=(sys.executable, "-c", code)))
        await rt.start(inst)
        assert (await asyncio.wait_for(rt.wait(inst), 60)).code == 0
        await asyncio.sleep(0.5)
        assert svc.intake.pending_bytes <= buffer, "the tailer took no more than logbus had room for"
        manifest: dict[str, Any] = json.loads(Path(inst.record()["output"]).read_text())
        stored = manifest["streams"]["stdout"]["stored"]
        written = len(await _texts(svc, "flood", "stdout")) * 101
        assert stored % 101 == 0 and stored <= written < n * 101, "a position is recorded once logbus wrote it"
        svc.writer.resume()
        want = [f"{i:06d} " + "q" * 93 for i in range(n)]

        async def arrived() -> bool:
            return await _texts(svc, "flood", "stdout") == want

        deadline = asyncio.get_running_loop().time() + 60
        while not await arrived():
            assert asyncio.get_running_loop().time() < deadline, "the backlog did not arrive"
            await asyncio.sleep(0.2)
        sys_lines = await svc.query(Query(("flood",), keyword="dropped", limit=10))
        assert not sys_lines.lines, "nothing was dropped"
        await eventually(lambda: not list((tmp_path / "out").iterdir()), timeout=30)
        await rt.remove(inst)
    finally:
        svc.writer.resume()
        await rt.close()
        await svc.stop(10)
