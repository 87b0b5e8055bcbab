"""Instructions per proxied HTTP/1.1 request through the gate, in process: deterministic, whatever the load.

Runs `bench_gate.micro` (a `ClientConnection` and a pooled `UpstreamConnection` on fake transports, a
wrk-like GET and an nginx-like response; no sockets) under `valgrind --tool=callgrind` twice, with `--small`
and `--large` requests, and prints (Ir(large) - Ir(small)) / (large - small): the per-request cost with the
start-up cost cancelled out. `--annotate` keeps the larger run's profile and prints callgrind_annotate's
top functions (inclusive) from it.

    .venv/bin/python bench/bench_gate_instr.py [--small 1000] [--large 6000] [--access-log] [--annotate]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def instructions(requests: int, access_log: bool, out: Path) -> int:
    """Total Ir of one callgrind run of `requests` micro requests (all threads)."""
    code = (
        "import sys; sys.path.insert(0, 'bench'); import bench_gate; "
        f"bench_gate.micro(requests={requests}, rounds=1, access_log={access_log})"
    )
    env = dict(os.environ, PYTHONHASHSEED="0")
    subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--dump-instr=no",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-c",
            code,
        ],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    text = out.read_text(errors="replace")
    m = re.search(r"^summary:\s+(\d+)", text, re.M) or re.search(r"^totals:\s+(\d+)", text, re.M)
    if m is None:
        raise SystemExit(f"no totals in {out}")
    return int(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", type=int, default=1000)
    ap.add_argument("--large", type=int, default=6000)
    ap.add_argument("--access-log", action="store_true", help="with a null access-log sink")
    ap.add_argument("--annotate", action="store_true", help="print the larger run's top functions")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gate-instr-") as tmp:
        small = instructions(args.small, args.access_log, Path(tmp) / "small.out")
        large = instructions(args.large, args.access_log, Path(tmp) / "large.out")
        per = (large - small) / (args.large - args.small)
        print(f"Ir small={small:,} large={large:,}  per request: {per:,.0f}")
        if args.annotate:
            report = subprocess.run(
                ["callgrind_annotate", "--inclusive=no", str(Path(tmp) / "large.out")],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            print("\n".join(report.splitlines()[:80]))


if __name__ == "__main__":
    main()
