"""Logbus benchmarks, each beside a reference measured in the same run:

1. ingest: a child writing log lines as fast as it can into a pumped pipe (until written and indexed),
   vs the same child piped into `cat > file`;
2. time-range query: one minute out of ~1 GB spread over a day, via the block index (goal < 50 ms);
3. keyword search over the same ~1 GB (case-insensitive), vs `grep -c -i` on the same files.

Run: `make bench-logbus` (or `.venv/bin/python bench/bench_logbus.py --gb 0.25` for a quicker pass).
Load is local files and pipes only; everything lives in a temp dir removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.clock import ManualClock
from logbus.config import LogbusConfig
from logbus.search import Query, decode_cursor
from logbus.service import LogbusService

MB = 1024 * 1024
CHILD = r"""
import sys, random
random.seed(7)
paths = ["/api/items", "/api/users", "/login", "/static/app.js", "/healthz"]
pad = "q" * int(sys.argv[2])
lines = [f"{random.choice(['GET','POST'])} {random.choice(paths)}/{random.randrange(10**6)} "
         f"{random.choice([200,200,200,404,500])} {random.random()*50:.1f}ms user={random.randrange(1000)}{pad}\n"
         for _ in range(5000)]
block = "".join(lines).encode()
total = int(sys.argv[1])
w = sys.stdout.buffer
sent = 0
while sent < total:
    w.write(block)
    sent += len(block)
w.flush()
"""


def child_lines(script: Path, total: int, pad: int) -> tuple[int, int]:
    """Bytes and lines the child writes for `total`."""
    out = subprocess.run([sys.executable, str(script), "1", str(pad)], capture_output=True).stdout
    per_block_bytes, per_block_lines = len(out), out.count(b"\n")
    blocks = -(-total // per_block_bytes)
    return blocks * per_block_bytes, blocks * per_block_lines


def cat_reference(script: Path, total: int, pad: int, out: Path) -> float:
    """The same stream straight into a file through `cat`: the pipe's and the disk's own ceiling."""
    t = time.perf_counter()
    subprocess.run(f"{sys.executable} {script} {total} {pad} | cat > {out}", shell=True, check=True)
    took = time.perf_counter() - t
    out.unlink()
    return took


def start_child(script: Path, total: int, pad: int, stdout: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(script), str(total), str(pad)], stdout=stdout)


async def bench_ingest(tmp: Path, total: int, pad: int) -> dict[str, float]:
    script = tmp / "child.py"
    script.write_text(CHILD)
    nbytes, nlines = child_lines(script, total, pad)
    cat_s = cat_reference(script, total, pad, tmp / "cat.out")  # paired with the run below, same conditions

    svc = LogbusService(tmp / "ingest", LogbusConfig(buffer_bytes=256 * MB))
    await svc.start()
    try:
        r, w = os.pipe()
        t = time.perf_counter()
        proc = start_child(script, total, pad, w)
        os.close(w)
        svc.attach("flood", "f-1", "stdout", r)
        await asyncio.to_thread(proc.wait)
        child_s = time.perf_counter() - t
        while True:
            await svc.flush()
            stored = sum(s["lines"] for s in await svc.services())
            if stored >= nlines or (svc.pumps.attached == 0 and not svc.intake.pending_bytes):
                break
            await asyncio.sleep(0.05)
        await svc.flush()
        logbus_s = time.perf_counter() - t
        stored = sum(s["lines"] for s in await svc.services())
        stored_bytes = sum(s["bytes"] for s in await svc.services())
    finally:
        await svc.stop(30)
    shutil.rmtree(tmp / "ingest")
    return {
        "bytes": nbytes,
        "lines": nlines,
        "stored_lines": stored,
        "cat_s": cat_s,
        "logbus_s": logbus_s,
        "child_s": child_s,
        "stored_bytes": stored_bytes,
    }


async def build_corpus(root: Path, total: int) -> tuple[LogbusService, float, float]:
    """~`total` bytes for service `web`, timestamps spread evenly over one day."""
    start = 1_795_300_000.0
    clock = ManualClock(start)
    svc = LogbusService(
        root, LogbusConfig(buffer_bytes=256 * MB, max_total_bytes=100 * 1024**3, retention_interval_s="1000d"), clock
    )
    await svc.start()
    rnd = random.Random(11)
    words = ["GET", "POST", "/api/items", "/api/users", "200", "404", "500", "ok", "slow", "user", "cache", "db"]
    lines = []
    for i in range(20000):
        text = " ".join(rnd.choice(words) for _ in range(10)) + f" id={rnd.randrange(10**9)}"
        if i % 2000 == 0:
            text += " PANIC: worker crashed"
        lines.append(text.encode() + b"\n")
    chunk = b"".join(lines[:600])  # ~ 60 KB, one pipe read's worth
    # What one append costs on disk, measured on a scratch store, so the corpus is `total` bytes of files.
    probe = LogbusService(root.parent / "probe", LogbusConfig())
    await probe.start()
    for _ in range(4):
        probe.append("web", "web-1", "stdout", chunk)
    await probe.flush()
    per_append = probe.writer.bytes_written / 4
    await probe.stop(10)
    shutil.rmtree(root.parent / "probe")
    n_chunks = max(1, int(total // per_append))
    step = 86400.0 / n_chunks
    for i in range(n_chunks):
        j = (i * 600) % 19400
        svc.append("web", "web-1", "stdout", b"".join(lines[j : j + 600]))
        clock.advance(step)
        if svc.intake.pending_bytes > 128 * MB:
            await svc.flush()
    await svc.flush()
    return svc, start, start + n_chunks * step


def run(cmd: list[str]) -> tuple[float, str]:
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"}).stdout
    return time.perf_counter() - t, out


async def report_ingest(tmp: Path, total: int, pad: int, runs: int) -> None:
    shares = []
    for i in range(runs):
        ing = await bench_ingest(tmp, total, pad)
        raw_mb = ing["bytes"] / MB
        if i == 0:
            print(
                f"\n== ingest: child writes as fast as it can, {ing['bytes'] / ing['lines']:.0f}-byte lines "
                f"({runs} runs, each with its own cat reference)"
            )
            print(f"  stream: {raw_mb:.0f} MB, {ing['lines']:.0f} lines")
        shares.append(ing["cat_s"] / ing["logbus_s"])
        print(
            f"  run {i + 1}: cat > file (reference) {raw_mb / ing['cat_s']:7.1f} MB/s; "
            f"logbus (written+indexed) {raw_mb / ing['logbus_s']:7.1f} MB/s, "
            f"{ing['lines'] / ing['logbus_s'] / 1e6:5.2f} M lines/s = {shares[-1]:.0%} of cat; "
            f"stored {ing['stored_lines']:.0f} lines, {ing['stored_bytes'] / MB:.1f} MB "
            f"({ing['stored_bytes'] / ing['bytes'] - 1:+.2%}); child ran {ing['child_s']:.2f} s "
            f"(vs {ing['cat_s']:.2f} s into cat)"
        )
    print(f"  median share of cat: {statistics.median(shares):.0%} (min {min(shares):.0%}, max {max(shares):.0%})")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=1.0, help="size of the query corpus (default 1 GB)")
    ap.add_argument("--ingest-mb", type=int, default=300, help="bytes the ingest child writes (default 300 MB)")
    ap.add_argument("--ingest-runs", type=int, default=5, help="runs per line length (default 5)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-logbus-"))
    try:
        print(f"logbus benchmark ({os.cpu_count()} cores, temp dir {tmp})")
        for pad in (0, 120) if args.ingest_mb else ():
            await report_ingest(tmp, args.ingest_mb * MB, pad, args.ingest_runs)
        total = int(args.gb * 1024 * MB)
        t = time.perf_counter()
        svc, t0, t1 = await build_corpus(tmp / "corpus", total)
        files = sorted(str(p) for p in (tmp / "corpus" / "web").iterdir())
        size = sum(os.path.getsize(f) for f in files)
        print(
            f"\n== corpus: {size / MB:.0f} MB in {len(files)} files over 24 h "
            f"(built in {time.perf_counter() - t:.1f} s)"
        )
        try:
            rnd = random.Random(5)
            times, counts = [], []
            for _ in range(30):
                a = rnd.uniform(t0, t1 - 60)
                t = time.perf_counter()
                res = await svc.query(Query(("web",), a, a + 60, limit=10_000))
                times.append((time.perf_counter() - t) * 1000)
                counts.append(len(res.lines))
            page_times = []
            for _ in range(30):
                a = rnd.uniform(t0, t1 - 60)
                t = time.perf_counter()
                await svc.query(Query(("web",), a, a + 60, limit=500))
                page_times.append((time.perf_counter() - t) * 1000)
            print("\n== time-range query: 1 minute out of the whole corpus (30 random windows each)")
            for label, ts in (
                ("every line of the minute, as JSON-ready dicts", times),
                ("the API's default first page (500 lines)", page_times),
            ):
                ts.sort()
                print(
                    f"  {label}: median {statistics.median(ts):.1f} ms, p95 {ts[int(len(ts) * 0.95) - 1]:.1f} ms, "
                    f"max {ts[-1]:.1f} ms  (goal < 50 ms)"
                )
            print(f"  lines per minute ~{statistics.mean(counts):.0f}")

            print("\n== keyword search over the whole corpus, case-insensitive")
            grep_s, grep_out = run(["grep", "-c", "-i", "panic", *files])
            grep_n = sum(int(x.rsplit(":", 1)[1]) for x in grep_out.split())
            grep_cs_s, _ = run(["grep", "-c", "PANIC", *files])
            found, cursor, t = 0, None, time.perf_counter()
            while True:
                res = await svc.query(Query(("web",), keyword="panic", limit=10_000, cursor=cursor))
                found += len(res.lines)
                if res.next_cursor is None:
                    break
                cursor = decode_cursor(res.next_cursor)
            kw_s = time.perf_counter() - t
            t = time.perf_counter()
            rx = await svc.query(Query(("web",), regex=r"PANIC: \w+ crashed", limit=10_000))
            rx_s = time.perf_counter() - t
            mb = size / MB
            print(f"  grep -c -i panic (reference) {mb / grep_s:8.0f} MB/s  ({grep_s:.2f} s, {grep_n} lines)")
            print(f"  grep -c PANIC  (case-sens.)  {mb / grep_cs_s:8.0f} MB/s  ({grep_cs_s:.2f} s)")
            print(
                f"  logbus q=panic               {mb / kw_s:8.0f} MB/s  ({kw_s:.2f} s, {found} lines) "
                f"= {kw_s / grep_s:.2f}x grep -i's time"
            )
            print(
                f"  logbus regex                 {mb / rx_s:8.0f} MB/s  ({rx_s:.2f} s, {len(rx.lines)} lines, "
                "first page of 10000)"
            )
        finally:
            await svc.stop(30)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    asyncio.run(main())
