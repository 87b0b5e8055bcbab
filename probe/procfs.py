"""Parsers of the /proc and cgroup files the collector reads. Pure: text in, numbers out.

Reading these files directly costs one `read` each per tick, with no per-call object overhead; the
parsers are tested against psutil's own readings of the same host.
"""

from __future__ import annotations

from collections.abc import Iterator

SECTOR_BYTES = 512  # /proc/diskstats counts 512-byte sectors whatever the device's sector size


def parse_proc_stat(text: str) -> dict[str, tuple[float, float]]:
    """`/proc/stat` → {"total" | "0" | "1" ...: (busy_ticks, all_ticks)}.

    Busy is everything but idle and iowait; guest time is already inside user time, so only the first
    eight fields are summed.
    """
    out: dict[str, tuple[float, float]] = {}
    for line in text.splitlines():
        if not line.startswith("cpu"):
            break
        parts = line.split()
        f = [int(x) for x in parts[1:9]]
        total = sum(f)
        idle = f[3] + (f[4] if len(f) > 4 else 0)
        name = parts[0][3:] or "total"
        out[name] = (float(total - idle), float(total))
    return out


def parse_meminfo(text: str) -> dict[str, int]:
    """`/proc/meminfo` → {field: bytes}."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            out[key] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1] == "kB" else 1)
    return out


def parse_diskstats(text: str, devices: frozenset[str] | None = None) -> Iterator[tuple[str, int, int, int, int]]:
    """`/proc/diskstats` → (device, reads, writes, read_bytes, written_bytes) for `devices` (all if None)."""
    for line in text.splitlines():
        p = line.split()
        if len(p) < 10 or (devices is not None and p[2] not in devices):
            continue
        yield p[2], int(p[3]), int(p[7]), int(p[5]) * SECTOR_BYTES, int(p[9]) * SECTOR_BYTES


def parse_net_dev(text: str) -> Iterator[tuple[str, int, int, int, int]]:
    """`/proc/net/dev` → (interface, rx_bytes, rx_packets, tx_bytes, tx_packets)."""
    for line in text.splitlines()[2:]:
        name, _, rest = line.partition(":")
        p = rest.split()
        if len(p) >= 10:
            yield name.strip(), int(p[0]), int(p[1]), int(p[8]), int(p[9])


def parse_pid_stat(text: str) -> tuple[int, int, int]:
    """`/proc/<pid>/stat` → (utime_ticks, stime_ticks, rss_pages). The command name may hold spaces
    and parentheses, so fields are counted from the last `)`."""
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): utime is field 14, stime 15, rss 24.
    return int(rest[11]), int(rest[12]), int(rest[21])


def parse_pid_io(text: str) -> tuple[int, int]:
    """`/proc/<pid>/io` → (read_bytes, write_bytes) that reached the storage layer.

    Read once per process of every instance per tick, so the two fields are sliced out where they are
    (a fifth of the time of splitting every line); any other layout takes the general path."""
    try:
        a = text.index("\nread_bytes: ") + 13
        b = text.index("\nwrite_bytes: ") + 14
        return int(text[a : text.index("\n", a)]), int(text[b : text.index("\n", b)])
    except ValueError:
        vals = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
        return int(vals.get("read_bytes", 0)), int(vals.get("write_bytes", 0))


def parse_flat_keyed(text: str) -> dict[str, int]:
    """cgroup `cpu.stat` / `memory.stat` style files: `key value` per line."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def parse_io_stat(text: str) -> tuple[int, int]:
    """cgroup v2 `io.stat` → total (rbytes, wbytes) over its devices."""
    rb = wb = 0
    for line in text.splitlines():
        for field in line.split()[1:]:
            key, _, value = field.partition("=")
            if key == "rbytes":
                rb += int(value)
            elif key == "wbytes":
                wb += int(value)
    return rb, wb
