"""The gate's access log in logbus, fed as `fsctl serve` wires it (the gate's `AccessBatch` in front of
logbus): lines rendered one by one are stored a batch at a time, in order, all of them under a burst; the
open batch is written when the gate stops; the live tail sees them; and overload drops whole batches,
counted, with a marker."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gate.accesslog import AccessBatch
from logbus.config import LogbusConfig
from logbus.records import expand
from logbus.search import Query, decode_cursor
from logbus.service import ACCESS_SERVICE, LogbusService
from logbus.tail import Batch

Factory = Callable[..., Any]


def gate_side(svc: LogbusService) -> AccessBatch:
    """The gate's open batch in front of `svc`, with the thresholds `svc` asks for."""
    return AccessBatch(svc, time.time, time.perf_counter)


def add(batch: AccessBatch, i: int, path: str | None = None) -> None:
    """Request `r{i}` finished (the gate renders its line; tests/gate/test_access_line.py checks how)."""
    t = time.perf_counter()
    batch.add(
        t - 0.002,
        t,
        "example.com",
        b"GET",
        path or f"/p/{i}",
        200,
        10,
        "127.0.0.1:9000",
        "10.0.0.1",
        f"r{i}",
        None,
        "1.1",
        0,
        1.5,
    )


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[Factory]:
    started: list[LogbusService] = []

    async def factory(**cfg: Any) -> LogbusService:
        svc = LogbusService(tmp_path / "logs", LogbusConfig(**cfg))
        await svc.start()
        started.append(svc)
        return svc

    yield factory
    for svc in started:
        await svc.stop(10)


async def all_lines(svc: LogbusService) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        res = await svc.query(Query((ACCESS_SERVICE,), cursor=cursor, limit=1000))
        out += res.lines
        if res.next_cursor is None:
            return out
        cursor = decode_cursor(res.next_cursor)


async def test_batches_arrive_in_order_and_stop_writes_the_open_one(make: Factory) -> None:
    svc = await make(access_batch_s=60, access_batch_lines=100)
    batch = gate_side(svc)
    for i in range(250):
        add(batch, i)
    await asyncio.wrap_future(svc.writer.control(lambda: None))  # the queued batches are written
    # Two full batches are written; the last 50 wait in the open batch (its timer is a minute away)...
    written = await all_lines(svc)
    assert [json.loads(x["text"])["request_id"] for x in written] == [f"r{i}" for i in range(200)]
    batch.close()  # ...until the gate stops (then logbus), which writes them: nothing lost, nothing reordered
    await svc.stop(10)
    again = LogbusService(svc.dir, LogbusConfig())
    await again.start()
    try:
        lines = await all_lines(again)
    finally:
        await again.stop(10)
    assert [json.loads(x["text"])["request_id"] for x in lines] == [f"r{i}" for i in range(250)]


async def test_the_batch_timer_writes_a_partial_batch_and_live_tail_sees_it(make: Factory) -> None:
    svc = await make(access_batch_s=0.1)
    batch = gate_side(svc)
    sub = svc.subscribe(ACCESS_SERVICE)
    try:
        t = time.monotonic()
        for i in range(3):
            add(batch, i)
        got = b""
        while got.count(b"\n") < 3:
            items = await sub.get(5)
            assert items, "no access-log lines reached the live tail in 5 s"
            got += b"".join(x.data for x in items if isinstance(x, Batch))
        assert time.monotonic() - t < 2.0  # the batch interval (0.1 s) plus a loaded machine's margin
        lines = expand(got).splitlines()  # a batch of lines is one chunk record: as the console's tail reads it
        assert [json.loads(x.split(b" ", 3)[3])["request_id"] for x in lines] == ["r0", "r1", "r2"]
    finally:
        sub.close()


async def test_overload_drops_whole_batches_counted_with_a_marker_in_order(make: Factory) -> None:
    svc = await make(buffer_bytes=4096, access_batch_lines=10, access_batch_s=60)
    batch = gate_side(svc)
    svc.writer.pause()  # a stalled disk: the intake fills, then batches are dropped
    t = time.perf_counter()
    for i in range(1000):
        add(batch, i)
    assert (time.perf_counter() - t) / 1000 < 250e-6  # never waits for the stalled writer (generous: CI)
    svc.writer.resume()
    await svc.flush()
    for i in range(1000, 1010):  # after the stall: the marker goes first, then these
        add(batch, i)
    batch.flush()  # a 4 KiB intake closes batches by size before 10 lines: hand over the open one
    await svc.flush()
    lines = await all_lines(svc)
    markers = [x for x in lines if x["stream"] == "logbus"]
    kept = [json.loads(x["text"])["request_id"] for x in lines if x["stream"] != "logbus"]
    assert markers and all(m["text"].startswith("logbus: dropped ") for m in markers)
    dropped = sum(int(m["text"].split("dropped ")[1].split()[0]) for m in markers)
    assert dropped > 0 and len(kept) + dropped == 1010  # every line is either stored or counted
    ids = [int(k[1:]) for k in kept]
    assert ids == sorted(ids) and ids[:10] == list(range(10)) and ids[-10:] == list(range(1000, 1010))
    # The markers sit where their lines went missing: between two kept lines, the markers count the gap.
    prev, missing = -1, 0
    for x in lines:
        if x["stream"] == "logbus":
            missing += int(x["text"].split("dropped ")[1].split()[0])
            continue
        i = int(json.loads(x["text"])["request_id"][1:])
        assert i - prev - 1 == missing, (prev, i, missing)
        prev, missing = i, 0


async def test_long_request_targets_close_a_batch_by_size(make: Factory) -> None:
    # A client chooses its path's length: lines of ~8 KiB must not wait for 512 to be joined at once.
    svc = await make(access_batch_s=60, access_batch_lines=512, max_line_bytes=16 * 1024)
    batch = gate_side(svc)
    n = svc.access_batch_chars // 8000 + 20  # past the size bound, under the line count
    assert n < 512
    for i in range(n):
        add(batch, i, f"/p/{i}/" + "a" * 8000)
    await asyncio.wrap_future(svc.writer.control(lambda: None))
    written = await all_lines(svc)
    assert 0 < len(written) < n  # the size bound closed batches before the line count or the timer
    assert [json.loads(x["text"])["request_id"] for x in written] == [f"r{i}" for i in range(len(written))]


async def test_a_burst_all_arrives_and_a_drop_still_unmarked_at_stop_is_marked(make: Factory) -> None:
    # A burst larger than many batches, within one turn of the loop (no timer fires): every line is stored.
    svc = await make()
    batch = gate_side(svc)
    for i in range(5000):
        add(batch, i)
    batch.close()
    await svc.flush()
    assert [json.loads(x["text"])["request_id"] for x in await all_lines(svc)] == [f"r{i}" for i in range(5000)]
    # A batch the full intake refuses is counted; if nothing comes after it, stop still writes its marker.
    svc.intake.max_bytes = 0
    svc.record_lines(["{}\n"] * 7, time.time())
    assert svc.stats()["dropped_unmarked_lines"] == 7
    await svc.stop(10)
    again = LogbusService(svc.dir, LogbusConfig())
    await again.start()
    try:
        lines = await all_lines(again)
    finally:
        await again.stop(10)
    assert len(lines) == 5001 and lines[-1]["text"].startswith("logbus: dropped 7 lines")


async def test_a_small_intake_buffer_still_takes_full_batches(make: Factory) -> None:
    # The intake refuses an item larger than buffer_bytes whole: a batch bounded only by the tail buffer
    # (512 KiB) would lose every line of a busy gate at buffer_bytes 384k. ~450 KiB of lines, fed in
    # steps the writer keeps up with, so nothing but a batch's own size could make the intake refuse it.
    svc = await make(access_batch_s=60, access_batch_lines=2048, buffer_bytes=384 * 1024)
    batch = gate_side(svc)
    n = 640
    for i in range(n):
        add(batch, i, f"/p/{i}/" + "a" * 500)
        if i % 100 == 99:
            await asyncio.wrap_future(svc.writer.control(lambda: None))
    batch.close()
    await svc.flush()
    assert svc.stats()["dropped_unmarked_lines"] == 0
    written = await all_lines(svc)
    assert [json.loads(x["text"])["request_id"] for x in written] == [f"r{i}" for i in range(n)]
