"""CPU and memory limits and per-instance usage: cgroup v2, else v1, else rlimits — detected at start.

Each instance gets its own cgroup, a child of a group made for orch (`infracore`), never the platform's
own: v1 nests it under the platform's memory cgroup path, the same path in each controller's
hierarchy (memory, cpu, cpuacct are separate mounts and the process must join each); v2 puts
`infracore/` beside the platform's cgroup (v2's "no internal processes" rule forbids enabling
controllers below a cgroup that has processes). The
platform process itself is never moved or limited. The child joins its cgroups itself, before `exec`
(see `join_script`), so nothing it forks escapes.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import structlog

log = structlog.get_logger("orch.cgroups")

Kind = Literal["v2", "v1", "rlimit"]
CPU_PERIOD_US = 100_000


@dataclass(frozen=True)
class Mounts:
    """Where the cgroup hierarchies are and which cgroup this process is in, per hierarchy."""

    v1: dict[str, Path]  # controller → mount point
    v2: Path | None
    own_v1: dict[str, str]  # controller → our path inside it
    own_v2: str | None

    @classmethod
    def read(cls, proc: Path = Path("/proc/self")) -> Mounts:
        v1: dict[str, Path] = {}
        v2: Path | None = None
        try:
            lines = (proc / "mountinfo").read_text().splitlines()
        except OSError:
            lines = []
        for line in lines:
            left, _, right = line.partition(" - ")
            parts, rparts = left.split(), right.split()
            if len(parts) < 5 or len(rparts) < 3:
                continue
            fstype, mnt = rparts[0], Path(parts[4])
            if fstype == "cgroup2":
                v2 = v2 or mnt
            elif fstype == "cgroup":
                for opt in rparts[2].split(","):
                    if opt in ("cpu", "cpuacct", "memory", "pids"):
                        v1.setdefault(opt, mnt)
        own_v1: dict[str, str] = {}
        own_v2: str | None = None
        try:
            cg_lines = (proc / "cgroup").read_text().splitlines()
        except OSError:
            cg_lines = []
        for line in cg_lines:
            _, controllers, path = line.split(":", 2)
            if controllers == "":
                own_v2 = path
            for c in controllers.split(","):
                if c in ("cpu", "cpuacct", "memory", "pids"):
                    own_v1[c] = path
        return cls(v1, v2, own_v1, own_v2)


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _keyed(path: Path, key: str) -> int | None:
    try:
        for line in path.read_text().splitlines():
            k, _, v = line.partition(" ")
            if k == key:
                return int(v)
    except (OSError, ValueError):
        return None
    return None


@dataclass
class CgroupHandle:
    """One instance's cgroup(s): where to join, how to read usage, how to kill everything in it."""

    kind: Kind
    dirs: dict[str, Path] = field(default_factory=dict)  # v1: controller → dir; v2: {"unified": dir}
    memory_rlimit: int | None = None  # rlimit fallback: RLIMIT_AS in bytes
    rel: str | None = None  # path relative to the hierarchy root, for probe

    def join_files(self) -> list[Path]:
        seen: list[Path] = []
        for d in self.dirs.values():
            if d / "cgroup.procs" not in seen:
                seen.append(d / "cgroup.procs")
        return seen

    def join_script(self) -> str:
        """Shell lines that move the shell itself (`$$`) into the cgroups and apply rlimits, before exec."""
        lines = [f"echo $$ > {shlex.quote(str(p))} || exit 125" for p in self.join_files()]
        if self.memory_rlimit:
            lines.append(f"ulimit -v {max(1, self.memory_rlimit // 1024)} || exit 125")
        return "\n".join(lines)

    def chown(self, uid: int, gid: int) -> None:
        """Let a process running as `uid` join (cgroup delegation: it writes its own pid)."""
        for p in self.join_files():
            with contextlib.suppress(OSError):
                os.chown(p, uid, gid)

    def pids(self) -> set[int]:
        out: set[int] = set()
        for p in self.join_files():
            with contextlib.suppress(OSError):
                out.update(int(x) for x in p.read_text().split())
        return out

    def memory_bytes(self) -> int | None:
        if self.kind == "v2":
            return _read_int(self.dirs["unified"] / "memory.current")
        if "memory" in self.dirs:
            return _read_int(self.dirs["memory"] / "memory.usage_in_bytes")
        return None

    def cpu_seconds(self) -> float | None:
        if self.kind == "v2":
            usec = _keyed(self.dirs["unified"] / "cpu.stat", "usage_usec")
            return usec / 1e6 if usec is not None else None
        d = self.dirs.get("cpuacct")
        ns = _read_int(d / "cpuacct.usage") if d else None
        return ns / 1e9 if ns is not None else None

    def oom_kills(self) -> int:
        if self.kind == "v2":
            return _keyed(self.dirs["unified"] / "memory.events", "oom_kill") or 0
        if "memory" in self.dirs:
            return _keyed(self.dirs["memory"] / "memory.oom_control", "oom_kill") or 0
        return 0

    def kill_all(self, sig: int = signal.SIGKILL) -> int:
        """Signal every process in the cgroup; returns how many were signalled."""
        if self.kind == "v2" and sig == signal.SIGKILL and (self.dirs["unified"] / "cgroup.kill").exists():
            pids = self.pids()
            with contextlib.suppress(OSError):
                _write(self.dirs["unified"] / "cgroup.kill", "1")
                return len(pids)
        n = 0
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
                n += 1
        return n

    def remove(self) -> None:
        for d in self.dirs.values():
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError as e:
                log.warning("cannot remove cgroup", path=str(d), error=e.strerror)

    def to_record(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "dirs": {k: str(v) for k, v in self.dirs.items()},
            "memory_rlimit": self.memory_rlimit,
            "rel": self.rel,
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any] | None) -> CgroupHandle | None:
        if not rec:
            return None
        return cls(
            rec["kind"], {k: Path(v) for k, v in rec.get("dirs", {}).items()}, rec.get("memory_rlimit"), rec.get("rel")
        )


class CgroupDriver:
    """Makes per-instance cgroups of one kind. `warning` says what is not enforced, if anything."""

    kind: Kind = "rlimit"
    enforces_memory = False
    enforces_cpu = False
    warning: str = ""

    def create(self, name: str, *, memory_bytes: int | None, cpu: float | None) -> CgroupHandle:
        raise NotImplementedError

    created: list[Path]  # directories this driver made at detection, removed (if empty) by `cleanup`

    def cleanup(self) -> None:
        """Remove the group directories made at detection if nothing is left in them (best effort)."""
        for d in reversed(getattr(self, "created", [])):
            with contextlib.suppress(OSError):
                d.rmdir()

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "enforces_memory": self.enforces_memory,
            "enforces_cpu": self.enforces_cpu,
            "warning": self.warning or None,
        }


class RlimitDriver(CgroupDriver):
    kind: Kind = "rlimit"
    enforces_memory = True  # approximately: RLIMIT_AS bounds address space, not resident memory

    def __init__(self, why: str = "") -> None:
        self.warning = (f"cgroups are not usable ({why}); " if why else "") + (
            "memory limits fall back to RLIMIT_AS (address space) and CPU limits are NOT enforced"
        )

    def create(self, name: str, *, memory_bytes: int | None, cpu: float | None) -> CgroupHandle:
        return CgroupHandle("rlimit", {}, memory_bytes)


class CgroupV1Driver(CgroupDriver):
    kind: Kind = "v1"
    enforces_memory = True
    enforces_cpu = True

    def __init__(self, bases: dict[str, Path], rel_base: str) -> None:
        self.bases = bases  # controller → our group dir (…/memory/<own>/infracore)
        self.rel_base = rel_base

    def create(self, name: str, *, memory_bytes: int | None, cpu: float | None) -> CgroupHandle:
        dirs: dict[str, Path] = {}
        for ctl, base in self.bases.items():
            d = base / name
            d.mkdir(parents=True, exist_ok=True)
            dirs[ctl] = d
        h = CgroupHandle("v1", dirs, rel=f"{self.rel_base}/{name}")
        mem = dirs.get("memory")
        if mem is not None:
            limit = str(memory_bytes) if memory_bytes else "-1"
            _write(mem / "memory.limit_in_bytes", limit)
            if (mem / "memory.memsw.limit_in_bytes").exists():
                with contextlib.suppress(OSError):  # swap accounting may be off
                    _write(mem / "memory.memsw.limit_in_bytes", limit)
        cpu_dir = dirs.get("cpu")
        if cpu_dir is not None:
            _write(cpu_dir / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(cpu_dir / "cpu.cfs_quota_us", str(int(cpu * CPU_PERIOD_US)) if cpu else "-1")
        return h


class CgroupV2Driver(CgroupDriver):
    kind: Kind = "v2"

    def __init__(self, base: Path, rel_base: str, controllers: set[str]) -> None:
        self.base = base
        self.rel_base = rel_base
        self.controllers = controllers
        self.enforces_memory = "memory" in controllers
        self.enforces_cpu = "cpu" in controllers
        if not (self.enforces_memory and self.enforces_cpu):
            missing = sorted({"memory", "cpu"} - controllers)
            self.warning = f"cgroup v2 at {base.parent} lacks the {', '.join(missing)} controller(s): not enforced"

    def create(self, name: str, *, memory_bytes: int | None, cpu: float | None) -> CgroupHandle:
        d = self.base / name
        d.mkdir(parents=True, exist_ok=True)
        if self.enforces_memory:
            _write(d / "memory.max", str(memory_bytes) if memory_bytes else "max")
            if (d / "memory.swap.max").exists():
                _write(d / "memory.swap.max", "0" if memory_bytes else "max")
        if self.enforces_cpu:
            _write(d / "cpu.max", f"{int(cpu * CPU_PERIOD_US)} {CPU_PERIOD_US}" if cpu else f"max {CPU_PERIOD_US}")
        return CgroupHandle("v2", {"unified": d}, rel=f"{self.rel_base}/{name}")


def _v2_driver(m: Mounts, group: str) -> CgroupV2Driver | None:
    if m.v2 is None or m.own_v2 is None:
        return None
    own = m.own_v2.strip("/")
    parent_rel = str(Path(own).parent) if own else ""
    parent_rel = "" if parent_rel == "." else parent_rel
    parent = m.v2 / parent_rel if parent_rel else m.v2
    try:
        available = set((parent / "cgroup.controllers").read_text().split())
    except OSError:
        return None
    base = parent / group
    wanted = available & {"memory", "cpu"}
    made = not base.exists()
    try:
        base.mkdir(exist_ok=True)
        if wanted:
            with contextlib.suppress(OSError):  # may already be on, or not ours to change
                _write(parent / "cgroup.subtree_control", " ".join(f"+{c}" for c in sorted(wanted)))
            _write(base / "cgroup.subtree_control", " ".join(f"+{c}" for c in sorted(wanted)))
        enabled = {c.lstrip("+") for c in (base / "cgroup.subtree_control").read_text().split()}
    except OSError as e:
        log.info("cgroup v2 not usable", path=str(base), error=e.strerror)
        return None
    rel = "/" + "/".join(p for p in (parent_rel, group) if p)
    driver = CgroupV2Driver(base, rel, enabled & {"memory", "cpu"})
    driver.created = [base] if made else []
    return driver


def _v1_driver(m: Mounts, group: str) -> CgroupV1Driver | None:
    if "memory" not in m.v1 or "cpu" not in m.v1:
        return None
    bases: dict[str, Path] = {}
    created: list[Path] = []
    # One relative path in every hierarchy (the platform's memory cgroup + group), so that readers such as
    # probe find an instance's counters under the same path in memory/, cpu/ and cpuacct/.
    own = m.own_v1.get("memory", "/").strip("/")
    rel = "/" + "/".join(p for p in (own, group) if p)
    for ctl in ("memory", "cpu", "cpuacct"):
        if ctl not in m.v1:
            continue
        base = m.v1[ctl] / rel.strip("/")
        if base in bases.values():
            continue  # cpu and cpuacct mounted together
        try:
            missing = [p for p in (base, *base.parents) if not p.exists() and m.v1[ctl] in p.parents]
            base.mkdir(parents=True, exist_ok=True)
            created.extend(sorted(missing, key=lambda p: len(p.parts)))
            if not os.access(base / "cgroup.procs", os.W_OK):
                return None
        except OSError as e:
            log.info("cgroup v1 not usable", controller=ctl, path=str(base), error=e.strerror)
            return None
        bases[ctl] = base
    driver = CgroupV1Driver(bases, rel)
    driver.created = created
    return driver


def detect(
    prefer: Literal["auto", "v2", "v1", "none"] = "auto", group: str = "infracore", mounts: Mounts | None = None
) -> CgroupDriver:
    """The best way to limit instances on this host: v2 with memory+cpu, else v1, else rlimits."""
    if prefer == "none":
        return RlimitDriver("disabled in settings")
    m = mounts or Mounts.read()
    v2 = _v2_driver(m, group) if prefer in ("auto", "v2") else None
    if v2 is not None and ((v2.enforces_memory and v2.enforces_cpu) or prefer == "v2"):
        return v2
    v1 = _v1_driver(m, group) if prefer in ("auto", "v1") else None
    if v1 is not None:
        if v2 is not None:
            v2.cleanup()
        return v1
    if v2 is not None:
        return v2
    if os.geteuid() != 0:
        return RlimitDriver("not running as root")
    return RlimitDriver("no writable cgroup hierarchy with the memory and cpu controllers")
