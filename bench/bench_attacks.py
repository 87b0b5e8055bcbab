"""`make bench-attacks`: the edge's longest stall under each attack of issue 13, against a real
`fsctl serve`.

For each attack a fresh `fsctl serve` (temp data dir, edge and console on 127.0.0.1) gets three routes
to one origin: `probe.bench` (the unrelated site), `upload.bench` and `auth.bench` (Basic auth, a
bcrypt cost-12 hash). A probe process then requests `GET /probe` on `probe.bench` every ~10 ms over
one keep-alive connection, first with no attack (`--baseline-seconds`, by default as long as the
attack: on a shared machine the probe alone shows stalls too), then while an attacker
process runs the attack for `--seconds`; the probe's p50/p99/p100 latency, its failures and the
attack's request count are printed side by side. Goal (issue 13): p100 under 50 ms during every
attack. The attacks:

- `basic_auth`: 8 connections sending wrong Basic-auth passwords to `auth.bench`, back to back;
- `yaml_bomb`: `POST /api/services` with a 295-byte YAML alias bomb (the issue's 7 levels of 9 aliases), 2 at a time;
- `aborted_bodies`: 20 clients at a time send a POST head and 70 KB of a 1 MB body to `upload.bench`,
  then close (the origin, which reads bodies with a 5 s timeout, shares its target with the probe);
- `slow_bodies`: 200 connections each send a 1000-byte POST to `upload.bench` one byte every 0.5 s
  (the origin serves at most 64 connections at a time, like an app server's worker pool);
- `h2_rapid_reset`: HTTP/2 over TLS, bursts of 500 HEADERS + RST_STREAM pairs (one connection at a time,
  reconnecting after the gate's GOAWAY).

A probe request taking longer than `--probe-timeout` counts as that long (a lower bound) and as a
timeout. Load goes only to 127.0.0.1 and every run is bounded in time.

    .venv/bin/python bench/bench_attacks.py [--seconds 10] [--baseline-seconds S] [--only NAME[,NAME]]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._attack_clients import run_attack  # noqa: E402  (after the path insert)
from bench._load import free_port, wait_port  # noqa: E402
from bench._product import ProductServe  # noqa: E402

ATTACKS = ("basic_auth", "yaml_bomb", "aborted_bodies", "slow_bodies", "h2_rapid_reset")
GOAL_MS = 50.0
ORIGIN_WORKERS = 64
ORIGIN_BODY_TIMEOUT_S = 5.0


# --- the origin (own process) -------------------------------------------------------------------------


def run_origin(port: int) -> None:
    """`/probe`: 200 at once; a request with a body: read it (5 s timeout, then close), answer 200.
    At most ORIGIN_WORKERS connections are served at a time (the rest wait, as behind a worker pool)."""
    import uvloop

    async def main() -> None:
        workers = asyncio.Semaphore(ORIGIN_WORKERS)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            async with workers:
                try:
                    while True:
                        head = await reader.readuntil(b"\r\n\r\n")
                        length = 0
                        chunked = False
                        for line in head.lower().split(b"\r\n"):
                            if line.startswith(b"content-length:"):
                                length = int(line.split(b":", 1)[1])
                            elif line == b"transfer-encoding: chunked":
                                chunked = True
                        async with asyncio.timeout(ORIGIN_BODY_TIMEOUT_S):
                            if length:
                                await reader.readexactly(length)
                            elif chunked:
                                await reader.readuntil(b"\r\n0\r\n\r\n")
                        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n")
                        await writer.drain()
                except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    pass
                finally:
                    writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    uvloop.run(main())


# --- the probe (own process) ----------------------------------------------------------------------------


def _read_response(sock: socket.socket) -> tuple[int, bool]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, keep = 0, True
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        n = name.strip().lower()
        if n == b"content-length":
            length = int(value)
        elif n == b"connection" and b"close" in value.lower():
            keep = False
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        rest += chunk
    return status, keep


def run_probe(port: int, seconds: float, interval_ms: float, timeout_s: float) -> None:
    """Prints one JSON line: latencies (ms) of `GET /probe` on probe.bench, statuses, timeouts, errors."""
    request = b"GET /probe HTTP/1.1\r\nHost: probe.bench\r\nUser-Agent: bench-probe\r\n\r\n"
    lat: list[float] = []
    at: list[float] = []  # when each probe started, seconds into the run
    statuses: dict[str, int] = {}
    timeouts = errors = 0
    sock: socket.socket | None = None
    start = time.monotonic()
    end = start + seconds
    next_at = start
    while True:
        now = time.monotonic()
        if now >= end:
            break
        t0 = now
        at.append(round(t0 - start, 3))
        try:
            if sock is None:
                sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
            sock.settimeout(max(0.001, timeout_s - (time.monotonic() - t0)))
            sock.sendall(request)
            status, keep = _read_response(sock)
        except TimeoutError:
            timeouts += 1
            lat.append(timeout_s * 1000)
            if sock is not None:
                sock.close()
            sock = None
        except OSError:
            errors += 1
            lat.append((time.monotonic() - t0) * 1000)
            if sock is not None:
                sock.close()
            sock = None
            time.sleep(0.01)
        else:
            lat.append((time.monotonic() - t0) * 1000)
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            if not keep:
                sock.close()
                sock = None
        next_at += interval_ms / 1000
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_at = time.monotonic()  # behind (a stall): no catch-up burst
    if sock is not None:
        sock.close()
    print(json.dumps({"lat": lat, "at": at, "statuses": statuses, "timeouts": timeouts, "errors": errors}))


# --- the server under test ------------------------------------------------------------------------------


def serve(tmp: Path, name: str) -> ProductServe:
    """A `fsctl serve` on a temp data dir, edge and console on 127.0.0.1, cheap bcrypt for the admin."""
    env = {"INFRACORE_LOG_FORMAT": "json", "INFRACORE_PASSWORD_HASH_ROUNDS": "4", "PYTHONUNBUFFERED": "1"}
    return ProductServe(tmp, None, name=name, env=env)


# --- the run --------------------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def _probe_cmd(port: int, seconds: float, args: argparse.Namespace) -> list[str]:
    return [
        sys.executable,
        __file__,
        "--run-probe",
        str(port),
        str(seconds),
        str(args.probe_interval_ms),
        str(args.probe_timeout),
    ]


def _json_out(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    lines = [ln for ln in (out or "").splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def _row(label: str, probe: dict[str, Any]) -> str:
    lat = probe.get("lat", [])
    bad = sum(v for k, v in probe.get("statuses", {}).items() if k != "200")
    worst = max(lat, default=float("nan"))
    when = probe["at"][lat.index(worst)] if lat and len(probe.get("at", [])) == len(lat) else float("nan")
    return (
        f"  {label:<9} {len(lat):>6} {_pct(lat, 0.5):>8.2f} {_pct(lat, 0.99):>8.2f} {worst:>9.2f}"
        f" {when:>8.2f} {bad:>7} {probe.get('timeouts', 0):>8} {probe.get('errors', 0):>6}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="each attack's duration (default 10)")
    ap.add_argument(
        "--baseline-seconds",
        type=float,
        default=None,
        help="the probe alone, before each attack (default: as long as the attack)",
    )
    ap.add_argument("--only", default="", help=f"comma-separated subset of {','.join(ATTACKS)}")
    ap.add_argument("--probe-interval-ms", type=float, default=10.0)
    ap.add_argument("--probe-timeout", type=float, default=2.0, help="seconds; a slower probe counts as this")
    ap.add_argument("--keep-logs", type=Path, metavar="DIR", help="copy each fsctl serve's log into DIR")
    ap.add_argument("--run-origin", type=int, metavar="PORT", help=argparse.SUPPRESS)
    ap.add_argument("--run-probe", nargs=4, metavar=("PORT", "S", "MS", "TIMEOUT"), help=argparse.SUPPRESS)
    ap.add_argument("--run-attack", nargs=3, metavar=("NAME", "PARAMS", "S"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.baseline_seconds is None:
        args.baseline_seconds = args.seconds
    if args.run_origin:
        run_origin(args.run_origin)
        return 0
    if args.run_probe:
        port, s, ms, to = args.run_probe
        run_probe(int(port), float(s), float(ms), float(to))
        return 0
    if args.run_attack:
        run_attack(args.run_attack[0], args.run_attack[1], float(args.run_attack[2]))
        return 0

    import bcrypt

    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(ATTACKS)
    unknown = [n for n in names if n not in ATTACKS]
    if unknown:
        print(f"unknown attack(s) {unknown}; choose from {', '.join(ATTACKS)}", file=sys.stderr)
        return 2
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="bench-attacks-"))
    origin_port = free_port()
    origin = subprocess.Popen([sys.executable, __file__, "--run-origin", str(origin_port)], cwd=ROOT)
    auth_hash = bcrypt.hashpw(b"the-right-password", bcrypt.gensalt(12)).decode()
    results: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = []
    try:
        wait_port(origin_port, timeout=20.0)
        upstream = [f"127.0.0.1:{origin_port}"]
        for name in names:
            srv = serve(tmp, name)
            try:
                srv.add_route({"host": "probe.bench", "upstreams": upstream})
                srv.add_route({"host": "upload.bench", "upstreams": upstream})
                srv.add_route(
                    {
                        "host": "auth.bench",
                        "upstreams": upstream,
                        "policies": {"basic_auth": [{"username": "admin", "bcrypt_hash": auth_hash}]},
                    }
                )
                base = _json_out(
                    subprocess.Popen(
                        _probe_cmd(srv.http_port, args.baseline_seconds, args), stdout=subprocess.PIPE, text=True
                    ),
                    args.baseline_seconds + args.probe_timeout + 10,
                )
                params = json.dumps(
                    {
                        "http_port": srv.http_port,
                        "https_port": srv.https_port,
                        "console_port": srv.console_port,
                        "token": srv.token,
                    }
                )
                attacker = subprocess.Popen(
                    [sys.executable, __file__, "--run-attack", name, params, str(args.seconds)],
                    stdout=subprocess.PIPE,
                    text=True,
                    cwd=ROOT,
                )
                time.sleep(0.2)  # the attack under way before the probe starts measuring
                probe = subprocess.Popen(
                    _probe_cmd(srv.http_port, args.seconds, args), stdout=subprocess.PIPE, text=True
                )
                under = _json_out(probe, args.seconds + args.probe_timeout + 10)
                attack = _json_out(attacker, args.seconds + 15)
                results.append((name, base, under, attack))
            finally:
                srv.stop()
                if args.keep_logs:
                    args.keep_logs.mkdir(parents=True, exist_ok=True)
                    shutil.copy(srv.log, args.keep_logs / f"serve-{name}.log")
            print(f"  {name}: done ({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
    finally:
        origin.terminate()
        try:
            origin.wait(5)
        except subprocess.TimeoutExpired:
            origin.kill()
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"\nattack benchmark — fsctl serve (a fresh one per attack), probe GET every {args.probe_interval_ms:g} ms "
        f"to probe.bench; {args.seconds:g} s per attack, {args.baseline_seconds:g} s baseline; probe timeout "
        f"{args.probe_timeout:g} s; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n"
    )
    print(
        f"  {'':<9} {'probes':>6} {'p50 ms':>8} {'p99 ms':>8} {'p100 ms':>9} {'p100 at':>8} {'non-200':>7} "
        f"{'timeouts':>8} {'errors':>6}"
    )
    verdicts = []
    for name, base, under, attack in results:
        print(
            f"{name}  (attack: {attack.get('requests', '?')} requests/connections, "
            f"statuses {attack.get('statuses', {})}, errors {attack.get('errors', '?')}, "
            f"attacker CPU {attack.get('cpu_s', '?')} s)"
        )
        print(_row("no attack", base))
        print(_row("attack", under))
        worst = max(under.get("lat", []), default=float("inf"))
        bad = sum(v for k, v in under.get("statuses", {}).items() if k != "200") + under.get("timeouts", 0)
        ok = worst < GOAL_MS and bad == 0
        verdicts.append((name, worst, ok))
    print()
    for name, worst, ok in verdicts:
        print(
            f"{name:<16} probe p100 under attack {worst:9.2f} ms — {'met' if ok else 'NOT met'} "
            f"(goal < {GOAL_MS:g} ms, every probe 200)"
        )
    print(f"\ntotal {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
