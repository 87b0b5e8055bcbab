"""Profiling helpers shared by the gate benchmarks: a py-spy recording of a process under load, its
summary, and per-thread CPU and wake-up counts from `/proc/PID/task/*` (what each thread costs the core).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def pyspy() -> str | None:
    """The py-spy binary: on PATH, in this venv, or the shared copy in /tmp/perf-pyspy; None if absent."""
    for cand in (shutil.which("py-spy"), str(Path(sys.executable).parent / "py-spy"), "/tmp/perf-pyspy/bin/py-spy"):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def record(pid: int, out: Path, seconds: float, *, rate: int = 200, threads: bool = False) -> subprocess.Popen[bytes]:
    """Start `py-spy record` on `pid` for `seconds` into `out` (raw format); the caller waits for it."""
    exe = pyspy()
    if exe is None:
        raise RuntimeError("py-spy not found (pip install py-spy into the venv)")
    cmd = [exe, "record", "-p", str(pid), "-o", str(out), "-f", "raw", "-d", str(max(1, int(seconds))), "-r", str(rate)]
    if threads:
        cmd.append("--threads")
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize(path: Path, top: int = 12) -> str:
    """Where the samples went (py-spy raw format: `frame;frame;... count`): self and inclusive shares."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    n_all = 0
    for line in path.read_text().splitlines():
        stack, _, n_s = line.rpartition(" ")
        n = int(n_s)
        n_all += n
        frames = [f.split(" (")[0] for f in stack.split(";")]
        own[frames[-1]] += n
        for f in set(frames):
            total[f] += n
    n_all = max(1, n_all)
    return (
        f"py-spy profile under load ({n_all} samples, raw file {path}):\n"
        + "  self time:      "
        + ", ".join(f"{f} {c / n_all:.0%}" for f, c in own.most_common(top))
        + "\n  inclusive time: "
        + ", ".join(f"{f} {c / n_all:.0%}" for f, c in total.most_common(top + 5) if c < n_all)
    )


@dataclass
class ThreadStat:
    name: str
    ticks: int  # user + system, in clock ticks
    voluntary: int  # context switches: the thread slept (waited) and was woken
    involuntary: int  # preempted


def threads(pid: int) -> dict[int, ThreadStat]:
    """Every thread's CPU ticks and context switches now (threads that exit meanwhile are skipped)."""
    out: dict[int, ThreadStat] = {}
    for tid_s in os.listdir(f"/proc/{pid}/task"):
        base = f"/proc/{pid}/task/{tid_s}"
        try:
            with open(f"{base}/stat") as f:
                stat = f.read()
            with open(f"{base}/status") as f:
                status = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(tid_s)] = ThreadStat(
            name,
            int(fields[11]) + int(fields[12]),
            int(status["voluntary_ctxt_switches"]),
            int(status["nonvoluntary_ctxt_switches"]),
        )
    return out


def thread_delta(
    before: dict[int, ThreadStat], after: dict[int, ThreadStat], seconds: float, names: dict[int, str] | None = None
) -> list[str]:
    """One line per thread that ran or woke: CPU ms, share of the process's CPU, wake-ups per second
    (`names`: Python's thread names by id, from `thread_names`)."""
    rows = []
    total = sum(a.ticks - before.get(t, ThreadStat(a.name, 0, 0, 0)).ticks for t, a in after.items()) or 1
    for tid, a in after.items():
        b = before.get(tid, ThreadStat(a.name, 0, 0, 0))
        ticks, vol, invol = a.ticks - b.ticks, a.voluntary - b.voluntary, a.involuntary - b.involuntary
        if ticks or vol:
            rows.append((ticks, vol, invol, tid, a.name))
    rows.sort(reverse=True)
    return [
        f"  {(names or {}).get(tid, name)[:24]:24} tid {tid:>7}: CPU {ticks * 1000 / TICK:>7.0f} ms "
        f"({ticks / total:>4.0%}), wake-ups {vol / seconds:>8.1f}/s, preempted {invol / seconds:>7.1f}/s"
        for ticks, vol, invol, tid, name in rows
    ]


def thread_names(pid: int) -> dict[int, str]:
    """Python's names of the process's threads (`py-spy dump`: Python does not name OS threads); {} without
    py-spy."""
    exe = pyspy()
    if exe is None:
        return {}
    out = subprocess.run([exe, "dump", "-p", str(pid)], capture_output=True, text=True, timeout=60).stdout
    names = {}
    for line in out.splitlines():
        if line.startswith("Thread ") and '"' in line:
            tid = line.split()[1]
            names[int(tid, 16) if tid.startswith("0x") else int(tid)] = line.split('"')[1]
    return names
