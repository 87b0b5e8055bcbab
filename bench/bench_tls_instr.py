"""Instructions per HTTPS request and per TLS handshake, gate engine against nginx, under callgrind.

Each proxy (the gate's engine as `bench_gate_tls.py` starts it, then nginx with the same TLS
settings, one worker, no master) runs under `valgrind --tool=callgrind` in front of an nginx origin;
a client in this process makes exactly `--handshakes` new TLS 1.3 connections (one GET with
`Connection: close` each) and then `--requests` keep-alive GETs on `--conns` connections. Counters are
zeroed before and dumped after each phase, so the figures are the proxy's own instructions per
handshake (+ its one request) and per keep-alive request — repeatable whatever the machine's load,
unlike requests/s. `--by-object` also prints the split by shared object (libssl, libcrypto, Python,
uvloop, the gate's compiled modules, the kernel-call wrappers).

    .venv/bin/python bench/bench_tls_instr.py [--handshakes 100] [--requests 2000] [--by-object]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_gate import ORIGIN_BODY, free_port, start_nginx  # noqa: E402
from bench_gate_tls import NGINX_TLS_PROXY  # noqa: E402

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
CLOSE_REQUEST = REQUEST[:-2] + b"Connection: close\r\n\r\n"


def client_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def read_response(s: ssl.SSLSocket, buf: bytearray) -> None:
    """One `ok\\n` response (Content-Length 3) off `s`; leftovers stay in `buf`."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            m = re.search(rb"(?i)content-length: *(\d+)", bytes(buf[:end]))
            total = end + 4 + (int(m.group(1)) if m else 0)
            if len(buf) >= total:
                if not buf.startswith(b"HTTP/1.1 200"):
                    raise SystemExit(f"unexpected response: {bytes(buf[:80])!r}")
                del buf[:total]
                return
        chunk = s.recv(65536)
        if not chunk:
            raise SystemExit("connection closed before the response")
        buf += chunk


def handshakes(port: int, n: int) -> None:
    ctx = client_context()
    for _ in range(n):
        with socket.create_connection(("127.0.0.1", port), timeout=60) as raw:
            with ctx.wrap_socket(raw, server_hostname="bench.test") as s:
                s.sendall(CLOSE_REQUEST)
                buf = bytearray()
                read_response(s, buf)


def keepalive(port: int, n: int, conns: int) -> None:
    ctx = client_context()
    socks = []
    for _ in range(conns):
        raw = socket.create_connection(("127.0.0.1", port), timeout=60)
        socks.append((ctx.wrap_socket(raw, server_hostname="bench.test"), bytearray()))
    try:
        for i in range(n // conns):
            for s, _ in socks:
                s.sendall(REQUEST)
            for s, buf in socks:
                read_response(s, buf)
            del i
    finally:
        for s, _ in socks:
            s.close()


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 180.0) -> None:
    ctx = client_context()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the proxy exited ({proc.returncode}) before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
                with ctx.wrap_socket(raw, server_hostname="bench.test") as s:
                    s.sendall(CLOSE_REQUEST)
                    read_response(s, bytearray())
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"the proxy did not answer on {port} within {timeout:.0f} s")


def dump(pid: int, out: Path, label: str) -> Path:
    """Dump callgrind's counters since the last zeroing; returns the newest dump file."""
    before = set(out.parent.glob(out.name + "*"))
    subprocess.run(["callgrind_control", "-d", label, str(pid)], check=True, capture_output=True, timeout=120)
    for _ in range(600):
        new = set(out.parent.glob(out.name + "*")) - before
        if new:
            time.sleep(0.5)
            return max(new, key=lambda p: p.stat().st_mtime)
        time.sleep(0.1)
    raise SystemExit("callgrind did not dump")


def total(dump_file: Path) -> int:
    for line in dump_file.read_text(errors="replace").splitlines():
        if line.startswith("summary:") or line.startswith("totals:"):
            return int(line.split()[1])
    raise SystemExit(f"no totals in {dump_file}")


def by_object(dump_file: Path, top: int = 8) -> list[tuple[str, int]]:
    """Self instructions per shared object, read from the dump itself (`ob=` sets the object of the
    cost lines that follow; the line after `calls=` is a callee's inclusive cost, not self cost)."""
    names: dict[str, str] = {}
    per: dict[str, int] = {}
    ob = "?"
    after_call = False
    for line in dump_file.read_text(errors="replace").splitlines():
        if line.startswith("ob="):
            m = re.match(r"ob=\((\d+)\)(?: (.*))?", line)
            if m:
                if m.group(2):
                    names[m.group(1)] = re.sub(r"\.cpython-.*", "", Path(m.group(2)).name)
                ob = names.get(m.group(1), "?")
            continue
        if line.startswith("cob="):  # names an object too (first mention may be as a callee)
            m = re.match(r"cob=\((\d+)\) (.*)", line)
            if m:
                names[m.group(1)] = re.sub(r"\.cpython-.*", "", Path(m.group(2)).name)
            continue
        if line.startswith("calls="):
            after_call = True
            continue
        if line[:1].isdigit() or line[:1] in "+-*":
            if after_call:
                after_call = False
                continue
            parts = line.split()
            if len(parts) >= 2:
                per[ob] = per.get(ob, 0) + int(parts[1])
    return sorted(per.items(), key=lambda kv: -kv[1])[:top]


def measure(name: str, cmd: list[str], port: int, tmp: Path, args: argparse.Namespace) -> dict[str, int]:
    out = tmp / f"cg-{name}.out"
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(port, proc)
        handshakes(port, 10)
        keepalive(port, 200, args.conns)
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True, timeout=120)
        n_hs = args.handshakes
        if args.wrk_conns:  # concurrent handshakes, as in bench_gate_tls.py (count taken from wrk)
            done = subprocess.run(
                [
                    "wrk",
                    "-t1",
                    f"-c{args.wrk_conns}",
                    "-d20s",
                    "--timeout",
                    "30s",
                    "-H",
                    "Connection: close",
                    f"https://127.0.0.1:{port}/",
                ],
                capture_output=True,
                text=True,
                timeout=120,
            ).stdout
            m = re.search(r"(\d+) requests in", done)
            n_hs = int(m.group(1)) if m else 0
            if not n_hs:
                raise SystemExit(f"wrk failed: {done}")
        else:
            handshakes(port, n_hs)
        d_hs = dump(proc.pid, out, "hs")
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True, timeout=120)
        keepalive(port, args.requests, args.conns)
        d_ka = dump(proc.pid, out, "ka")
        res = {"hs": total(d_hs) // n_hs, "ka": total(d_ka) // (args.requests // args.conns * args.conns)}
        if args.by_object:
            for label, d, n in (("handshake", d_hs, n_hs), ("keep-alive request", d_ka, args.requests)):
                parts = ", ".join(f"{o} {v // n:,}" for o, v in by_object(d))
                print(f"  {name} per {label}: {parts}")
        return res
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--handshakes", type=int, default=100)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--conns", type=int, default=10)
    ap.add_argument("--by-object", action="store_true")
    ap.add_argument("--only", choices=("gate", "nginx"))
    ap.add_argument("--keep", action="store_true", help="keep the callgrind dumps (printed) for callgrind_annotate")
    ap.add_argument("--wrk-conns", type=int, default=0, help="handshakes from wrk with this many connections, 20 s")
    args = ap.parse_args()
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate"):
        if not shutil.which(tool):
            print(f"bench_tls_instr needs {tool} (apt-get install valgrind)", file=sys.stderr)
            return 2
    tmp = Path(tempfile.mkdtemp(prefix="bench-tls-instr-"))
    origin = None
    try:
        from gate.tls import ensure_fallback

        cert, key = ensure_fallback(tmp / "certs", time.time())
        (tmp / "www").mkdir()
        origin_port = free_port()
        origin = start_nginx(nginx, tmp, "origin", ORIGIN_BODY.format(port=origin_port, dir=tmp), "0-1")
        results = {}
        if args.only in (None, "gate"):
            port = free_port()
            results["gate"] = measure(
                "gate",
                [
                    sys.executable,
                    str(ROOT / "bench" / "bench_gate_tls.py"),
                    "--run-gate",
                    str(port),
                    f"127.0.0.1:{origin_port}",
                    str(tmp / "certs"),
                ],
                port,
                tmp,
                args,
            )
        if args.only in (None, "nginx"):
            port = free_port()
            body = NGINX_TLS_PROXY.format(port=port, origin=origin_port, cert=cert, key=key)
            conf = tmp / "nginx-proxy.conf"
            # one process, like the gate: no master, the worker's loop in the process callgrind follows
            conf.write_text(
                f"daemon off; master_process off; pid {tmp}/proxy.pid; error_log {tmp}/error-proxy.log warn;\n"
                f"events {{ worker_connections 4096; }}\n"
                f"http {{ access_log {tmp}/access-proxy.log combined buffer=64k flush=1s;\n"
                f"client_body_temp_path {tmp}/b; proxy_temp_path {tmp}/p; fastcgi_temp_path {tmp}/f;\n"
                f"uwsgi_temp_path {tmp}/u; scgi_temp_path {tmp}/s;\n{body}\n}}\n"
            )
            results["nginx"] = measure("nginx", [nginx, "-p", str(tmp), "-c", str(conf)], port, tmp, args)
        print(
            f"\ninstructions (callgrind, the proxy process only); {args.handshakes} handshakes, "
            f"{args.requests} keep-alive requests on {args.conns} connections; load average "
            f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
        print(f"{'':8} {'per handshake+request':>22} {'per keep-alive request':>23}")
        for name, r in results.items():
            print(f"{name:8} {r['hs']:>22,} {r['ka']:>23,}")
        if len(results) == 2:
            g, n = results["gate"], results["nginx"]
            print(f"nginx / gate: handshakes {n['hs'] / g['hs']:.2f}, keep-alive requests {n['ka'] / g['ka']:.2f}")
        return 0
    finally:
        if origin is not None:
            origin.terminate()
            origin.wait(10)
        if args.keep:
            print(f"callgrind dumps kept in {tmp} (callgrind_annotate {tmp}/cg-gate.out.*)")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
