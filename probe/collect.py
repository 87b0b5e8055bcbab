"""Collectors: host readings from /proc and statvfs, per-instance readings from /proc/<pid> or the
instance's cgroup, and the gate's samples turned into rates. Synchronous and cheap; the service runs
the host and instance collectors in a worker thread, one tick at a time.

A reading is a `Point`: (metric name, labels, value). Counters become per-second rates here, so the
store and the alerts only ever see gauges.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
import structlog

from core.ports import InstanceInfo, Sample, ServiceState
from probe.procfs import (
    parse_diskstats,
    parse_flat_keyed,
    parse_io_stat,
    parse_meminfo,
    parse_net_dev,
    parse_pid_io,
    parse_pid_stat,
    parse_proc_stat,
)
from probe.rates import RateTracker, counter_delta, cpu_percent

log = structlog.get_logger("probe.collect")

Point = tuple[str, dict[str, str], float]

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
MAX_IO_PIDS = 1024  # processes of one instance whose I/O is summed (a fork bomb must not stall the tick)
# The per-process I/O walk of all instances together, per tick: /proc files read, and time. An instance
# left when either is spent gets no disk I/O reading that tick (its rate spans the gap next time) and
# goes first the next tick; `io_skipped` counts such instance-ticks.
IO_FILES_PER_TICK = 4096
IO_SECONDS_PER_TICK = 0.25
_SKIP_FS = frozenset({"squashfs", "tmpfs", "devtmpfs", "overlay", "proc", "sysfs", "nsfs", "cgroup", "cgroup2"})


def _read(path: str) -> str:
    with open(path, encoding="ascii", errors="replace") as f:
        return f.read()


class HostCollector:
    """CPU (total and per core), load, memory, swap, filesystems, disk and network rates."""

    def __init__(self, *, proc: str = "/proc", sys_block: str = "/sys/block", refresh_s: float = 60.0) -> None:
        self.proc = proc
        self.sys_block = sys_block
        self.refresh_s = refresh_s
        self._cpu_prev: dict[str, tuple[float, float]] = {}
        self._rates = RateTracker()
        self._mounts: list[str] = []
        self._disks: frozenset[str] = frozenset()
        self._refreshed_at = -1e18

    def _refresh(self, mono: float) -> None:
        """Re-list mounts and whole disks (they change rarely; listing every tick would cost more)."""
        seen_dev: set[str] = set()
        mounts = []
        for part in psutil.disk_partitions(all=False):
            if part.fstype in _SKIP_FS or part.device in seen_dev:
                continue
            seen_dev.add(part.device)
            mounts.append(part.mountpoint)
        self._mounts = mounts
        try:
            self._disks = frozenset(
                d for d in os.listdir(self.sys_block) if not d.startswith(("loop", "ram", "zram", "dm-"))
            )
        except OSError:
            self._disks = frozenset()
        self._refreshed_at = mono

    def collect(self, mono: float) -> list[Point]:
        if mono - self._refreshed_at >= self.refresh_s:
            self._refresh(mono)
        out: list[Point] = []
        cpus = parse_proc_stat(_read(f"{self.proc}/stat"))
        for cpu, (busy, total) in cpus.items():
            prev = self._cpu_prev.get(cpu)
            if prev is not None and total > prev[1]:
                pct = 100.0 * counter_delta(prev[0], busy) / (total - prev[1])
                out.append(("host_cpu_percent", {"cpu": cpu}, min(100.0, max(0.0, pct))))
        self._cpu_prev = cpus
        la1, la5, la15 = os.getloadavg()
        out += [("host_load1", {}, la1), ("host_load5", {}, la5), ("host_load15", {}, la15)]
        mem = parse_meminfo(_read(f"{self.proc}/meminfo"))
        total_b, avail_b = mem.get("MemTotal", 0), mem.get("MemAvailable", mem.get("MemFree", 0))
        out += [
            ("host_memory_total_bytes", {}, float(total_b)),
            ("host_memory_available_bytes", {}, float(avail_b)),
            ("host_memory_used_bytes", {}, float(total_b - avail_b)),
            ("host_swap_total_bytes", {}, float(mem.get("SwapTotal", 0))),
            ("host_swap_used_bytes", {}, float(mem.get("SwapTotal", 0) - mem.get("SwapFree", 0))),
        ]
        for mount in self._mounts:
            try:
                st = os.statvfs(mount)
            except OSError:
                continue
            if st.f_blocks == 0:
                continue
            used = (st.f_blocks - st.f_bfree) * st.f_frsize
            avail = st.f_bavail * st.f_frsize
            labels = {"mount": mount}
            out += [
                ("host_fs_size_bytes", labels, float(st.f_blocks * st.f_frsize)),
                ("host_fs_used_bytes", labels, float(used)),
                ("host_fs_used_percent", labels, 100.0 * used / (used + avail) if used + avail else 0.0),
            ]
        rate = self._rates.rate
        for dev, reads, writes, rbytes, wbytes in parse_diskstats(_read(f"{self.proc}/diskstats"), self._disks):
            labels = {"device": dev}
            for name, value in (
                ("host_disk_reads_per_second", reads),
                ("host_disk_writes_per_second", writes),
                ("host_disk_read_bytes_per_second", rbytes),
                ("host_disk_write_bytes_per_second", wbytes),
            ):
                r = rate((name, dev), mono, value)
                if r is not None:
                    out.append((name, labels, r))
        for iface, rxb, rxp, txb, txp in parse_net_dev(_read(f"{self.proc}/net/dev")):
            labels = {"interface": iface}
            for name, value in (
                ("host_net_rx_bytes_per_second", rxb),
                ("host_net_rx_packets_per_second", rxp),
                ("host_net_tx_bytes_per_second", txb),
                ("host_net_tx_packets_per_second", txp),
            ):
                r = rate((name, iface), mono, value)
                if r is not None:
                    out.append((name, labels, r))
        self._rates.sweep()
        return out


@dataclass
class _CgroupFiles:
    cpu: str | None  # v2 cpu.stat or v1 cpuacct.usage
    cpu_v2: bool
    memory: str | None  # v2 memory.current or v1 memory.usage_in_bytes
    memory_stat: str | None
    io: str | None  # v2 io.stat (only where the io controller is enabled for it)
    procs: str | None  # cgroup.procs: every process of the instance, for per-process I/O without io.stat


def find_cgroup_files(cgroup: str, root: str = "/sys/fs/cgroup") -> _CgroupFiles:
    """Where an instance's cgroup keeps its counters: cgroup v2 (unified, or the hybrid `unified/`
    mount) first, then the v1 `cpuacct` and `memory` hierarchies."""
    rel = cgroup.strip("/")

    def first(*candidates: str) -> str | None:
        return next((c for c in candidates if os.path.exists(c)), None)

    cpu_v2 = first(f"{root}/{rel}/cpu.stat", f"{root}/unified/{rel}/cpu.stat")
    cpu = cpu_v2 or first(f"{root}/cpuacct/{rel}/cpuacct.usage", f"{root}/cpu,cpuacct/{rel}/cpuacct.usage")
    mem_v2 = first(f"{root}/{rel}/memory.current", f"{root}/unified/{rel}/memory.current")
    mem = mem_v2 or first(f"{root}/memory/{rel}/memory.usage_in_bytes")
    mem_stat = str(Path(mem).parent / "memory.stat") if mem else None
    io = first(f"{root}/{rel}/io.stat", f"{root}/unified/{rel}/io.stat")
    procs = first(
        *(
            f"{root}/{hier}{rel}/cgroup.procs"
            for hier in ("", "unified/", "memory/", "cpuacct/", "cpu,cpuacct/", "pids/", "systemd/")
        )
    )
    return _CgroupFiles(cpu, cpu_v2 is not None, mem, mem_stat, io, procs)


class ServiceCollector:
    """Per instance: CPU % (of one core), RSS, restarts, open connections, disk and network I/O rates.

    An instance with a `cgroup` is measured by its cgroup (all its processes); otherwise by its main
    pid from /proc. Disk I/O comes from the cgroup's v2 `io.stat` where the io controller keeps one,
    else from /proc/<pid>/io summed over the cgroup's processes or the process tree. Connections are
    counted every `connections_every_s` (walking a process's sockets costs more than everything else
    here together); network I/O is reported only for instances in their own network namespace
    (containers), where /proc/<pid>/net/dev is theirs alone: a native process shares the host's
    interfaces, and its own share of their traffic cannot be observed from /proc (it would take eBPF),
    so it has no `service_net_*` series rather than a made-up one.
    """

    def __init__(
        self,
        *,
        proc: str = "/proc",
        cgroup_root: str = "/sys/fs/cgroup",
        connections_every_s: float = 10.0,
        io_files_per_tick: int = IO_FILES_PER_TICK,
        io_seconds_per_tick: float = IO_SECONDS_PER_TICK,
    ) -> None:
        self.proc = proc
        self.io_files_per_tick = io_files_per_tick
        self.io_seconds_per_tick = io_seconds_per_tick
        self.io_skipped = 0  # instance-ticks whose per-process I/O walk was skipped (the budget was spent)
        self.io_skipped_last: list[str] = []  # the instances skipped in the last tick, walked first next
        self._io_left = io_files_per_tick  # (reset by each `collect`)
        self._io_deadline = float("inf")
        self.cgroup_root = cgroup_root
        self.connections_every_s = connections_every_s
        self._cpu_prev: dict[str, tuple[float, float]] = {}  # instance → (mono, cpu seconds)
        self._rates = RateTracker()
        self._cgroups: dict[str, _CgroupFiles] = {}
        self._conns: dict[str, tuple[float, int]] = {}  # instance → (mono when counted, count)
        self._netns: dict[int, bool] = {}  # pid → shares our network namespace
        self._io: dict[str, tuple[int, int, int, int]] = {}  # instance → (read, written, counted r, counted w)
        try:
            self._own_netns = os.readlink(f"{proc}/self/ns/net")
        except OSError:
            self._own_netns = ""

    def collect(self, instances: Sequence[InstanceInfo], mono: float) -> list[Point]:
        out: list[Point] = []
        alive: set[str] = set()
        self._io_left, self._io_deadline = self.io_files_per_tick, time.monotonic() + self.io_seconds_per_tick
        if self.io_skipped_last:  # those the budget missed last tick go first (fair under a standing overload)
            first = set(self.io_skipped_last)
            instances = sorted(instances, key=lambda i: f"{i.service}/{i.instance}" not in first)
        self.io_skipped_last = []
        for inst in instances:
            key = f"{inst.service}/{inst.instance}"
            labels = {"service": inst.service, "instance": inst.instance}
            out.append(("service_restarts", labels, float(inst.restarts)))
            out.append(("service_instance_up", labels, 1.0 if inst.state == "running" else 0.0))
            if inst.pid is None and not inst.cgroup and not inst.container_id:
                continue
            try:
                readings = self._read_instance(inst, key, mono)
            except (OSError, ValueError, IndexError):
                continue  # it exited between the inventory and the read: nothing to report this tick
            alive.add(key)
            for name, value, is_counter in readings:
                if is_counter:
                    rate = self._rates.rate((name, key), mono, value)
                    if rate is None:
                        continue
                    value = rate
                out.append((name, labels, value))
        for gone in self._cpu_prev.keys() - alive:
            del self._cpu_prev[gone]
            self._conns.pop(gone, None)
        for gone in self._io.keys() - alive:
            del self._io[gone]
        pids = {inst.pid for inst in instances}
        if self._netns.keys() - pids:
            self._netns = {p: v for p, v in self._netns.items() if p in pids}  # a reused pid is checked anew
        self._rates.sweep()
        return out

    def _read_instance(self, inst: InstanceInfo, key: str, mono: float) -> list[tuple[str, float, bool]]:
        readings: list[tuple[str, float, bool]] = []
        cpu_s: float | None = None
        cgroup = inst.cgroup or (self._container_cgroup(inst.container_id) if inst.container_id else None)
        files: _CgroupFiles | None = None
        if cgroup:
            files = self._cgroups.get(cgroup)
            if files is None:
                files = self._cgroups[cgroup] = find_cgroup_files(cgroup, self.cgroup_root)
            if files.cpu:
                text = _read(files.cpu)
                cpu_s = parse_flat_keyed(text)["usage_usec"] / 1e6 if files.cpu_v2 else int(text) / 1e9
            if files.memory and files.memory_stat:
                stat = parse_flat_keyed(_read(files.memory_stat))
                readings.append(("service_memory_bytes", float(int(_read(files.memory))), False))
                rss = stat.get("anon", stat.get("total_rss", stat.get("rss")))
                if rss is not None:
                    readings.append(("service_rss_bytes", float(rss), False))
            if files.io:
                rb, wb = parse_io_stat(_read(files.io))
                readings += [
                    ("service_io_read_bytes_per_second", rb, True),
                    ("service_io_write_bytes_per_second", wb, True),
                ]
        if inst.pid is not None and (cpu_s is None or not any(r[0] == "service_rss_bytes" for r in readings)):
            utime, stime, rss_pages = parse_pid_stat(_read(f"{self.proc}/{inst.pid}/stat"))
            if cpu_s is None:
                cpu_s = (utime + stime) / CLK_TCK
            readings.append(("service_rss_bytes", float(rss_pages * PAGE_BYTES), False))
        if files is None or not files.io:
            io = self._process_io(key, files.procs if files is not None else None, inst.pid)
            if io is not None:
                readings += [
                    ("service_io_read_bytes_per_second", io[0], True),
                    ("service_io_write_bytes_per_second", io[1], True),
                ]
        if cpu_s is not None:
            prev = self._cpu_prev.get(key)
            self._cpu_prev[key] = (mono, cpu_s)
            if prev is not None:
                pct = cpu_percent(prev[1], cpu_s, mono - prev[0])
                if pct is not None:
                    readings.append(("service_cpu_percent", pct, False))
        else:
            self._cpu_prev.setdefault(key, (mono, 0.0))
        if inst.pid is not None:
            readings += self._net(inst.pid)
            conns = self._connections(inst.pid, key, mono)
            if conns is not None:
                readings.append(("service_connections", float(conns), False))
        return readings

    def _process_io(self, key: str, procs_file: str | None, pid: int | None) -> tuple[int, int] | None:
        """Storage bytes read and written by the instance's processes, from /proc/<pid>/io summed over its
        cgroup's processes (or, without a cgroup, the process tree under its main pid), as a counter that
        never goes back. None when no process's file is readable (another user's, and we are not root).

        A child that exits and is reaped inside the tree moves its counts to its parent (the kernel adds
        them up on reap), so the sum holds; one reaped outside (re-parented to init) takes its counts
        with it: the sum drops, and a drop counts as no I/O rather than as a counter reset.
        """
        if self._io_left <= 0 or time.monotonic() >= self._io_deadline:
            self.io_skipped += 1
            self.io_skipped_last.append(key)
            # Still alive, only not walked: its last readings stay, so its next walk gives a rate (over two
            # ticks) rather than a first sample, which under a standing overload would be every walk.
            self._rates.keep(("service_io_read_bytes_per_second", key))
            self._rates.keep(("service_io_write_bytes_per_second", key))
            return None
        if procs_file is not None:
            pids = [int(p) for p in _read(procs_file).split()[:MAX_IO_PIDS]]
        elif pid is not None:
            pids = self._tree(pid)
        else:
            return None
        rb = wb = 0
        readable = False
        self._io_left -= len(pids)
        for p in pids:
            try:
                r, w = parse_pid_io(_read(f"{self.proc}/{p}/io"))
            except (OSError, ValueError):
                continue  # exited since listed, or another user's process and we are not root
            rb, wb, readable = rb + r, wb + w, True
        if not readable:
            return None
        prev = self._io.get(key)
        if prev is None:
            cum = (rb, wb)
        else:
            cum = (prev[2] + max(0, rb - prev[0]), prev[3] + max(0, wb - prev[1]))
        self._io[key] = (rb, wb, *cum)
        return cum

    def _tree(self, pid: int) -> list[int]:
        """`pid` and its descendants (at most MAX_IO_PIDS), from each thread's `children` file."""
        out, i = [pid], 0
        while i < len(out) and len(out) < MAX_IO_PIDS:
            p, i = out[i], i + 1
            try:
                tids = os.listdir(f"{self.proc}/{p}/task")
            except OSError:
                continue
            self._io_left -= len(tids)
            for tid in tids:
                try:
                    out += [int(c) for c in _read(f"{self.proc}/{p}/task/{tid}/children").split()]
                except OSError:
                    continue
        return out[:MAX_IO_PIDS]

    def _container_cgroup(self, container_id: str) -> str | None:
        """A Docker container's cgroup, where dockerd puts it (cgroupfs v1/v2 or the systemd driver):
        reading its files is far cheaper than a stats call to the Docker API each tick."""
        for rel in (f"docker/{container_id}", f"system.slice/docker-{container_id}.scope"):
            for hier in ("", "unified/", "cpuacct/"):
                if os.path.isdir(f"{self.cgroup_root}/{hier}{rel}"):
                    return rel
        return None

    def _net(self, pid: int) -> list[tuple[str, float, bool]]:
        try:
            own = self._netns.get(pid)
            if own is None:
                own = self._netns[pid] = os.readlink(f"{self.proc}/{pid}/ns/net") == self._own_netns
            if own:
                return []  # shares the host's namespace: its interfaces are not its own
            text = _read(f"{self.proc}/{pid}/net/dev")
        except OSError:
            return []
        rxb = rxp = txb = txp = 0
        for iface, a, b, c, d in parse_net_dev(text):
            if iface != "lo":
                rxb, rxp, txb, txp = rxb + a, rxp + b, txb + c, txp + d
        return [
            ("service_net_rx_bytes_per_second", rxb, True),
            ("service_net_tx_bytes_per_second", txb, True),
            ("service_net_rx_packets_per_second", rxp, True),
            ("service_net_tx_packets_per_second", txp, True),
        ]

    def _connections(self, pid: int, key: str, mono: float) -> int | None:
        last = self._conns.get(key)
        if last is not None and mono - last[0] < self.connections_every_s:
            return last[1]
        try:
            conns = psutil.Process(pid).net_connections(kind="inet")
        except (psutil.Error, OSError):
            return last[1] if last else None
        count = sum(1 for c in conns if c.status != psutil.CONN_LISTEN)
        self._conns[key] = (mono, count)
        return count


def service_state_points(states: Sequence[ServiceState]) -> list[Point]:
    """Per defined service, whatever its state: `service_up` (1 with at least one healthy instance, else
    0: stopped, failed, crash-looping, OOM-killed and backing off, starting) and
    `service_healthy_instances`. A service that is removed is no longer listed, so its series end; one
    orch has not planned yet (`pending`, just after start) is not known to be down, so not reported."""
    out: list[Point] = []
    for st in states:
        if st.status == "pending":
            continue
        labels = {"service": st.service}
        out.append(("service_up", labels, 1.0 if st.healthy > 0 else 0.0))
        out.append(("service_healthy_instances", labels, float(st.healthy)))
    return out


class GateAdapter:
    """The gate's `Sample`s → points: gauges as they are; counters as per-second rates named
    `<name without _total>_per_second`. The counters themselves are kept for Prometheus."""

    def __init__(self) -> None:
        self._rates = RateTracker()

    def convert(self, samples: Sequence[Sample], mono: float) -> list[Point]:
        out: list[Point] = []
        for s in samples:
            labels = dict(s.labels)
            if s.kind == "counter":
                r = self._rates.rate((s.name, tuple(sorted(labels.items()))), mono, s.value)
                if r is not None:
                    base = s.name[: -len("_total")] if s.name.endswith("_total") else s.name
                    out.append((f"{base}_per_second", labels, r))
            else:
                out.append((s.name, labels, float(s.value)))
        self._rates.sweep()
        return out
