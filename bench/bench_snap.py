"""Snap benchmark beside restic and borg, on the same generated data in the same run:

1. first backup: time and repository size;
2. second backup after changing ~1 % of the data (appends, an overwritten region, an insert in the
   middle of a large file);
3. full restore of the second snapshot into an empty directory (snap's restore is checked bit for bit).

Each tool runs as its own process, as a user runs it: snap through `snap.runner` (what the server
runs for a job), `restic` and `borg` with their defaults (restic: encrypted, zstd auto; borg:
`-e none`, lz4). Snap is measured without encryption (its default) and with aes-256-gcm.

4. the gate's p99 latency (requests it answers itself, paced at 200/s on one connection) on a running
   `fsctl serve` without a backup, then while that server backs up the same data (issue: within 2x).

Run: `make bench-snap` (or `.venv/bin/python bench/bench_snap.py --mib 200` for a quicker pass).
Everything lives in a temp dir removed at the end; tools that are not installed are skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._product import ProductServe  # noqa: E402
from snap.config import SnapConfig  # noqa: E402
from snap.repo import Repository  # noqa: E402

MB = 1024 * 1024
LAST_CPU = [0.0]  # CPU seconds (user + sys) of the last `timed` command: steadier than wall time on a shared machine


def generate(root: Path, total_mib: int, seed: int = 42) -> None:
    """Many small files (a third of them text), a few large random ones, and compressible logs."""
    rng = random.Random(seed)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(2000)]

    # 200k distinct log lines (~16 MiB), then text is drawn from them line by line: fast enough for
    # gigabytes, and compressible like logs (zstd 3 about 3:1)
    lines = [
        b" ".join(rng.choice(words) for _ in range(12))
        + b" status=%d ms=%d\n" % (rng.choice((200, 200, 404, 500)), rng.randint(1, 900))
        for _ in range(200_000)
    ]

    def text(n: int) -> bytes:
        out = b"".join(rng.choices(lines, k=n // 70 + 16))
        while len(out) < n:
            out += b"".join(rng.choices(lines, k=1000))
        return out[:n]

    small_budget = total_mib * MB * 22 // 100
    i = 0
    while small_budget > 0:
        n = rng.randint(1024, 64 * 1024)
        d = root / "small" / f"d{i % 40:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}.{'txt' if i % 3 == 0 else 'bin'}").write_bytes(text(n) if i % 3 == 0 else rng.randbytes(n))
        small_budget -= n
        i += 1
    (root / "large").mkdir()
    for k in range(3):
        with open(root / "large" / f"blob{k}.bin", "wb") as f:
            left = total_mib * MB * 15 // 100
            while left > 0:  # in pieces: randbytes takes at most 2**31 bits
                f.write(rng.randbytes(min(left, 64 * MB)))
                left -= 64 * MB
    (root / "logs").mkdir()
    for k in range(4):
        (root / "logs" / f"app{k}.log").write_bytes(text(total_mib * MB * 8 // 100))
    # an image-like file: half zeros
    img = bytearray(total_mib * MB * 1 // 100)
    img[: len(img) // 2] = rng.randbytes(len(img) // 2)
    (root / "disk.img").write_bytes(bytes(img))


def change_one_percent(root: Path, total_mib: int, seed: int = 43) -> int:
    rng = random.Random(seed)
    budget = total_mib * MB // 100
    changed = 0
    smalls = sorted((root / "small").rglob("*"))
    for p in rng.sample([p for p in smalls if p.is_file()], 40):
        extra = rng.randbytes(8 * 1024)
        with open(p, "ab") as f:
            f.write(extra)
        changed += len(extra)
    big = root / "large" / "blob1.bin"
    with open(big, "r+b") as f:
        f.seek(big.stat().st_size // 3)
        region = rng.randbytes(min(budget // 2, 2 * MB))
        f.write(region)
        changed += len(region)
    log = root / "logs" / "app2.log"
    data = log.read_bytes()
    insert = b"inserted line\n" * (max(budget - changed, 1024) // 14)
    log.write_bytes(data[: len(data) // 2] + insert + data[len(data) // 2 :])
    return changed + len(insert)


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            h.update(str(p.relative_to(root)).encode())
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def timed(
    argv: list[str], *, env: dict[str, str] | None = None, stdin: str | None = None, cwd: Path | None = None
) -> tuple[float, str]:
    """Wall time and stdout of a command; its CPU time (user + sys) goes to `LAST_CPU[0]`."""
    t = time.perf_counter()
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(argv, env={**os.environ, **(env or {})}, input=stdin, capture_output=True, text=True, cwd=cwd)
    dt = time.perf_counter() - t
    ru2 = resource.getrusage(resource.RUSAGE_CHILDREN)
    LAST_CPU[0] = ru2.ru_utime + ru2.ru_stime - ru.ru_utime - ru.ru_stime
    if r.returncode != 0:
        raise RuntimeError(f"{argv[:3]} failed ({r.returncode}): {r.stderr[-2000:]}")
    return dt, r.stdout


def run_snap(
    work: Path,
    src: Path,
    *,
    encrypted: bool,
    change: callable,  # type: ignore[valid-type]
    cpus: int | None = None,
) -> dict[str, float]:
    tag = f"{'enc' if encrypted else 'plain'}-{cpus or 'all'}"
    repo = work / f"snap-{tag}"
    pf = work / "passphrase"
    pf.write_text("bench passphrase")
    Repository.init(
        repo, encryption="aes-256-gcm" if encrypted else "none", passphrase=b"bench passphrase" if encrypted else None
    )

    def job(op: str, params: dict) -> tuple[float, dict]:  # type: ignore[type-arg]
        req = {
            "op": op,
            "repo": str(repo),
            "passphrase_file": str(pf) if encrypted else None,
            "nice": 0,
            "cpus": cpus,
            "params": params,
        }
        dt, out = timed(
            [sys.executable, "-m", "snap.runner"],
            stdin=json.dumps(req),
            cwd=ROOT,
            env={"INFRACORE_LOG_LEVEL": "warning"},
        )
        last = json.loads(out.strip().splitlines()[-1])
        if "result" not in last:
            raise RuntimeError(f"snap {op}: {last}")
        return dt, last["result"]

    t1, _ = job("backup", {"paths": [str(src)], "plan": "bench"})
    cpu1 = LAST_CPU[0]
    size1 = du(repo)
    change()
    t2, snap2 = job("backup", {"paths": [str(src)], "plan": "bench"})
    cpu2 = LAST_CPU[0]
    target = work / f"r-snap-{tag}"
    t3, res = job("restore", {"snapshot": snap2["id"], "target": str(target)})
    cpu3 = LAST_CPU[0]
    assert res["ok"], res
    ok = tree_hash(target / str(src).lstrip("/")) == tree_hash(src)
    shutil.rmtree(target)
    return {
        "first_s": t1,
        "first_cpu_s": cpu1,
        "size": size1,
        "second_s": t2,
        "second_cpu_s": cpu2,
        "size2": du(repo),
        "restore_s": t3,
        "restore_cpu_s": cpu3,
        "verified": ok,
    }


def run_restic(work: Path, src: Path, change: callable) -> dict[str, float]:  # type: ignore[valid-type]
    env = {
        "RESTIC_REPOSITORY": str(work / "restic"),
        "RESTIC_PASSWORD": "bench",
        "RESTIC_CACHE_DIR": str(work / "restic-cache"),
    }
    timed(["restic", "init"], env=env)
    t1, _ = timed(["restic", "backup", "--quiet", str(src)], env=env)
    cpu1 = LAST_CPU[0]
    size1 = du(work / "restic")
    change()
    t2, _ = timed(["restic", "backup", "--quiet", str(src)], env=env)
    cpu2 = LAST_CPU[0]
    target = work / "r-restic"
    t3, _ = timed(["restic", "restore", "latest", "--target", str(target)], env=env)
    cpu3 = LAST_CPU[0]
    shutil.rmtree(target)
    return {
        "first_s": t1,
        "first_cpu_s": cpu1,
        "size": size1,
        "second_s": t2,
        "second_cpu_s": cpu2,
        "size2": du(work / "restic"),
        "restore_s": t3,
        "restore_cpu_s": cpu3,
    }


def run_borg(work: Path, src: Path, change: callable) -> dict[str, float]:  # type: ignore[valid-type]
    env = {
        "BORG_BASE_DIR": str(work / "borg-base"),
        "BORG_PASSPHRASE": "",
        "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
    }
    repo = str(work / "borg")
    timed(["borg", "init", "-e", "none", repo], env=env)
    t1, _ = timed(["borg", "create", f"{repo}::s1", str(src)], env=env)
    cpu1 = LAST_CPU[0]
    size1 = du(work / "borg")
    change()
    t2, _ = timed(["borg", "create", f"{repo}::s2", str(src)], env=env)
    cpu2 = LAST_CPU[0]
    target = work / "r-borg"
    target.mkdir()
    t3, _ = timed(["borg", "extract", f"{repo}::s2"], env=env, cwd=target)
    cpu3 = LAST_CPU[0]
    shutil.rmtree(target)
    return {
        "first_s": t1,
        "first_cpu_s": cpu1,
        "size": size1,
        "second_s": t2,
        "second_cpu_s": cpu2,
        "size2": du(work / "borg"),
        "restore_s": t3,
        "restore_cpu_s": cpu3,
    }


def _p99(xs: list[float]) -> float:
    return sorted(xs)[max(0, int(len(xs) * 0.99) - 1)]


def gate_p99(work: Path, src: Path, seconds: float) -> dict[str, float]:
    """p99 of the gate's own 404 answers (no backup, then during one) on a real `fsctl serve`."""
    import httpx

    srv = ProductServe(
        work,
        None,
        env={"INFRACORE_LOG_FORMAT": "json", "INFRACORE_LOG_LEVEL": "warning", "INFRACORE_PASSWORD_HASH_ROUNDS": "4"},
    )
    api, http_port, auth = srv.url, srv.http_port, srv.headers
    try:
        r = httpx.post(f"{api}/api/snap/plans", json={"name": "bench", "paths": [str(src)]}, headers=auth)
        r.raise_for_status()

        gate = httpx.Client(base_url=f"http://127.0.0.1:{http_port}", headers={"Host": "nobody.test"}, timeout=5)

        def sample(until: Any) -> list[float]:
            lat: list[float] = []
            end = time.monotonic() + seconds
            while time.monotonic() < end and len(lat) < 20_000 and not until():
                t = time.perf_counter()
                gate.get("/")
                lat.append(time.perf_counter() - t)
                time.sleep(max(0.0, 0.005 - (time.perf_counter() - t)))
            return lat

        base = sample(lambda: False)
        job = httpx.post(f"{api}/api/snap/plans/bench/run", headers=auth).json()
        state = {"done": False, "last": 0.0}

        def finished() -> bool:
            if time.monotonic() - state["last"] > 0.5:
                state["last"] = time.monotonic()
                j = httpx.get(f"{api}/api/snap/jobs/{job['id']}", headers=auth).json()
                state["done"] = j["state"] != "running"
            return bool(state["done"])

        during = sample(finished)
        while not finished():
            time.sleep(0.2)
        return {
            "base_p99_ms": _p99(base) * 1e3,
            "during_p99_ms": _p99(during) * 1e3,
            "base_n": len(base),
            "during_n": len(during),
            "base_p50_ms": sorted(base)[len(base) // 2] * 1e3,
            "during_p50_ms": sorted(during)[len(during) // 2] * 1e3,
        }
    finally:
        srv.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--mib",
        type=int,
        default=2048,
        help="size of the generated data (default 2048 MiB, the issue's ~2 GB; e.g. 200 for a quick run)",
    )
    ap.add_argument(
        "--tools",
        default="",
        help="comma-separated name prefixes of the rows to run (e.g. 'snap (all,restic'); default all",
    )
    ap.add_argument("--dir", type=Path, help="work directory (default: a temp dir, removed at the end)")
    ap.add_argument(
        "--gate-seconds", type=float, default=8.0, help="length of each gate latency sample (0: skip the gate part)"
    )
    ap.add_argument("--only-gate", action="store_true", help="only the gate latency part")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-snap-", dir=args.dir))
    try:
        results: dict[str, dict[str, float]] = {}
        server_cpus = SnapConfig().job_cpu_count()  # what `fsctl serve` gives a job: all CPUs but one
        tools = [
            (
                f"snap ({server_cpus or 'all'} CPU, as the server runs it)",
                lambda w, s, c: run_snap(w, s, encrypted=False, change=c, cpus=server_cpus),
            ),
            ("snap (all CPUs)", lambda w, s, c: run_snap(w, s, encrypted=False, change=c)),
            ("snap (aes-256-gcm, all CPUs)", lambda w, s, c: run_snap(w, s, encrypted=True, change=c)),
        ]
        if shutil.which("restic"):
            tools.append(
                (
                    "restic " + subprocess.run(["restic", "version"], capture_output=True, text=True).stdout.split()[1],
                    run_restic,
                )
            )
        if shutil.which("borg"):
            tools.append(
                (
                    "borg " + subprocess.run(["borg", "--version"], capture_output=True, text=True).stdout.split()[1],
                    run_borg,
                )
            )
        if args.tools:
            keep = [t.strip() for t in args.tools.split(",") if t.strip()]
            tools = [t for t in tools if any(t[0].startswith(k) for k in keep)]
        src = work / "src"
        master = work / "master"
        master.mkdir()
        t = time.perf_counter()
        generate(master, args.mib)  # once: the text generator is slow; every tool gets a copy
        data_bytes = du(master)
        print(f"data: {data_bytes / MB:.0f} MiB generated in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        for name, fn in [] if args.only_gate else tools:
            # every tool gets a fresh copy of the same data, changed the same way, at the same path
            if src.exists():
                shutil.rmtree(src, ignore_errors=True)
            subprocess.run(["cp", "-r", str(master), str(src)], check=True)
            subprocess.run(["sync"], check=False)
            results[name] = fn(work, src, lambda s=src: change_one_percent(s, args.mib))
            print(f"{name}: done {results[name]}", file=sys.stderr)
        print(
            f"\nData: {data_bytes / MB:.0f} MiB generated ({args.mib} MiB asked); ~1 % changed before the "
            f"second backup; {os.cpu_count()} CPUs\n"
        )
        ref = next((r for n, r in results.items() if n.startswith("restic")), None)

        def vs(r: dict[str, float], key: str) -> str:
            return f" [{r[key] / ref[key]:.2f}x]" if ref is not None and ref[key] else ""

        print("Ratios: to restic's figure in this run (goal: times <= 1.00x, first repo <= 1.10x).")
        print("Each step: wall time (its CPU time, user + sys, of the tool's processes) [ratios to restic].\n")
        print("| tool | first backup | repo size | second backup | repo after 2nd | full restore |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for name, r in results.items():
            extra = ", verified" if r.get("verified") else ""
            cells = []
            for step in ("first", "second", "restore"):
                w, c = f"{step}_s", f"{step}_cpu_s"
                ratio = (
                    f" [{r[w] / ref[w]:.2f}x, CPU {r[c] / ref[c]:.2f}x]"
                    if ref is not None and ref[w] and ref[c]
                    else ""
                )
                cells.append(f"{r[w]:.2f} s (CPU {r[c]:.2f} s){ratio}")
            print(
                f"| {name} | {cells[0]} | {r['size'] / MB:.1f} MiB{vs(r, 'size')} | {cells[1]} | "
                f"{r['size2'] / MB:.1f} MiB{vs(r, 'size2')} | {cells[2]}{extra} |"
            )
        if args.gate_seconds > 0:
            shutil.rmtree(src, ignore_errors=True)
            subprocess.run(["cp", "-r", str(master), str(src)], check=True)
            g = gate_p99(work, src, args.gate_seconds)
            print(
                f"\nGate latency on a running fsctl serve (its own 404s, paced 200/s): without a backup p50 "
                f"{g['base_p50_ms']:.2f} ms, p99 {g['base_p99_ms']:.2f} ms ({g['base_n']} requests); during the "
                f"first backup of the same data p50 {g['during_p50_ms']:.2f} ms, p99 {g['during_p99_ms']:.2f} ms "
                f"({g['during_n']} requests): ratio {g['during_p99_ms'] / g['base_p99_ms']:.2f}x (goal <= 2x)"
            )
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
