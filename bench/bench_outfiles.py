"""Native output files (`orch.outfiles`) vs pipes, same run (`make bench-outfiles`):

1. throughput: a child writes 200 MB as fast as it can; how much of it is stored in logbus, how long
   that takes, and the platform's CPU for it — with output files (today) and with pipes pumped by
   logbus (the reference: what native output was before; past logbus's buffer, lines are dropped);
2. idle cost: the platform's CPU with 20 idle instances over 10 s, files vs pipes.

Bounded (one 200 MB child per mode, 20 `sleep` instances); no network.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import structlog  # noqa: E402

from logbus.config import LogbusConfig  # noqa: E402
from logbus.service import LogbusService  # noqa: E402
from orch.cgroups import RlimitDriver  # noqa: E402
from orch.process import ProcessRuntime  # noqa: E402
from orch.runtime import InstanceConfig  # noqa: E402

MB = 200
WRITER = (
    f"import os\nb = b''.join(b'%07d ' % i + b'w' * 92 + b'\\n' for i in range(10000))\n"
    f"for _ in range({MB * 1_000_000 // 1_010_000}): os.write(1, b)\n"
)


async def _stored_lines(svc: LogbusService, service: str) -> int:
    await svc.flush()
    return sum(int(s["lines"]) for s in await svc.services() if s["service"] == service)


async def throughput(files: bool) -> tuple[float, float, float, float]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-outfiles-"))
    try:
        svc = LogbusService(tmp / "logs", LogbusConfig())
        await svc.start()
        rt = ProcessRuntime(svc, RlimitDriver("bench"), output_dir=tmp / "out" if files else None)
        want = MB * 1_000_000 // 1_010_000 * 10_000
        t0, c0 = time.monotonic(), time.process_time()
        inst = await rt.create(InstanceConfig(service="bench", index=1, argv=(sys.executable, "-c", WRITER)))
        await rt.start(inst)
        await rt.wait(inst)
        child_s = time.monotonic() - t0
        got, total_s = 0, 0.0
        for _ in range(2400):  # until all is stored, or nothing more came for 3 s (dropped), at most 2 min
            now = await _stored_lines(svc, "bench")
            if now != got:
                got, total_s = now, time.monotonic() - t0
            if got >= want or time.monotonic() - t0 - total_s > 3:
                break
            await asyncio.sleep(0.05)
        cpu_s = time.process_time() - c0
        await rt.remove(inst)
        await rt.close()
        await svc.stop(10)
        return child_s, total_s, cpu_s, got / want
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def idle(files: bool, n: int = 20, seconds: float = 10.0) -> float:
    tmp = Path(tempfile.mkdtemp(prefix="bench-outfiles-"))
    try:
        svc = LogbusService(tmp / "logs", LogbusConfig())
        await svc.start()
        rt = ProcessRuntime(svc, RlimitDriver("bench"), output_dir=tmp / "out" if files else None)
        insts = []
        for i in range(n):
            inst = await rt.create(InstanceConfig(service="idle", index=i + 1, argv=("sleep", "120")))
            await rt.start(inst)
            insts.append(inst)
        await asyncio.sleep(1)
        t0, c0 = time.monotonic(), time.process_time()
        await asyncio.sleep(seconds)
        share = (time.process_time() - c0) / (time.monotonic() - t0)
        for inst in insts:
            await rt.stop(inst, 1)
            await rt.remove(inst)
        await rt.close()
        await svc.stop(10)
        return share
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    for files in (True, False):
        child_s, total_s, cpu_s, share = await throughput(files)
        mode = "files" if files else "pipes (reference)"
        dropped = "" if share >= 1 else "; the rest dropped: buffer full"
        print(
            f"{mode:18} {MB} MB: child done in {child_s:.2f} s, {share:.1%} of the lines stored in logbus "
            f"after {total_s:.2f} s ({MB * share / total_s:.0f} MB/s{dropped}), platform CPU {cpu_s:.2f} s"
        )
    for files in (True, False):
        mode = "files" if files else "pipes (reference)"
        print(f"{mode:18} 20 idle instances: {await idle(files) * 100:.2f} % of a core")


if __name__ == "__main__":
    asyncio.run(main())
