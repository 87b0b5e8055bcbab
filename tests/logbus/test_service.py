"""The logbus service with real child processes writing into pipes, real files and a real index."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from core.clock import ManualClock
from logbus.config import LogbusConfig
from logbus.format import iso, parse_record
from logbus.index import IndexReader
from logbus.search import Query, decode_cursor
from logbus.service import LogbusService
from logbus.tail import Batch, Skipped

Factory = Callable[..., Any]


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[Factory]:
    started: list[LogbusService] = []

    async def factory(clock: Any = None, name: str = "logs", **cfg: Any) -> LogbusService:
        svc = LogbusService(tmp_path / name, LogbusConfig(**cfg), clock)
        await svc.start()
        started.append(svc)
        return svc

    yield factory
    for svc in started:
        await svc.stop(10)


def spawn(code: str, *, stderr: bool = False) -> tuple[subprocess.Popen[bytes], int, int | None]:
    """A Python child whose stdout (and stderr) are pipes; returns it and the read ends."""
    r_out, w_out = os.pipe()
    r_err, w_err = os.pipe() if stderr else (None, None)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=w_out, stderr=w_err if stderr else None)
    os.close(w_out)
    if w_err is not None:
        os.close(w_err)
    return proc, r_out, r_err


async def wait_for(predicate: Callable[[], Any], within_s: float = 20.0) -> Any:
    deadline = time.monotonic() + within_s
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def all_lines(svc: LogbusService, *services: str, **kw: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        res = await svc.query(Query(services, cursor=cursor, limit=kw.pop("limit", 1000), **kw))
        out += res.lines
        if res.next_cursor is None:
            return out
        cursor = decode_cursor(res.next_cursor)


async def count_lines(svc: LogbusService, service: str) -> int:
    await svc.flush()
    return sum(s["lines"] for s in await svc.services() if s["service"] == service)


async def test_child_stdout_and_stderr_are_captured_with_streams(make: Factory) -> None:
    svc = await make()
    proc, r_out, r_err = spawn(
        "import sys\n"
        "for i in range(200):\n"
        "    print('out', i, flush=i % 7 == 0)\n"
        "    print('err', i, file=sys.stderr)\n"
        "print('no newline at the end', end='')\n",
        stderr=True,
    )
    svc.attach("web", "web-1", "stdout", r_out)
    assert r_err is not None
    svc.attach("web", "web-1", "stderr", r_err)
    await asyncio.to_thread(proc.wait)
    await wait_for(lambda: _at_least(svc, "web", 401))
    out = await all_lines(svc, "web", streams=frozenset({"stdout"}))
    err = await all_lines(svc, "web", streams=frozenset({"stderr"}))
    assert [x["text"] for x in out] == [f"out {i}" for i in range(200)] + ["no newline at the end"]
    assert [x["text"] for x in err] == [f"err {i}" for i in range(200)]
    assert {x["instance"] for x in out + err} == {"web-1"}
    stamps = [x["ts"] for x in await all_lines(svc, "web")]
    assert stamps == sorted(stamps)


async def _at_least(svc: LogbusService, service: str, n: int) -> bool:
    return await count_lines(svc, service) >= n


async def test_invalid_utf8_binary_garbage_and_a_1mb_line_survive(make: Factory) -> None:
    svc = await make(max_line_bytes=16384)
    proc, r, _ = spawn(
        "import sys\n"
        "w = sys.stdout.buffer\n"
        "w.write(b'bad \\xff\\xfe\\xc3 utf8\\n')\n"
        "w.write(bytes(range(256)).replace(b'\\n', b'') + b'\\n')\n"
        "w.write(b'A' * 1048576 + b'\\n')\n"
        "w.write(b'after\\n')\n"
    )
    svc.attach("bin", "b-1", "stdout", r)
    await asyncio.to_thread(proc.wait)
    await wait_for(lambda: _has_text(svc, "bin", "after"))
    lines = await all_lines(svc, "bin")
    assert lines[0]["text"] == "bad \ufffd\ufffd\ufffd utf8"
    assert "\ufffd" in lines[1]["text"] and lines[1]["text"].startswith("\x00\x01")
    big = lines[2:-1]
    assert len(big) == 64  # 1 MiB in 16 KiB pieces
    assert all(x.get("continued") for x in big[:-1]) and not big[-1].get("continued")
    assert "".join(x["text"] for x in big) == "A" * 1048576
    assert lines[-1]["text"] == "after"
    raw = b"".join((svc.dir / "bin" / n).read_bytes() for n in sorted(os.listdir(svc.dir / "bin")))
    assert b"bad \xff\xfe\xc3 utf8" in raw  # stored as written, not re-encoded


async def _has_text(svc: LogbusService, service: str, text: str) -> bool:
    await svc.flush()
    res = await svc.query(Query((service,), keyword=text, limit=1))
    return bool(res.lines)


async def test_time_range_is_exact_across_day_and_size_rolls(make: Factory) -> None:
    # 2026-11-22 23:55:00 UTC; one line every 2 s for 10 minutes crosses midnight; small files force size rolls.
    clock = ManualClock(1_795_391_700.0)
    svc = await make(clock=clock, max_file_bytes=2048, block_bytes=300)
    stamps = []
    for i in range(300):
        svc.append("app", "a-1", "stdout", f"line {i:04d} {'x' * (i % 13)}\n".encode())
        stamps.append(clock.now())
        clock.advance(2.0)
        if i % 50 == 0:
            await svc.flush()
    await svc.flush()
    names = sorted(os.listdir(svc.dir / "app"))
    days = {n[:8] for n in names}
    assert days == {"20261122", "20261123"}, names
    assert any(n.startswith("20261122.") and n != "20261122.log" for n in names), names  # size-rolled
    for a, b in [(0, 300), (10, 11), (140, 160), (149, 151), (1, 299), (299, 300)]:
        lo, hi = stamps[a], stamps[b] if b < len(stamps) else stamps[-1] + 1
        got = await all_lines(svc, "app", from_ts=lo, to_ts=hi)
        assert [x["text"].split()[1] for x in got] == [f"{i:04d}" for i in range(a, b)], (a, b)
    # Bounds between lines, and the half-open upper bound.
    got = await all_lines(svc, "app", from_ts=stamps[100] + 0.5, to_ts=stamps[103])
    assert [x["text"].split()[1] for x in got] == ["0101", "0102"]
    assert [x["ts"] for x in got] == [iso(stamps[101]), iso(stamps[102])]
    assert await all_lines(svc, "app", from_ts=stamps[-1] + 1) == []


async def test_cursor_paging_returns_every_line_once_across_files(make: Factory) -> None:
    clock = ManualClock(1_795_391_700.0)
    svc = await make(clock=clock, max_file_bytes=4096, block_bytes=500)
    for i in range(1000):
        svc.append("pg", "p", "stdout", f"row {i}\n".encode())
        clock.advance(0.5)
    await svc.flush()
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        res = await svc.query(Query(("pg",), limit=97, cursor=cursor))
        seen += [x["text"] for x in res.lines]
        pages += 1
        if res.next_cursor is None:
            break
        cursor = decode_cursor(res.next_cursor)
    assert seen == [f"row {i}" for i in range(1000)]
    assert pages == 11


async def test_keyword_regex_and_multi_service_merge(make: Factory) -> None:
    clock = ManualClock(1_795_391_700.0)
    svc = await make(clock=clock)
    for i in range(100):
        svc.append("api", "x", "stdout", f"api request {i} status={500 if i % 10 == 0 else 200}\n".encode())
        clock.advance(1)
        svc.append("db", "y", "stderr", f"db query {i} took {i}ms\n".encode())
        clock.advance(1)
    await svc.flush()
    errors = await all_lines(svc, "api", "db", keyword="STATUS=500")
    assert [x["text"] for x in errors] == [f"api request {i} status=500" for i in range(0, 100, 10)]
    slow = await all_lines(svc, "api", "db", regex=r"took 9\dms$")
    assert [x["text"] for x in slow] == [f"db query {i} took {i}ms" for i in range(90, 100)]
    merged = await all_lines(svc, "api", "db", limit=7)
    assert [x["service"] for x in merged[:4]] == ["api", "db", "api", "db"]
    assert len(merged) == 200
    last = await svc.query(Query(("api", "db"), tail=True, limit=3))
    assert [x["text"] for x in last.lines] == [
        "db query 98 took 98ms",
        "api request 99 status=200",
        "db query 99 took 99ms",
    ]


async def test_retention_deletes_oldest_files_and_their_index_rows(make: Factory) -> None:
    day = 86400.0
    clock = ManualClock(1_795_391_700.0 - 20 * day)
    svc = await make(clock=clock, max_age_s="14d", max_total_bytes=10**9, retention_interval_s="1000d")
    for d in range(20):
        for i in range(10):
            svc.append("old", "o", "stdout", f"day {d} line {i}\n".encode())
        await svc.flush()
        clock.advance(day)
    assert len(os.listdir(svc.dir / "old")) == 20
    removed = await svc.run_retention()
    assert len(removed) == 6  # days 0..5 are older than 14 days now
    names = sorted(os.listdir(svc.dir / "old"))
    assert len(names) == 14 and all(f"old/{n}" not in removed for n in names)
    reader = IndexReader(svc.dir / "index.db", svc.dir)
    try:
        assert len(reader.files("old")) == 14
        blocks = reader.blocks("old", None, None)
        assert {b.path.name for b in blocks} == set(names)
    finally:
        reader.close()
    lines = await all_lines(svc, "old")
    assert lines[0]["text"] == "day 6 line 0" and len(lines) == 140


async def test_retention_by_total_size_keeps_the_newest(make: Factory) -> None:
    clock = ManualClock(1_795_391_700.0)
    svc = await make(clock=clock, max_file_bytes=1024, max_total_bytes=5000, retention_interval_s="1000d")
    for i in range(200):
        svc.append("big", "b", "stdout", f"{i:05d} {'z' * 40}\n".encode())
        clock.advance(1)
    await svc.flush()
    removed = await svc.run_retention()
    assert removed
    left = sum((svc.dir / "big" / n).stat().st_size for n in os.listdir(svc.dir / "big"))
    assert left <= 5000
    lines = await all_lines(svc, "big")
    assert lines[-1]["text"].startswith("00199")
    svc.append("big", "b", "stdout", b"still writing after the current file went\n")
    await wait_for(lambda: _has_text(svc, "big", "still writing"))


async def test_a_flooding_child_is_not_slowed(make: Factory) -> None:
    svc = await make()
    total_mb = 24
    code = (
        "import sys, time\n"
        "line = b'x' * 99 + b'\\n'\n"
        "chunk = line * 655\n"  # ~64 KiB
        f"n = {total_mb} * 1024 * 1024 // len(chunk)\n"
        "t = time.perf_counter()\n"
        "w = sys.stdout.buffer\n"
        "for _ in range(n):\n"
        "    w.write(chunk)\n"
        "w.flush()\n"
        "sys.stderr.write(str(time.perf_counter() - t))\n"
    )

    def run(consume: Callable[[int], None]) -> float:
        r, w = os.pipe()
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=w, stderr=subprocess.PIPE)
        os.close(w)
        consume(r)
        _, err = proc.communicate(timeout=60)
        return float(err)

    def drain(r: int) -> None:  # the fastest possible reader: the reference
        def loop() -> None:
            while os.read(r, 1 << 20):
                pass
            os.close(r)

        threading.Thread(target=loop, daemon=True).start()

    baseline = min([await asyncio.to_thread(run, drain), await asyncio.to_thread(run, drain)])
    pumped = await asyncio.to_thread(run, lambda r: svc.attach("flood", "f", "stdout", r))
    expected = (total_mb * 1024 * 1024 // (100 * 655)) * 655
    await wait_for(lambda: _at_least(svc, "flood", expected), within_s=60)
    # The child's own write loop, with the pump reading, stays within a bound of the bare-drain run.
    print(f"child write time: {pumped:.3f} s pumped, {baseline:.3f} s bare drain")
    assert pumped <= baseline * 4 + 2.0, (pumped, baseline)


async def test_a_stalled_disk_drops_lines_with_a_marker_never_blocking_the_child(make: Factory) -> None:
    svc = await make(buffer_bytes=65536)
    svc.writer.pause()  # stands in for a disk that stopped answering
    proc, r, _ = spawn("import sys\nfor i in range(50000):\n    sys.stdout.write(f'line {i}\\n')\n")
    svc.attach("stall", "s", "stdout", r)
    # The child finishes although nothing is being written: the pump keeps draining its pipe.
    await asyncio.to_thread(proc.wait, 30)
    await wait_for(lambda: _no_pumps(svc))
    svc.writer.resume()
    await svc.flush()
    lines = await all_lines(svc, "stall")
    markers = [x for x in lines if x["stream"] == "logbus"]
    assert markers and "dropped" in markers[0]["text"]
    dropped = sum(int(x["text"].split("dropped ")[1].split()[0]) for x in markers)
    kept = [x for x in lines if x["stream"] == "stdout"]
    assert dropped > 0 and len(kept) + dropped == 50000
    # What was kept is the child's lines in order from its first (how many per pipe read depends on timing).
    numbers = [int(x["text"].split()[1]) for x in kept]
    assert numbers[0] == 0 and numbers == sorted(set(numbers)), numbers[:10]


async def _no_pumps(svc: LogbusService) -> bool:
    return svc.pumps.attached == 0


async def test_access_log_entries_are_json_lines(make: Factory) -> None:
    svc = await make()
    lines = [
        json.dumps(
            {
                "at": time.time(),
                "host": "example.com",
                "method": "GET",
                "path": f"/p/{i}",
                "status": 200,
                "request_id": f"r{i}",
            },
            separators=(",", ":"),
        )
        + "\n"
        for i in range(20000)
    ]
    t = time.perf_counter()
    for i in range(0, len(lines), 512):  # in the gate's batches
        svc.record_lines(lines[i : i + 512], time.time())
    per_line = (time.perf_counter() - t) / 20000
    assert per_line < 250e-6, per_line  # no I/O on the proxy's path (generous: loaded CI machines)
    await wait_for(lambda: _at_least(svc, "gate-access", 20000))
    hit = await all_lines(svc, "gate-access", keyword='"path":"/p/12345"')
    assert len(hit) == 1
    entry = json.loads(hit[0]["text"])
    assert entry["request_id"] == "r12345" and entry["status"] == 200 and entry["host"] == "example.com"


async def test_index_is_rebuilt_from_the_files_after_loss(make: Factory, tmp_path: Path) -> None:
    svc = await make(name="logs", max_file_bytes=1024)
    for i in range(500):
        svc.append("keep", "k", "stdout", f"kept {i}\n".encode())
        if i % 10 == 0:
            await svc.flush()
    await svc.flush()
    await svc.stop(10)
    names = os.listdir(tmp_path / "logs" / "keep")
    assert len(names) > 11  # so `.10.log` sorts before `.2.log` as text: the rebuild must not
    for p in (tmp_path / "logs").glob("index.db*"):
        p.unlink()
    newest = max(names, key=lambda n: int(n.split(".")[1]) if n.count(".") == 2 else 0)
    with open(tmp_path / "logs" / "keep" / newest, "ab") as f:
        f.write(b"2099-01-01T00:00:00.000000Z out k torn last line without newline")
    svc2 = await make(name="logs", max_file_bytes=1024)
    lines = await all_lines(svc2, "keep")
    assert [x["text"] for x in lines[:-1]] == [f"kept {i}" for i in range(500)]
    assert lines[-1]["text"] == "torn last line without newline"
    svc2.append("keep", "k", "stdout", b"after restart\n")
    await svc2.flush()
    assert (await all_lines(svc2, "keep"))[-1]["text"] == "after restart"


async def test_live_subscription_and_slow_subscriber_skips_ahead(make: Factory) -> None:
    svc = await make(tail_buffer_bytes=4096)
    sub = svc.subscribe("live")
    try:
        t = time.monotonic()
        svc.append("live", "l", "stdout", b"hello live\n")
        items = await sub.get(5)
        assert time.monotonic() - t < 1.0
        assert isinstance(items[0], Batch) and b"hello live" in items[0].data
        for i in range(200):  # nobody reads: the subscriber's budget overflows
            svc.append("live", "l", "stdout", f"burst {i} {'y' * 60}\n".encode())
            if i % 20 == 0:
                await svc.flush()
        await svc.flush()
        await asyncio.sleep(0)  # let the posted batches land
        items = await sub.get(5)
        assert isinstance(items[0], Skipped) and items[0].lines > 0
        got = sum(i.data.count(b"\n") for i in items if isinstance(i, Batch))
        assert got + sum(i.lines for i in items if isinstance(i, Skipped)) == 200
    finally:
        sub.close()


async def test_a_failing_disk_loses_lines_with_a_marker_and_the_writer_survives(make: Factory) -> None:
    import resource
    import signal

    svc = await make(max_file_bytes=10**9)
    for i in range(10):
        svc.append("full", "f", "stdout", f"before {i}\n".encode())
    await svc.flush()
    size = (svc.dir / "full" / os.listdir(svc.dir / "full")[0]).stat().st_size
    # A file size limit stands in for a full disk: writes past it fail with EFBIG (Python ignores SIGXFSZ).
    assert signal.getsignal(signal.SIGXFSZ) == signal.SIG_IGN
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 4096, hard))
    try:
        for i in range(50):
            svc.append("full", "f", "stdout", f"during {i} {'x' * 200}\n".encode())
            if i % 5 == 0:
                await svc.flush()
        await svc.flush()
        assert svc.writer.write_errors > 0
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    svc.append("full", "f", "stdout", b"after\n")
    await svc.flush()
    lines = [x["text"] for x in await all_lines(svc, "full")]
    assert lines[:10] == [f"before {i}" for i in range(10)]
    assert lines[-1] == "after"
    marker = [t for t in lines if t.startswith("logbus: lost")]
    assert len(marker) == 1 and "cannot write" in marker[0]
    lost = int(marker[0].split()[2])
    during = [t for t in lines if t.startswith("during")]
    assert len(during) + lost == 50
    assert svc.writer.failed is None


async def test_download_is_exactly_the_window_and_bad_names_are_refused(make: Factory) -> None:
    clock = ManualClock(1_795_391_700.0)
    svc = await make(clock=clock, max_file_bytes=1024, block_bytes=256)
    stamps = []
    for i in range(100):
        svc.append("dl", "d", "stderr", f"entry {i}\n".encode())
        stamps.append(clock.now())
        clock.advance(7.0)  # crosses midnight
    await svc.flush()
    body = b"".join([piece async for piece in svc.download("dl", stamps[20], stamps[80])])
    lines = body.decode().splitlines()
    assert [x.split()[-1] for x in lines] == [str(i) for i in range(20, 80)]
    assert lines[0].startswith(iso(stamps[20]) + " err d entry")
    r, w = os.pipe()
    os.close(w)
    with pytest.raises(ValueError, match="not a valid service name"):
        svc.attach("../etc", "x", "stdout", r)
    with pytest.raises(OSError):
        os.close(r)  # logbus closed it: the fd was handed over either way


async def test_a_scan_budget_pages_through_every_match_once(make: Factory) -> None:
    clock = ManualClock(1_795_391_700.0)
    svc = await make(clock=clock, block_bytes=2048, max_file_bytes=20_000)
    for i in range(3000):
        svc.append("a" if i % 2 else "b", "x", "stdout", f"{i} {'NEEDLE' if i % 97 == 0 else 'hay'}\n".encode())
        clock.advance(1)
    await svc.flush()
    found: list[str] = []
    cursor = None
    pages = 0
    while True:
        res = await svc.query(Query(("a", "b"), keyword="needle", limit=1000, cursor=cursor, max_scan_bytes=8192))
        found += [x["text"] for x in res.lines]
        pages += 1
        if res.next_cursor is None:
            break
        cursor = decode_cursor(res.next_cursor)
    assert found == [f"{i} NEEDLE" for i in range(0, 3000, 97)]
    assert pages > 5  # the budget really cut the scans short


def _echo_child(stdin: int, stdout: int) -> subprocess.Popen[bytes]:
    code = "import sys\nfor line in sys.stdin:\n    print('echo', line.strip(), 'x' * 60, flush=True)"
    return subprocess.Popen([sys.executable, "-c", code], stdin=stdin, stdout=stdout)


async def test_a_real_child_across_midnight_and_size_rolls_gives_exact_windows(make: Factory) -> None:
    # The pump stamps lines when it reads them; the test's clock moves 20 minutes between lines.
    clock = ManualClock(1_795_388_400.0)  # 2026-11-22 23:00:00 UTC
    svc = await make(clock=clock, max_file_bytes=1024, block_bytes=256)
    r_in, w_in = os.pipe()
    r_out, w_out = os.pipe()
    proc = _echo_child(r_in, w_out)
    os.close(r_in)
    os.close(w_out)
    svc.attach("echo", "e-1", "stdout", r_out)
    stamps = []
    try:
        for i in range(20):
            os.write(w_in, f"{i}\n".encode())
            await wait_for(lambda n=i + 1: _at_least(svc, "echo", n))
            stamps.append(clock.now())
            clock.advance(1200)
    finally:
        os.close(w_in)
        await asyncio.to_thread(proc.wait, 10)
    names = sorted(os.listdir(svc.dir / "echo"))
    assert {n[:8] for n in names} == {"20261122", "20261123"} and len(names) > 2, names
    for a, b in [(0, 20), (2, 9), (5, 6), (10, 19)]:
        got = await all_lines(svc, "echo", from_ts=stamps[a], to_ts=stamps[b] if b < 20 else stamps[-1] + 1)
        assert [x["text"].split()[1] for x in got] == [str(i) for i in range(a, b)], (a, b)


async def test_a_tail_query_under_a_scan_budget_is_partial_not_endless(make: Factory) -> None:
    svc = await make(block_bytes=1024)
    for i in range(2000):
        svc.append("t", "x", "stdout", f"{i} {'RARE' if i == 5 else 'common'}\n".encode())
    await svc.flush()
    full = await svc.query(Query(("t",), keyword="rare", tail=True, limit=10))
    assert [x["text"] for x in full.lines] == ["5 RARE"] and not full.stopped_at
    cut = await svc.query(Query(("t",), keyword="rare", tail=True, limit=10, max_scan_bytes=4096))
    assert cut.lines == [] and cut.stopped_at and cut.scanned_bytes < 8192


async def test_chunk_records_page_window_and_filter_exactly(make: Factory) -> None:
    # Multi-line appends are stored as chunk records (one header per append), cut at block boundaries
    # and rolled by size and day; every query must still see each line exactly once, in order.
    clock = ManualClock(1_795_391_700.0)  # 2026-11-22 23:55:00 UTC
    svc = await make(clock=clock, max_file_bytes=4096, block_bytes=300)
    stamps: list[float] = []
    n = 0
    for i in range(120):
        stream = "stderr" if i % 5 == 0 else "stdout"
        batch = [f"{stream[3:]} {n + k:05d} {'@x' if k == 1 else ''}{'y' * (k * 7)}" for k in range(7)]
        svc.append("ch", "c-1", stream, ("\n".join(batch) + "\n").encode())  # type: ignore[arg-type]
        stamps += [clock.now()] * 7
        n += 7
        clock.advance(5.0)
        if i % 40 == 0:
            await svc.flush()
    await svc.flush()
    names = sorted(os.listdir(svc.dir / "ch"))
    assert {x[:8] for x in names} == {"20261122", "20261123"} and len(names) > 4, names
    assert (svc.dir / "ch" / names[0]).read_bytes().startswith(b"@")  # really chunk records
    texts = [x["text"].split()[1] for x in await all_lines(svc, "ch", limit=13)]  # pages end mid-chunk
    assert texts == [f"{i:05d}" for i in range(n)]
    for a, b in [(0, n), (7, 14), (100, 433), (3, 4), (n - 7, n)]:
        got = await all_lines(svc, "ch", from_ts=stamps[a], to_ts=stamps[b] if b < n else stamps[-1] + 1, limit=11)
        want = [i for i in range(n) if stamps[a] <= stamps[i] < (stamps[b] if b < n else stamps[-1] + 1)]
        assert [int(x["text"].split()[1]) for x in got] == want, (a, b)
    err = await all_lines(svc, "ch", streams=frozenset({"stderr"}), limit=50)
    assert len(err) == 24 * 7 and {x["stream"] for x in err} == {"stderr"}
    assert all(x["text"].startswith("err") for x in err)
    hits = await all_lines(svc, "ch", keyword="@X", streams=frozenset({"stdout"}), limit=5)
    assert [x["text"].split()[1] for x in hits] == [f"{i * 7 + 1:05d}" for i in range(120) if i % 5]
    budget = await all_lines(svc, "ch", keyword="y" * 42, max_scan_bytes=512, limit=3)  # many short scans
    assert [x["text"].split()[1] for x in budget] == [f"{i * 7 + 6:05d}" for i in range(120)]
    rx = await all_lines(svc, "ch", regex=r"^err \d+ y{14}$")
    assert [x["text"].split()[1] for x in rx] == [f"{i * 7 + 2:05d}" for i in range(0, 120, 5)]
    last = await svc.query(Query(("ch",), tail=True, limit=3))
    assert [x["text"].split()[1] for x in last.lines] == [f"{i:05d}" for i in range(n - 3, n)]
    assert last.lines[-1]["ts"] == iso(stamps[-1]) and last.lines[-1]["instance"] == "c-1"
    body = b"".join([p async for p in svc.download("ch", stamps[14], stamps[21])]).decode().splitlines()
    assert [x.split()[4] for x in body] == [f"{i:05d}" for i in range(14, 21)]
    assert body[0].startswith(iso(stamps[14]) + " out c-1 out 00014")


async def test_tail_batches_of_chunks_come_as_line_records(make: Factory) -> None:
    svc = await make()
    sub = svc.subscribe("tl")
    try:
        svc.append("tl", "t", "stdout", b"first\nsecond\nthird\n")
        items = await sub.get(5)
        assert len(items) == 1 and isinstance(items[0], Batch)
        batch = items[0]
        assert [parse_record(x).text for x in batch.data.splitlines()] == ["first", "second", "third"]
        size = sum((svc.dir / "tl" / x).stat().st_size for x in os.listdir(svc.dir / "tl"))
        assert (batch.start, batch.end) == (0, size) and len(batch.data) > size
    finally:
        sub.close()


async def test_a_torn_chunk_is_mended_at_start(make: Factory, tmp_path: Path) -> None:
    svc = await make(name="torn")
    svc.append("tc", "t", "stdout", b"".join(b"line %d\n" % i for i in range(10)))
    await svc.flush()
    await svc.stop(10)
    path = tmp_path / "torn" / "tc" / os.listdir(tmp_path / "torn" / "tc")[0]
    # The process died in the middle of writing the next chunk: its header and part of its lines.
    header = b"@" + iso(time.time()).encode() + b" err t 600\n"
    with open(path, "ab") as f:
        f.write(header + b"late 1\nlate 2\nla")
    svc2 = await make(name="torn")
    texts = [(x["stream"], x["text"]) for x in await all_lines(svc2, "tc")]
    assert texts == [("stdout", f"line {i}") for i in range(10)] + [
        ("stderr", "late 1"),
        ("stderr", "late 2"),
        ("stderr", "la"),
    ]
    svc2.append("tc", "t", "stdout", b"after 1\nafter 2\n")
    await svc2.flush()
    assert [x["text"] for x in await all_lines(svc2, "tc")][-3:] == ["la", "after 1", "after 2"]
    await svc2.stop(10)
    for p in (tmp_path / "torn").glob("index.db*"):  # and the mended file indexes the same from scratch
        p.unlink()
    svc3 = await make(name="torn")
    assert len(await all_lines(svc3, "tc")) == 15


async def test_an_index_of_the_previous_release_is_taken_over_and_a_newer_one_refused(
    make: Factory, tmp_path: Path
) -> None:
    import sqlite3

    from core.errors import StartupError
    from logbus.index import SCHEMA_VERSION

    svc = await make(name="v1")
    for i in range(5):
        svc.append("old", "o", "stdout", f"single {i}\n".encode())
    await svc.flush()
    await svc.stop(10)
    db = tmp_path / "v1" / "index.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA user_version=1")
    svc2 = await make(name="v1")
    assert [x["text"] for x in await all_lines(svc2, "old")] == [f"single {i}" for i in range(5)]
    await svc2.stop(10)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(StartupError, match="newer release"):
        await make(name="v1")


async def test_a_result_byte_budget_pages_long_lines_and_loses_none(make: Factory) -> None:
    # 10,000 lines of 16 KiB in one page would be a 160 MB response built on the loop: pages stop at the budget
    svc = await make(max_line_bytes=4096)
    for i in range(300):
        svc.append("big", "x", "stdout", f"{i:04d} {'z' * 1000}\n".encode())
        svc.append("small", "x", "stdout", f"{i:04d} s\n".encode())
    await svc.flush()
    for services in (("big",), ("big", "small")):
        got: list[str] = []
        cursor, pages = None, 0
        while True:
            res = await svc.query(Query(services, cursor=cursor, limit=10_000, max_result_bytes=20_000))
            assert sum(len(x["text"]) for x in res.lines) <= 20_000 + 1006
            got += [x["text"][:4] + x["service"] for x in res.lines]
            pages += 1
            if res.next_cursor is None:
                break
            cursor = decode_cursor(res.next_cursor)
        assert sorted(got) == sorted(f"{i:04d}{s}" for i in range(300) for s in services)  # each line once
        assert pages >= 15, pages
    # a single line larger than the budget still comes (one per page), and tail keeps the newest that fit
    one = await svc.query(Query(("big",), limit=10, max_result_bytes=10))
    assert [x["text"][:4] for x in one.lines] == ["0000"] and one.next_cursor
    tail = await svc.query(Query(("big",), tail=True, limit=100, max_result_bytes=5_000))
    assert [x["text"][:4] for x in tail.lines] == ["0296", "0297", "0298", "0299"]
