"""Repository upkeep: `scrub` (verify packs and blobs, map damage to snapshots and files), `forget`
(retention per plan) and `prune` (drop or repack what no snapshot references). Synchronous: run in a
thread. Prune and forget hold the exclusive lock (docs/snap-format.md, "Locks")."""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import structlog

from snap.errors import DamagedData
from snap.pack import PackBuilder, PackEntry, parse_pack
from snap.repo import Repository, iter_lines
from snap.retention import RetentionPolicy, apply_policy
from snap.tree import check_entry

log = structlog.get_logger("snap.maintenance")


@dataclass
class ScrubReport:
    packs_checked: int = 0
    packs_total: int = 0
    blobs_checked: int = 0
    bytes_checked: int = 0
    damaged_packs: list[dict[str, str]] = field(default_factory=list)  # {"pack", "error"}
    damaged_blobs: list[dict[str, Any]] = field(default_factory=list)  # {"blob", "pack", "error"}
    missing_blobs: list[str] = field(default_factory=list)
    affected: list[dict[str, Any]] = field(default_factory=list)  # {"snapshot", "time", "plan", "paths": [...]}
    unreadable_snapshots: list[dict[str, str]] = field(default_factory=list)
    damaged_index_files: list[str] = field(default_factory=list)  # rebuilt from the packs; prune replaces them

    @property
    def ok(self) -> bool:
        return not (
            self.damaged_packs
            or self.damaged_blobs
            or self.missing_blobs
            or self.unreadable_snapshots
            or self.damaged_index_files
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def scrub(repo: Repository, *, fraction: float = 1.0, seed: int | None = None) -> ScrubReport:
    """Re-read `fraction` of the packs (all with 1.0), verify every blob in them, check that every blob
    any snapshot references is indexed, and name the snapshots and files that damage affects."""
    rep = ScrubReport()
    with repo.lock("shared", "scrub") as lock:
        repo.load_index()
        rep.damaged_index_files = list(repo.damaged_index_files)
        by_pack: dict[str, list[tuple[bytes, Any]]] = defaultdict(list)
        for bid, ref in repo.index.items():
            by_pack[ref.pack].append((bid, ref))
        packs = sorted(set(repo.list_packs()) | set(by_pack))
        rep.packs_total = len(packs)
        if fraction < 1.0:
            k = max(1, round(len(packs) * fraction)) if packs else 0
            packs = sorted(random.Random(seed).sample(packs, k))
        bad: dict[bytes, str] = {}
        for pack in packs:
            lock.refresh()
            rep.packs_checked += 1
            try:
                data = repo.pack_path(pack).read_bytes()
            except OSError as e:
                rep.damaged_packs.append({"pack": pack, "error": f"cannot be read: {e.strerror}"})
                for bid, _ in by_pack.get(pack, []):
                    bad[bid] = pack
                continue
            rep.bytes_checked += len(data)
            if hashlib.sha256(data).hexdigest() != pack:
                rep.damaged_packs.append({"pack": pack, "error": "file content does not match its name (hash)"})
            try:
                parse_pack(data, repo.crypto, pack)
            except DamagedData as e:
                rep.damaged_packs.append({"pack": pack, "error": e.message})
            for bid, ref in by_pack.get(pack, []):
                rep.blobs_checked += 1
                stored = data[ref.offset : ref.offset + ref.length]
                try:
                    if len(stored) != ref.length:
                        raise DamagedData(f"blob {bid.hex()[:12]} in pack {pack[:12]}: truncated")
                    repo.decode_blob(bid, stored, f"pack {pack[:12]} at offset {ref.offset}")
                except DamagedData as e:
                    rep.damaged_blobs.append({"blob": bid.hex(), "pack": pack, "error": e.message})
                    bad[bid] = pack
        _map_damage(repo, rep, bad)
    log.info(
        "scrub finished",
        ok=rep.ok,
        packs=rep.packs_checked,
        blobs=rep.blobs_checked,
        damaged=len(rep.damaged_blobs),
        missing=len(rep.missing_blobs),
    )
    return rep


def _map_damage(repo: Repository, rep: ScrubReport, bad: dict[bytes, str]) -> None:
    missing: set[str] = set()
    for snap in repo.snapshots():
        paths: list[str] = []
        for t in snap.tree:
            if bytes.fromhex(t) in bad:
                paths.append("(manifest)")
            elif bytes.fromhex(t) not in repo.index:
                missing.add(t)
                paths.append("(manifest)")
        if paths:
            rep.affected.append({"snapshot": snap.id, "time": snap.time, "plan": snap.plan, "paths": paths})
            continue
        try:
            for line in iter_lines(repo, snap.tree):
                e = check_entry(line)
                for c in e.get("chunks", ()) if e["type"] == "file" else ():
                    cid = bytes.fromhex(c)
                    if cid in bad:
                        paths.append("/" + e["path"])
                        break
                    if cid not in repo.index:
                        missing.add(c)
                        paths.append("/" + e["path"])
                        break
        except DamagedData as err:
            rep.unreadable_snapshots.append({"snapshot": snap.id, "error": err.message})
        if paths:
            rep.affected.append({"snapshot": snap.id, "time": snap.time, "plan": snap.plan, "paths": paths[:1000]})
    rep.missing_blobs = sorted(missing)


def referenced(repo: Repository) -> set[bytes]:
    """Every blob id any snapshot references (tree and data). Raises `DamagedData` if a tree cannot be
    read: prune must not guess what an unreadable snapshot needs."""
    used: set[bytes] = set()
    for snap in repo.snapshots():
        used.update(bytes.fromhex(t) for t in snap.tree)
        for line in iter_lines(repo, snap.tree):
            e = check_entry(line)
            if e["type"] == "file":
                used.update(bytes.fromhex(c) for c in e["chunks"])
    return used


@dataclass
class PruneReport:
    packs_before: int = 0
    packs_deleted: int = 0
    packs_repacked: int = 0
    packs_written: int = 0
    blobs_dropped: int = 0
    bytes_freed: int = 0
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def prune(repo: Repository, *, repack_unused_fraction: float = 0.2, dry_run: bool = False) -> PruneReport:
    """Delete packs no snapshot uses; repack packs with more than `repack_unused_fraction` of their bytes
    unused. Order (crash-safe, see the format doc): new packs → new full index → old index files →
    old packs → tmp/."""
    rep = PruneReport(dry_run=dry_run)
    with repo.lock("exclusive", "prune"):
        repo.load_index()
        used = referenced(repo)
        by_pack: dict[str, list[tuple[bytes, Any]]] = defaultdict(list)
        for bid, ref in repo.index.items():
            by_pack[ref.pack].append((bid, ref))
        on_disk = set(repo.list_packs())
        rep.packs_before = len(on_disk)
        keep: dict[str, list[PackEntry]] = {}
        drop: set[str] = set(on_disk - set(by_pack))  # unindexed (damaged) packs
        repack: list[str] = []
        for pack, blobs in by_pack.items():
            # a blob indexed in two packs counts as used only in the pack the index points to
            live = [(b, r) for b, r in blobs if b in used]
            total = sum(r.length for _, r in blobs)
            live_bytes = sum(r.length for _, r in live)
            if not live:
                drop.add(pack)
            elif total - live_bytes > repack_unused_fraction * total:
                repack.append(pack)
            else:
                keep[pack] = [PackEntry(b, r.type, r.offset, r.length, r.raw_length) for b, r in blobs]
        rep.blobs_dropped = sum(1 for bid in repo.index if bid not in used)
        rep.packs_deleted, rep.packs_repacked = len(drop), len(repack)
        rep.bytes_freed = sum(_size(repo, p) for p in drop | set(repack))
        if dry_run:
            return rep
        written: dict[str, list[PackEntry]] = {}
        builder = PackBuilder()

        def close_pack() -> None:
            nonlocal builder
            if len(builder):
                path = repo.write_file("packs", builder.finish_parts(repo.crypto))
                written[path.name] = builder.entries
                builder = PackBuilder()

        for pack in repack:
            data = repo.pack_path(pack).read_bytes()
            for bid, ref in by_pack[pack]:
                if bid in used:
                    stored = data[ref.offset : ref.offset + ref.length]
                    repo.decode_blob(bid, stored, f"pack {pack[:12]}")  # never copy damage silently
                    builder.add(bid, ref.type, stored, ref.raw_length)
                    if builder.full:
                        close_pack()
        close_pack()
        rep.packs_written = len(written)
        rep.bytes_freed -= sum(_size(repo, p) for p in written)
        old_index = repo.index_files()
        repo.index, repo._indexed_packs = {}, set()
        repo.add_index({**keep, **written})
        for f in old_index:
            f.unlink()
        for pack in drop | set(repack):
            if pack not in written:
                repo.pack_path(pack).unlink(missing_ok=True)
        for t in (repo.path / "tmp").iterdir():
            t.unlink(missing_ok=True)
        repo.load_index()
    log.info("prune finished", **rep.to_dict())
    return rep


def _size(repo: Repository, pack: str) -> int:
    try:
        return repo.pack_path(pack).stat().st_size
    except OSError:
        return 0


def forget(
    repo: Repository,
    policies: dict[str, RetentionPolicy],
    *,
    dry_run: bool = False,
    default: RetentionPolicy | None = None,
) -> list[dict[str, Any]]:
    """Apply each plan's policy to its own snapshots (grouped by plan, as restic groups by host and
    paths); plans without a policy (and without `default`) keep everything. Returns the decisions."""
    out: list[dict[str, Any]] = []
    with repo.lock("exclusive", "forget"):
        groups: dict[str, list[Any]] = defaultdict(list)
        for s in repo.snapshots():
            groups[s.plan].append(s)
        for plan, snaps in sorted(groups.items()):
            policy = policies.get(plan, default) or RetentionPolicy()
            for d in apply_policy([(s.id, s.time) for s in snaps], policy):
                out.append({"snapshot": d.id, "plan": plan, "time": d.time, "keep": d.keep, "reasons": list(d.reasons)})
                if not d.keep and not dry_run:
                    repo.remove_snapshot(d.id)
    return out
