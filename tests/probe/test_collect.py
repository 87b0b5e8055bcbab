"""Real collection on this host: values within sane bounds and consistent with psutil read directly;
a child burning CPU shows up in its instance's CPU reading; cgroup files where the host allows."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from core.ports import InstanceInfo, Sample, ServiceState
from probe.collect import GateAdapter, HostCollector, ServiceCollector, find_cgroup_files, service_state_points
from probe.procfs import parse_pid_io, parse_pid_stat, parse_proc_stat

# Busy, and keeps touching new memory: under cgroup v1 pages stay charged to the cgroup where they were
# touched, so only what the burner allocates after being moved into a test cgroup shows there.
BURN = """import time
keep, end, grow = [], time.time() + 60, 0.0
while time.time() < end:
    if time.time() > grow:
        keep.append(b"x" * 65536)
        grow = time.time() + 0.05
"""
SLEEP = "import time; time.sleep(60)"
# A parent that forks a child writing 1 MiB a round to `path`, synced, for a minute: the writes are the
# child's, which the main pid's own /proc/<pid>/io never shows.
WRITER = """import os, sys, time
if os.fork() == 0:
    end = time.time() + 60
    with open(sys.argv[1], "wb") as f:
        while time.time() < end:
            f.write(os.urandom(1 << 20)); f.flush(); os.fsync(f.fileno()); time.sleep(0.05)
    os._exit(0)
time.sleep(60)
"""


@pytest.fixture
def child() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(code: str, *args: str) -> subprocess.Popen[bytes]:
        p = subprocess.Popen([sys.executable, "-c", code, *args], start_new_session=True)
        procs.append(p)
        return p

    yield start
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)  # the writer's child too
        p.wait()


def by_name(points: list, name: str) -> dict[tuple, float]:
    return {tuple(sorted(lab.items())): v for n, lab, v in points if n == name}


def test_host_collection_is_sane_and_agrees_with_psutil() -> None:
    hc = HostCollector()
    assert hc.collect(time.monotonic()) is not None
    time.sleep(0.3)
    pts = hc.collect(time.monotonic())
    cpu = by_name(pts, "host_cpu_percent")
    assert (("cpu", "total"),) in cpu
    assert len(cpu) == (psutil.cpu_count() or 0) + 1
    assert all(0.0 <= v <= 100.0 for v in cpu.values())
    load = by_name(pts, "host_load1")[()]
    assert abs(load - os.getloadavg()[0]) < 2
    vm = psutil.virtual_memory()
    assert by_name(pts, "host_memory_total_bytes")[()] == vm.total
    assert abs(by_name(pts, "host_memory_available_bytes")[()] - vm.available) < 0.05 * vm.total
    sw = psutil.swap_memory()
    assert by_name(pts, "host_swap_total_bytes")[()] == sw.total
    fs = by_name(pts, "host_fs_used_percent")
    assert (("mount", "/"),) in fs
    assert abs(fs[(("mount", "/"),)] - psutil.disk_usage("/").percent) < 1.0
    net = by_name(pts, "host_net_rx_bytes_per_second")
    assert (("interface", "lo"),) in net and all(v >= 0 for v in net.values())
    assert all(v >= 0 for n, _, v in pts if n.startswith("host_disk_"))
    names = {n for n, _, _ in pts}
    assert {"host_disk_reads_per_second", "host_net_tx_packets_per_second", "host_swap_used_bytes"} <= names


def test_proc_stat_parser_agrees_with_psutil() -> None:
    text = Path("/proc/stat").read_text()
    ours = parse_proc_stat(text)
    t = psutil.cpu_times()
    hz = os.sysconf("SC_CLK_TCK")
    busy = t.user + t.nice + t.system + t.irq + t.softirq + t.steal
    assert abs(ours["total"][0] / hz - busy) < 5.0


def test_a_child_burning_cpu_shows_up_in_its_instance(child: Callable[..., subprocess.Popen[bytes]]) -> None:
    burner, idle = child(BURN), child(SLEEP)
    sc = ServiceCollector()
    inv = [
        InstanceInfo("burn", "burn-1", "process", "running", pid=burner.pid, restarts=2),
        InstanceInfo("idle", "idle-1", "process", "running", pid=idle.pid),
    ]
    sc.collect(inv, time.monotonic())
    deadline = time.monotonic() + 3.0
    cpu: dict = {}
    while time.monotonic() < deadline:
        time.sleep(0.5)
        pts = sc.collect(inv, time.monotonic())
        cpu = by_name(pts, "service_cpu_percent")
        if cpu.get((("instance", "burn-1"), ("service", "burn")), 0) > 5:
            break
    assert cpu[(("instance", "burn-1"), ("service", "burn"))] > 5, cpu
    assert cpu[(("instance", "idle-1"), ("service", "idle"))] < cpu[(("instance", "burn-1"), ("service", "burn"))], cpu
    rss = by_name(pts, "service_rss_bytes")[(("instance", "burn-1"), ("service", "burn"))]
    assert abs(rss - psutil.Process(burner.pid).memory_info().rss) < 4 * 1024 * 1024
    assert by_name(pts, "service_restarts")[(("instance", "burn-1"), ("service", "burn"))] == 2
    assert by_name(pts, "service_connections")[(("instance", "idle-1"), ("service", "idle"))] == 0
    # an instance that exited is skipped without error
    idle.kill()
    idle.wait()
    pts = sc.collect(inv, time.monotonic())
    assert (("instance", "idle-1"), ("service", "idle")) not in by_name(pts, "service_cpu_percent")


def test_instance_measured_by_its_cgroup(child: Callable[..., subprocess.Popen[bytes]]) -> None:
    rel = f"infracore-probe-test-{os.getpid()}"
    root = "/sys/fs/cgroup"
    made: list[Path] = []
    for hier in ("unified", "cpuacct", "memory", ""):
        d = Path(root, hier, rel) if hier else Path(root, rel)
        if Path(root, hier or ".", "cgroup.procs").exists() and (hier or Path(root, "cgroup.controllers").exists()):
            try:
                d.mkdir()
                made.append(d)
            except OSError:
                pass
    if not made:
        pytest.skip("cannot create a cgroup on this host (not root, or no writable hierarchy)")
    burner = child(BURN)
    try:
        for d in made:
            (d / "cgroup.procs").write_text(str(burner.pid))
        files = find_cgroup_files(rel, root)
        assert files.cpu is not None
        sc = ServiceCollector()
        inv = [InstanceInfo("cg", "cg-1", "process", "running", pid=burner.pid, cgroup=rel)]
        sc.collect(inv, time.monotonic())
        deadline = time.monotonic() + 3.0
        pct = 0.0
        while time.monotonic() < deadline and pct < 5:
            time.sleep(0.5)
            pts = sc.collect(inv, time.monotonic())
            pct = by_name(pts, "service_cpu_percent").get((("instance", "cg-1"), ("service", "cg")), 0.0)
        assert pct > 5
        if files.memory:
            assert by_name(pts, "service_memory_bytes")[(("instance", "cg-1"), ("service", "cg"))] > 0
    finally:
        burner.kill()
        burner.wait()
        for d in reversed(made):
            deadline = time.monotonic() + 5
            while True:
                try:
                    d.rmdir()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)


def _io_rate(sc: ServiceCollector, inv: list[InstanceInfo], name: str, key: tuple, floor: float) -> float:
    sc.collect(inv, time.monotonic())
    deadline = time.monotonic() + 10.0
    rate = 0.0
    while time.monotonic() < deadline and rate <= floor:
        time.sleep(0.3)
        rate = by_name(sc.collect(inv, time.monotonic()), name).get(key, 0.0)
    return rate


def test_a_process_trees_disk_writes_are_its_instances_io(
    child: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    writer = child(WRITER, str(tmp_path / "out.bin"))
    sc = ServiceCollector()
    inv = [InstanceInfo("w", "w-1", "process", "running", pid=writer.pid)]
    key = (("instance", "w-1"), ("service", "w"))
    rate = _io_rate(sc, inv, "service_io_write_bytes_per_second", key, 256 * 1024)
    assert rate > 256 * 1024  # the child's MiB a round, summed into its parent's instance
    pts = sc.collect(inv, time.monotonic())
    assert key in by_name(pts, "service_io_read_bytes_per_second")
    # host network namespace: no made-up per-service network series
    assert not any(n.startswith("service_net_") for n, _, _ in pts)


def test_process_io_counter_does_not_drop_when_a_child_leaves_the_tree(
    child: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """A process that leaves the tree takes its counts with it: the sum drops, which must read as no I/O
    (a zero rate), not as a counter reset worth all the remaining processes' bytes."""
    parent = child(SLEEP)
    sc = ServiceCollector()
    key = "p/p-1"
    first = sc._process_io(key, None, parent.pid)
    assert first is not None
    sc._io[key] = (first[0] + 10**9, first[1] + 10**9, first[0], first[1])  # as if a big child had just gone
    assert sc._process_io(key, None, parent.pid) == first


def test_a_cgroups_processes_io_without_io_stat(child: Callable[..., subprocess.Popen[bytes]], tmp_path: Path) -> None:
    """An instance in a cgroup with no io.stat (cgroup v1; v2 without the io controller) is measured over
    the cgroup's processes."""
    rel = f"infracore-probe-io-{os.getpid()}"
    root = "/sys/fs/cgroup"
    made: list[Path] = []
    for hier in ("memory", "cpuacct", ""):
        d = Path(root, hier, rel) if hier else Path(root, rel)
        if Path(root, hier or ".", "cgroup.procs").exists() and (hier or Path(root, "cgroup.controllers").exists()):
            try:
                d.mkdir()
                made.append(d)
            except OSError:
                pass
    if not made:
        pytest.skip("cannot create a cgroup on this host (not root, or no writable hierarchy)")
    # The writer joins the cgroup before it forks, so its child is in it too; the instance names no pid.
    writer = child(
        "import os, sys, time\nwhile not os.path.exists(sys.argv[2]): time.sleep(0.02)\nexec(sys.argv[3])",
        str(tmp_path / "out.bin"),
        str(tmp_path / "go"),
        WRITER,
    )
    try:
        for d in made:
            (d / "cgroup.procs").write_text(str(writer.pid))
        (tmp_path / "go").touch()
        files = find_cgroup_files(rel, root)
        assert files.procs is not None
        sc = ServiceCollector()
        inv = [InstanceInfo("cg", "cg-1", "process", "running", cgroup=rel)]
        rate = _io_rate(
            sc, inv, "service_io_write_bytes_per_second", (("instance", "cg-1"), ("service", "cg")), 256 * 1024
        )
        if files.io is None:
            assert rate > 256 * 1024
        else:
            assert rate >= 0  # v2 io.stat: counts what reached the device, buffered writes included
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(writer.pid, signal.SIGKILL)
        writer.wait()
        for d in reversed(made):
            deadline = time.monotonic() + 5
            while True:
                try:
                    d.rmdir()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)


def test_pid_io_parser_agrees_with_psutil_and_takes_any_layout() -> None:
    ours = parse_pid_io(Path("/proc/self/io").read_text())
    theirs = psutil.Process().io_counters()
    assert ours[0] <= theirs.read_bytes and ours[1] <= theirs.write_bytes
    full = "rchar: 1\nwchar: 2\nsyscr: 3\nsyscw: 4\nread_bytes: 5\nwrite_bytes: 6\ncancelled_write_bytes: 7\n"
    assert parse_pid_io(full) == (5, 6)
    assert parse_pid_io("read_bytes: 5\ncancelled_write_bytes: 7\nwrite_bytes: 6") == (5, 6)  # no newline at the end
    assert parse_pid_io("rchar: 1\ncancelled_write_bytes: 7\n") == (0, 0)
    with pytest.raises(ValueError):
        parse_pid_io("x: 1\nread_bytes: lots\n")


def test_pid_stat_parser_handles_odd_command_names() -> None:
    text = "123 (a b) c)) S 1 1 1 0 -1 0 0 0 0 0 7 9 0 0 20 0 1 0 100 2000 55 0"
    assert parse_pid_stat(text) == (7, 9, 55)


@pytest.mark.parametrize(
    ("status", "desired", "healthy", "up"),
    [
        ("running", "running", 2, 1.0),
        ("degraded", "running", 1, 1.0),
        ("stopped", "stopped", 0, 0.0),
        ("failed", "running", 0, 0.0),
        ("crashloop", "running", 0, 0.0),
        ("exited", "running", 0, 0.0),
        ("backoff", "running", 0, 0.0),
        ("unhealthy", "running", 0, 0.0),
        ("starting", "running", 0, 0.0),
        ("stopped", "stopped", 0, 0.0),
        ("pending", "running", 0, None),
    ],
)
def test_service_up_from_orchs_state(status: str, desired: str, healthy: int, up: float | None) -> None:
    pts = service_state_points([ServiceState("web", status, desired, healthy, 2)])
    if up is None:
        assert pts == []  # orch has not planned it yet: not known to be down
    else:
        assert pts == [
            ("service_up", {"service": "web"}, up),
            ("service_healthy_instances", {"service": "web"}, float(healthy)),
        ]


def test_gate_counters_become_rates() -> None:
    ga = GateAdapter()
    s1 = [
        Sample("gate_requests_total", 100, {"route": "a", "class": "2xx"}, kind="counter"),
        Sample("gate_open_connections", 3),
    ]
    assert ga.convert(s1, 10.0) == [("gate_open_connections", {}, 3.0)]
    s2 = [
        Sample("gate_requests_total", 150, {"route": "a", "class": "2xx"}, kind="counter"),
        Sample("gate_open_connections", 4),
    ]
    assert ga.convert(s2, 12.0) == [
        ("gate_requests_per_second", {"route": "a", "class": "2xx"}, 25.0),
        ("gate_open_connections", {}, 4.0),
    ]


def _docker_ready() -> bool:
    if not Path("/var/run/docker.sock").exists():
        return False
    r = subprocess.run(["docker", "image", "inspect", "infracore-test/busybox:1"], capture_output=True)
    return r.returncode == 0


@pytest.mark.skipif(not _docker_ready(), reason="no dockerd with infracore-test/busybox:1 (../shared/peers/peers.sh)")
def test_a_container_is_measured_by_its_cgroup_and_network_namespace() -> None:
    run = subprocess.run(
        ["docker", "run", "-d", "--rm", "infracore-test/busybox:1", "sh", "-c", "while :; do :; done"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    cid = run.stdout.strip()
    try:
        pid = int(
            subprocess.run(
                ["docker", "inspect", "-f", "{{.State.Pid}}", cid], capture_output=True, text=True, check=True
            ).stdout
        )
        sc = ServiceCollector()
        inv = [InstanceInfo("box", "box-1", "docker", "running", pid=pid, container_id=cid)]
        sc.collect(inv, time.monotonic())
        deadline = time.monotonic() + 3.0
        pct, pts = 0.0, []
        while time.monotonic() < deadline and pct < 5:
            time.sleep(0.5)
            pts = sc.collect(inv, time.monotonic())
            pct = by_name(pts, "service_cpu_percent").get((("instance", "box-1"), ("service", "box")), 0.0)
        assert pct > 5
        assert (("instance", "box-1"), ("service", "box")) in by_name(pts, "service_net_rx_bytes_per_second")
        assert (("instance", "box-1"), ("service", "box")) in by_name(pts, "service_net_tx_bytes_per_second")
        assert (("instance", "box-1"), ("service", "box")) in by_name(pts, "service_io_write_bytes_per_second")
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True, timeout=60)


def test_the_per_process_io_walk_has_a_budget_per_tick_and_rotates_what_it_skips() -> None:
    """Three real processes without cgroups: each walk reads its task list's `children` and its `io`
    (two files). With three files a tick, the third instance is skipped, counted, and walked first the
    next tick; a spent time budget skips every walk. Other readings are unaffected."""
    kids = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) for _ in range(3)]
    try:
        inv = [InstanceInfo("s", f"s-{i}", "process", "running", pid=k.pid) for i, k in enumerate(kids)]
        sc = ServiceCollector(io_files_per_tick=3)
        mono = time.monotonic()
        points = sc.collect(inv, mono)
        assert sc.io_skipped_last == ["s/s-2"] and sc.io_skipped == 1
        assert {p[1]["instance"] for p in points if p[0] == "service_rss_bytes"} == {"s-0", "s-1", "s-2"}
        sc.collect(inv, mono + 1)
        assert sc.io_skipped_last == ["s/s-1"] and sc.io_skipped == 2  # s-2 went first, s-1 is left over
        unbounded = ServiceCollector()
        unbounded.collect(inv, mono)
        assert unbounded.io_skipped == 0
        no_time = ServiceCollector(io_seconds_per_tick=0.0)
        no_time.collect(inv, mono)
        assert no_time.io_skipped == 3
    finally:
        for k in kids:
            k.kill()
            k.wait()


def test_instances_the_io_budget_skips_still_get_io_rates() -> None:
    """Under a standing overload of the walk budget (three walks wanted, room for fewer each tick) the
    skipped instances keep their last readings: every instance gets disk-I/O rates over a few ticks,
    not only the one that happens to be walked every tick."""
    kids = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) for _ in range(3)]
    try:
        inv = [InstanceInfo("s", f"s-{i}", "process", "running", pid=k.pid) for i, k in enumerate(kids)]
        sc = ServiceCollector(io_files_per_tick=3)
        mono = time.monotonic()
        rated: dict[str, int] = {}
        for t in range(9):
            for name, labels, _ in sc.collect(inv, mono + t):
                if name == "service_io_read_bytes_per_second":
                    rated[labels["instance"]] = rated.get(labels["instance"], 0) + 1
        assert sc.io_skipped >= 8  # the budget was short every tick
        assert set(rated) == {"s-0", "s-1", "s-2"} and min(rated.values()) >= 2, rated
        kids[1].kill()
        kids[1].wait()
        for t in range(9, 12):  # a gone instance's kept readings are still swept
            sc.collect(inv, mono + t)
        assert not any(isinstance(k, tuple) and k[1] == "s/s-1" for k in sc._rates._last), sc._rates._last
    finally:
        for k in kids:
            k.kill()
            k.wait()
