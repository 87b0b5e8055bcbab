"""`fsctl doctor`: gathers facts about this host and the platform's settings (ports, DNS of the routes,
the ACME directory, clock, disk, data dir permissions, console exposure, Docker, systemd, cgroups) and
prints `fsctl.doctor`'s findings, each with a fix. Exit status 1 when anything fails.

Runs locally (no API token needed): the routes come from the state database, read-only.
"""

from __future__ import annotations

import argparse
import contextlib
import email.utils
import errno
import fcntl
import json
import os
import queue
import shutil
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from fsctl.client import CliError
from fsctl.doctor import (
    Finding,
    PortFact,
    check_acme,
    check_cgroups,
    check_clock,
    check_console,
    check_data_dir_mode,
    check_disk,
    check_dns,
    check_docker,
    check_port,
    check_systemd,
    is_public_name,
    ordered,
)

_TIMEOUT_S = 5.0


def server_running(data_dir: Path) -> bool:
    """Whether a `fsctl serve` holds the data dir's lock (tried without taking it for long)."""
    try:
        fd = os.open(data_dir / "infracore.lock", os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _holder(port: int) -> str | None:
    with contextlib.suppress(psutil.Error, OSError):
        for c in psutil.net_connections(kind="tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr[1] == port and c.pid:
                return f"{psutil.Process(c.pid).name()} (pid {c.pid})"
    return None


def port_fact(name: str, port: int, running: bool, host: str = "0.0.0.0") -> PortFact:
    listening = False
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        listening = True
    if running:
        return PortFact(name, port, True, listening)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))  # where `fsctl serve` will bind it (`edge_host`)
            return PortFact(name, port, False, listening)
        except OSError as e:
            reason = "permission denied" if e.errno in (errno.EACCES, errno.EPERM) else (e.strerror or str(e))
            return PortFact(name, port, False, listening, reason, _holder(port))


def routes(data_dir: Path) -> list[tuple[str, str]]:
    """(host, tls) of every route, from the state database opened read-only; [] without one."""
    db = data_dir / "state.db"
    if not db.exists():
        return []
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
            rows = conn.execute("SELECT host, spec FROM gate_routes ORDER BY host").fetchall()
    except sqlite3.Error:
        return []
    out = []
    for host, spec in rows:
        try:
            tls = str(json.loads(spec).get("tls") or "off")
        except (ValueError, AttributeError):
            tls = "off"
        out.append((str(host), tls))
    return out


def local_addresses() -> set[str]:
    return {
        a.address.split("%")[0]
        for addrs in psutil.net_if_addrs().values()
        for a in addrs
        if a.family in (socket.AF_INET, socket.AF_INET6)
    }


def dns_findings(hosts: list[tuple[str, str]], timeout_s: float | None = None) -> list[Finding]:
    names = sorted({(h.rstrip(".").lower(), tls) for h, tls in hosts if is_public_name(h)})
    if not names:
        return []
    mine = local_addresses()
    answers = lookup_all([host for host, _ in names], _TIMEOUT_S if timeout_s is None else timeout_s)
    findings = []
    for host, tls in names:
        answer = answers.get(host, "timed out")
        if isinstance(answer, str):
            findings.append(check_dns(host, tls, None, answer, mine))
        else:
            findings.append(check_dns(host, tls, answer, None, mine))
    return findings


def lookup_all(hosts: list[str], timeout_s: float) -> dict[str, list[str] | str]:
    """Each host's addresses (or the error's text) within `timeout_s` in all; a lookup still running
    then is left out ("timed out"). The lookups run in daemon threads: a hung getaddrinfo never holds
    the caller, nor the process's exit (a ThreadPoolExecutor's `with` and its atexit join both wait)."""
    todo: queue.SimpleQueue[str] = queue.SimpleQueue()
    for host in dict.fromkeys(hosts):
        todo.put(host)
    answers: dict[str, list[str] | str] = {}
    done = threading.Condition()

    def work() -> None:
        while True:
            try:
                host = todo.get_nowait()
            except queue.Empty:
                return
            answer: list[str] | str
            try:
                answer = sorted({str(i[4][0]) for i in socket.getaddrinfo(host, None, 0, socket.SOCK_STREAM)})
            except OSError as e:
                answer = str(e) or type(e).__name__
            with done:
                answers[host] = answer
                done.notify_all()

    wanted = len(set(hosts))
    for _ in range(min(8, wanted)):
        threading.Thread(target=work, name="doctor-dns", daemon=True).start()
    deadline = time.monotonic() + timeout_s
    with done:
        while len(answers) < wanted and (left := deadline - time.monotonic()) > 0:
            done.wait(left)
        return dict(answers)


def acme_and_clock(url: str, ca_bundle: Path | None) -> list[Finding]:
    status, error, skew = None, None, None
    try:
        r = httpx.get(url, timeout=_TIMEOUT_S, verify=str(ca_bundle) if ca_bundle else True)
        status = r.status_code
        date = r.headers.get("Date")
        if date:
            skew = time.time() - email.utils.parsedate_to_datetime(date).timestamp()
    except (httpx.HTTPError, ValueError, OSError) as e:
        error = str(e) or type(e).__name__
    ntp = None
    if shutil.which("timedatectl"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                ["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
                capture_output=True,
                text=True,
                timeout=_TIMEOUT_S,
            )
            if out.returncode == 0 and out.stdout.strip() in ("yes", "no"):
                ntp = out.stdout.strip() == "yes"
    # (the Date header has a 1 s resolution and the request takes a while: only large skews count)
    return [check_acme(url, status, error), check_clock(ntp, skew)]


def docker_finding() -> Finding:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return check_docker(False, f"DOCKER_HOST={host} is not a Unix socket; not checked")
    path = host[len("unix://") :]
    if not Path(path).exists():
        return check_docker(False, f"no socket at {path}")
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=path), timeout=_TIMEOUT_S) as c:
            v = c.get("http://docker/version").json()
        return check_docker(True, f"Docker {v.get('Version', '?')} at {path}")
    except (httpx.HTTPError, ValueError, OSError) as e:
        return check_docker(False, f"{path}: {e}")


def cgroup_finding() -> Finding:
    from orch.cgroups import detect

    driver = detect()
    try:
        d = driver.describe()
    finally:
        driver.cleanup()
    return check_cgroups(d["kind"], d["enforces_memory"], d["enforces_cpu"], d["warning"] or "")


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def disk_findings(data_dir: Path, repo: Path) -> list[Finding]:
    out = []
    for what, p in (("data", data_dir), ("backups", repo)):
        at = _existing(p)
        u = shutil.disk_usage(at)
        out.append(check_disk(what, str(p), u.free, u.total))
    return out


def data_dir_finding(data_dir: Path) -> Finding | None:
    if not data_dir.exists():
        return None
    st = data_dir.stat()
    loose = []
    for sub in ("certs", "gate", "snap/repo/keys"):
        for p in sorted((data_dir / sub).rglob("*")) if (data_dir / sub).is_dir() else []:
            if (
                p.is_file()
                and not p.is_symlink()
                and (p.suffix == ".key" or sub.endswith("keys"))
                and p.stat().st_mode & 0o077
            ):
                loose.append(str(p.relative_to(data_dir)))
    return check_data_dir_mode(str(data_dir), st.st_mode, st.st_uid == os.geteuid(), loose)


def gather(args: argparse.Namespace) -> list[Finding]:
    from core.errors import StartupError
    from core.settings import load_settings

    try:
        s = load_settings(args.config, data_dir=args.data_dir, http_port=args.http_port, https_port=args.https_port)
    except StartupError as e:
        raise CliError(e.message, hint=e.hint) from None
    running = server_running(s.data_dir)
    findings = [
        check_port(port_fact("http", s.http_port, running, s.edge_host)),
        check_port(port_fact("https", s.https_port, running, s.edge_host)),
    ]
    findings += dns_findings(routes(s.data_dir))
    findings += acme_and_clock(s.acme_directory, s.acme_ca_bundle)
    repo = Path(s.snap.get("repository") or s.data_dir / "snap" / "repo")
    findings += disk_findings(s.data_dir, repo)
    d = data_dir_finding(s.data_dir)
    if d is not None:
        findings.append(d)
    host, port = s.console_addr
    findings += [
        check_console(host, port),
        docker_finding(),
        check_systemd(Path("/run/systemd/system").is_dir()),
        cgroup_finding(),
    ]
    return findings


_MARK = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


def _doctor(args: argparse.Namespace) -> int:
    findings = ordered(gather(args))
    failed = any(f.status == "fail" for f in findings)
    if args.json:
        print(json.dumps([f.__dict__ for f in findings], indent=1))
        return 1 if failed else 0
    for f in findings:
        print(f"[{_MARK[f.status]}] {f.check}: {f.message}")
        if f.fix and f.status in ("fail", "warn"):
            print(f"       fix: {f.fix}")
    n = {st: sum(1 for f in findings if f.status == st) for st in ("fail", "warn", "ok")}
    print(f"{n['fail']} failing, {n['warn']} warnings, {n['ok']} ok")
    return 1 if failed else 0


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("doctor", help="check this host for what the platform needs, each problem with a fix")
    p.add_argument("--config", type=Path, help="the server's config file (default as for `fsctl serve`)")
    p.add_argument("--data-dir", type=Path, help="the server's data dir (default as for `fsctl serve`)")
    p.add_argument("--http-port", type=int, help="the HTTP port to check (default as for `fsctl serve`)")
    p.add_argument("--https-port", type=int, help="the HTTPS port to check (default as for `fsctl serve`)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_doctor)
