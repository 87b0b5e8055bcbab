"""The repository on disk (docs/snap-format.md): config, keys, packs, index, snapshots, locks, tmp.

`Repository` is synchronous and meant to be used from worker threads, never on the event loop. Its
in-memory index may be read from several threads; writes (`BlobSaver`, snapshots) come from one thread
per operation, and operations that change what exists take the repository lock (`snap.lock`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import socket
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
import zstandard

from snap import crypto as crypto_mod
from snap.chunker import ChunkerParams
from snap.crypto import Crypto, PlainCrypto
from snap.errors import DamagedData, RepositoryError, SnapshotNotFound
from snap.lock import Kind, RepoLock
from snap.pack import PackBuilder, PackEntry, parse_pack

log = structlog.get_logger("snap.repo")

FORMAT_VERSION = 1
INDEX_EVERY_PACKS = 16
_ZSTD_LEVEL = 3  # zstd's default, and restic's "auto" (docs/snap-format.md, "Blobs and chunk naming")


@dataclass(frozen=True, slots=True)
class BlobRef:
    pack: str
    type: int
    offset: int
    length: int
    raw_length: int


@dataclass(frozen=True)
class SnapshotInfo:
    id: str
    time: float
    plan: str
    paths: list[str]
    hostname: str
    parent: str | None
    tree: list[str]
    stats: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": self.time,
            "plan": self.plan,
            "paths": self.paths,
            "hostname": self.hostname,
            "parent": self.parent,
            "stats": self.stats,
        }


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Repository:
    """A repository directory, opened (config read, keys unlocked, index loaded)."""

    def __init__(self, path: Path, config: dict[str, Any], crypto: Crypto) -> None:
        self.path = path
        self.config = config
        self.crypto = crypto
        self.chunker_params = ChunkerParams.from_dict(config["chunker"])
        self.index: dict[bytes, BlobRef] = {}
        self._indexed_packs: set[str] = set()
        self.damaged_index_files: list[str] = []
        self._tls_zstd = _ThreadLocalZstd()

    # --- opening -----------------------------------------------------------------------------------

    @classmethod
    def init(cls, path: Path, *, encryption: str = "none", passphrase: bytes | None = None) -> Repository:
        """Create a repository in `path` (which must not exist or be empty). CPU-heavy with encryption."""
        if path.exists() and any(path.iterdir()):
            raise RepositoryError(
                f"cannot create a repository in {path}: the directory is not empty",
                hint="choose an empty or new directory",
            )
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        for d in ("keys", "packs", "index", "snapshots", "locks", "tmp"):
            (path / d).mkdir(exist_ok=True, mode=0o700)
        crypto: Crypto = PlainCrypto()
        if encryption == "aes-256-gcm":
            if not passphrase:
                raise RepositoryError(
                    "an encrypted repository needs a passphrase",
                    hint="set snap.passphrase_file to a file holding a long random string",
                )
            doc, crypto = crypto_mod.new_key(passphrase)
            data = json.dumps(doc).encode()
            _atomic_write(path / "tmp", path / "keys" / hashlib.sha256(data).hexdigest(), data)
        elif encryption != "none":
            raise RepositoryError(f"unknown encryption {encryption!r}", hint="use 'none' or 'aes-256-gcm'")
        config = {
            "version": FORMAT_VERSION,
            "id": secrets.token_hex(32),
            "chunker": ChunkerParams().to_dict(),
            "compression": "zstd",
            "encryption": encryption,
        }
        _atomic_write(path / "tmp", path / "config", json.dumps(config, indent=1).encode())
        log.info("repository created", path=str(path), encryption=encryption)
        return cls(path, config, crypto)

    @classmethod
    def open(cls, path: Path, *, passphrase: bytes | None = None, load_index: bool = True) -> Repository:
        """Open an existing repository and (unless told not to: every operation reloads it under its lock)
        load its index. CPU-heavy with encryption (scrypt)."""
        try:
            config = json.loads((path / "config").read_bytes())
        except FileNotFoundError:
            raise RepositoryError(
                f"{path} is not a snap repository (no config file)",
                hint="create one with Repository.init, or check the path",
            ) from None
        except (OSError, ValueError) as e:
            raise RepositoryError(f"{path}/config cannot be read: {e}") from e
        if config.get("version") != FORMAT_VERSION:
            raise RepositoryError(
                f"{path}: repository format version {config.get('version')!r} is not known "
                f"(this release reads version {FORMAT_VERSION})",
                hint="use the release that wrote it",
            )
        crypto: Crypto = PlainCrypto()
        if config.get("encryption") == "aes-256-gcm":
            if not passphrase:
                raise RepositoryError(
                    f"{path} is encrypted and no passphrase was given", hint="set snap.passphrase_file"
                )
            keys = sorted((path / "keys").iterdir())
            last: Exception | None = None
            for k in keys:
                try:
                    crypto = crypto_mod.unlock(json.loads(k.read_bytes()), passphrase)
                    break
                except Exception as e:
                    last = e
            else:
                raise last or RepositoryError(f"{path}: no key files in keys/")
        repo = cls(path, config, crypto)
        if load_index:
            repo.load_index()
        return repo

    # --- files -------------------------------------------------------------------------------------

    def write_file(self, kind: str, data: bytes | list[bytes]) -> Path:
        """Write a content-named file (`kind` is snapshots/index/locks, or packs) atomically; its path.
        `data` may be a list of pieces, written back to back without being joined."""
        parts = data if isinstance(data, list) else [data]
        h = hashlib.sha256()
        for part in parts:
            h.update(part)
        name = h.hexdigest()
        dest = self.path / kind / name[:2] / name if kind == "packs" else self.path / kind / name
        _atomic_write(self.path / "tmp", dest, parts)
        return dest

    def _seal_doc(self, doc: Any) -> bytes:
        return self.crypto.seal(self._tls_zstd.c().compress(json.dumps(doc, separators=(",", ":")).encode()))

    def _open_doc(self, data: bytes, what: str) -> Any:
        try:
            return json.loads(self._tls_zstd.d().decompress(self.crypto.open(data, what)))
        except (zstandard.ZstdError, ValueError) as e:
            raise DamagedData(f"{what}: cannot be decoded ({e})") from e

    # --- index -------------------------------------------------------------------------------------

    def pack_path(self, pack: str) -> Path:
        return self.path / "packs" / pack[:2] / pack

    def list_packs(self) -> list[str]:
        out: list[str] = []
        for sub in (self.path / "packs").iterdir():
            if sub.is_dir():
                out.extend(p.name for p in sub.iterdir() if len(p.name) == 64)
        return sorted(out)

    def index_files(self) -> list[Path]:
        return sorted(p for p in (self.path / "index").iterdir() if len(p.name) == 64)

    def load_index(self) -> None:
        """(Re)load every index file, then index packs no index file mentions (an interrupted backup's)."""
        index: dict[bytes, BlobRef] = {}
        packs: set[str] = set()
        damaged: list[str] = []
        for f in self.index_files():
            try:
                doc = self._open_doc(f.read_bytes(), f"index {f.name}")
            except (DamagedData, OSError) as e:
                # the packs it described are re-indexed from their trailers below, as orphans
                log.warning("index file damaged; re-indexing its packs", index=f.name, error=str(e))
                damaged.append(f.name)
                continue
            for p in doc["packs"]:
                packs.add(p["id"])
                for bid, btype, off, length, raw in p["blobs"]:
                    index.setdefault(bytes.fromhex(bid), BlobRef(p["id"], btype, off, length, raw))
        self.index, self._indexed_packs = index, packs
        self.damaged_index_files = damaged
        orphans = [p for p in self.list_packs() if p not in packs]
        if orphans:
            recovered: dict[str, list[PackEntry]] = {}
            for p in orphans:
                try:
                    recovered[p] = parse_pack(self.pack_path(p).read_bytes(), self.crypto, p)
                except DamagedData as e:
                    log.warning("unindexed pack is damaged; leaving it for prune", pack=p, error=e.message)
            if recovered:
                self.add_index(recovered)
                log.info("indexed packs left by an interrupted run", packs=len(recovered))

    def add_index(self, packs: dict[str, list[PackEntry]]) -> None:
        """Write an index file for `packs` (already on disk) and add them to the in-memory index."""
        doc = {
            "version": 1,
            "packs": [
                {"id": p, "blobs": [[e.id.hex(), e.type, e.offset, e.length, e.raw_length] for e in entries]}
                for p, entries in packs.items()
            ],
        }
        self.write_file("index", self._seal_doc(doc))
        for p, entries in packs.items():
            self._indexed_packs.add(p)
            for e in entries:
                self.index.setdefault(e.id, BlobRef(p, e.type, e.offset, e.length, e.raw_length))

    # --- blobs -------------------------------------------------------------------------------------

    def store_form(self, plaintext: bytes | memoryview) -> bytes:
        """Compressed and sealed, as a blob is stored. Thread-safe; CPU-heavy."""
        return self.crypto.seal(self._tls_zstd.c().compress(plaintext))

    def decode_blob(self, blob_id: bytes, stored: bytes, where: str) -> bytes:
        """The verified plaintext of a stored blob, or `DamagedData` saying where and why."""
        what = f"blob {blob_id.hex()[:12]} in {where}"
        try:
            plain = self._tls_zstd.d().decompress(self.crypto.open(stored, what))
        except zstandard.ZstdError as e:
            raise DamagedData(f"{what}: cannot be decompressed ({e})") from e
        if self.crypto.blob_id(plain) != blob_id:
            raise DamagedData(f"{what}: content does not match its hash")
        return plain

    def read_blob(self, blob_id: bytes) -> bytes:
        ref = self.index.get(blob_id)
        if ref is None:
            raise DamagedData(
                f"blob {blob_id.hex()[:12]} is missing from the repository (not in any index)",
                hint="run `fsctl snap scrub --all` to list the affected snapshots",
            )
        where = f"pack {ref.pack[:12]} at offset {ref.offset}"
        try:
            with open(self.pack_path(ref.pack), "rb") as f:
                f.seek(ref.offset)
                stored = f.read(ref.length)
        except OSError as e:
            raise DamagedData(f"blob {blob_id.hex()[:12]}: {where} cannot be read ({e.strerror})") from e
        if len(stored) != ref.length:
            raise DamagedData(f"blob {blob_id.hex()[:12]}: {where} is truncated ({len(stored)} of {ref.length} bytes)")
        return self.decode_blob(blob_id, stored, where)

    # --- snapshots ---------------------------------------------------------------------------------

    def save_snapshot(
        self, *, time: float, plan: str, paths: list[str], parent: str | None, tree: list[str], stats: dict[str, Any]
    ) -> SnapshotInfo:
        doc = {
            "version": 1,
            "time": datetime.fromtimestamp(time, UTC).isoformat(),
            "plan": plan,
            "paths": paths,
            "hostname": socket.gethostname(),
            "parent": parent,
            "tree": tree,
            "stats": stats,
        }
        path = self.write_file("snapshots", self._seal_doc(doc))
        return self._snapshot_from(path.name, doc)

    def _snapshot_from(self, sid: str, doc: dict[str, Any]) -> SnapshotInfo:
        return SnapshotInfo(
            sid,
            datetime.fromisoformat(doc["time"]).timestamp(),
            doc["plan"],
            doc["paths"],
            doc["hostname"],
            doc.get("parent"),
            doc["tree"],
            doc.get("stats", {}),
        )

    def snapshots(self) -> list[SnapshotInfo]:
        """Every readable snapshot, oldest first. Unreadable ones are logged and skipped (scrub reports them)."""
        out = []
        for p in (self.path / "snapshots").iterdir():
            if len(p.name) != 64:
                continue
            try:
                out.append(self._snapshot_from(p.name, self._open_doc(p.read_bytes(), f"snapshot {p.name[:12]}")))
            except (DamagedData, KeyError, OSError) as e:
                log.warning("unreadable snapshot", snapshot=p.name, error=str(e))
        return sorted(out, key=lambda s: (s.time, s.id))

    def snapshot(self, ref: str) -> SnapshotInfo:
        """A snapshot by id or unique id prefix (at least 4 hex digits)."""
        if len(ref) < 4 or any(c not in "0123456789abcdef" for c in ref):
            raise SnapshotNotFound(f"snapshot id {ref!r} must be at least 4 lowercase hex digits")
        matches = [p for p in (self.path / "snapshots").iterdir() if p.name.startswith(ref) and len(p.name) == 64]
        if not matches:
            raise SnapshotNotFound(f"no snapshot {ref!r}", hint="list them with `fsctl snap ls`")
        if len(matches) > 1:
            raise SnapshotNotFound(f"snapshot id {ref!r} is ambiguous ({len(matches)} match)", hint="give more digits")
        p = matches[0]
        return self._snapshot_from(p.name, self._open_doc(p.read_bytes(), f"snapshot {p.name[:12]}"))

    def remove_snapshot(self, sid: str) -> None:
        (self.path / "snapshots" / sid).unlink(missing_ok=True)

    # --- locks -------------------------------------------------------------------------------------

    def lock(self, kind: Kind, op: str) -> RepoLock:
        return RepoLock(self.path / "locks", kind, op, lambda data: self.write_file("locks", data)).acquire()


class BlobSaver:
    """Adds stored blobs to packs and packs to the repository, with an index file every
    `INDEX_EVERY_PACKS` packs and at `flush()`. Used by one thread at a time.

    Full packs are written (trailer, hash, write, fsync, rename) by one writer thread while the caller
    goes on reading and chunking; at most `_MAX_WRITING` packs wait for it (back-pressure). A pack is
    listed in an index file only after its write has finished, so the format's order holds."""

    _MAX_WRITING = 2

    def __init__(self, repo: Repository, pack_target_bytes: int | None = None) -> None:
        self.repo = repo
        self._target = pack_target_bytes
        self._pack = self._new_pack()
        self._pending: set[bytes] = set()
        self._unindexed: dict[str, list[PackEntry]] = {}
        self._writing: deque[Future[tuple[str, list[PackEntry]]]] = deque()
        self._writer: ThreadPoolExecutor | None = None
        self.stored_bytes = 0
        self.packs_written = 0

    def _new_pack(self) -> PackBuilder:
        return PackBuilder(self._target) if self._target else PackBuilder()

    def known(self, blob_id: bytes) -> bool:
        return blob_id in self.repo.index or blob_id in self._pending

    def add(self, blob_id: bytes, blob_type: int, stored: bytes, raw_length: int) -> bool:
        """Queue a blob unless it is already stored; True when it was new."""
        if self.known(blob_id):
            return False
        self._pack.add(blob_id, blob_type, stored, raw_length)
        self._pending.add(blob_id)
        self.stored_bytes += len(stored)
        if self._pack.full:
            self._write_pack()
        return True

    def _store(self, pack: PackBuilder) -> tuple[str, list[PackEntry]]:
        return self.repo.write_file("packs", pack.finish_parts(self.repo.crypto)).name, pack.entries

    def _write_pack(self) -> None:
        if len(self._pack):
            if self._writer is None:
                self._writer = ThreadPoolExecutor(1, thread_name_prefix="snap-pack")
            self._writing.append(self._writer.submit(self._store, self._pack))
            self._pack = self._new_pack()
        self._collect(self._MAX_WRITING)

    def _collect(self, keep: int) -> None:
        while len(self._writing) > keep or (self._writing and self._writing[0].done()):
            name, entries = self._writing.popleft().result()
            self._unindexed[name] = entries
            self.packs_written += 1
        if len(self._unindexed) >= INDEX_EVERY_PACKS:
            self._write_index()

    def _write_index(self) -> None:
        if self._unindexed:
            self.repo.add_index(self._unindexed)
            for entries in self._unindexed.values():
                self._pending.difference_update(e.id for e in entries)
            self._unindexed = {}

    def flush(self) -> None:
        """Write the open pack, wait for the writer, and write an index file for every pack not yet
        indexed. Call it also on failure, so what was written is reused by the next run."""
        try:
            self._write_pack()
            self._collect(0)
        finally:
            # packs whose write finished are indexed even if another one failed
            for fut in list(self._writing):
                if fut.done() and fut.exception() is None:
                    name, entries = fut.result()
                    self._unindexed[name] = entries
            self._writing.clear()
            self._write_index()
            if self._writer is not None:
                self._writer.shutdown(wait=True)
                self._writer = None


class _ThreadLocalZstd:
    """zstd (de)compressor objects are not thread-safe: one pair per thread."""

    def __init__(self) -> None:
        import threading

        self._local = threading.local()

    def c(self) -> zstandard.ZstdCompressor:
        c = getattr(self._local, "c", None)
        if c is None:
            c = self._local.c = zstandard.ZstdCompressor(level=_ZSTD_LEVEL)
        return c

    def d(self) -> zstandard.ZstdDecompressor:
        d = getattr(self._local, "d", None)
        if d is None:
            d = self._local.d = zstandard.ZstdDecompressor()
        return d


def _atomic_write(tmp_dir: Path, dest: Path, data: bytes | list[bytes]) -> None:
    """temp file + fsync + rename + fsync of the directory (docs/snap-format.md, "Atomic writes")."""
    parts = data if isinstance(data, list) else [data]
    tmp = tmp_dir / f"{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb", buffering=0) as f:
            for part in parts:
                view = memoryview(part)
                while view:  # a raw write may be partial
                    view = view[f.write(view) or 0 :]
            os.fsync(f.fileno())
        dest.parent.mkdir(exist_ok=True, mode=0o700)
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def iter_lines(repo: Repository, tree: list[str]) -> Iterator[bytes]:
    """The manifest lines stored in a snapshot's tree blobs, in order."""
    carry = b""
    for bid in tree:
        data = carry + repo.read_blob(bytes.fromhex(bid))
        lines = data.split(b"\n")
        carry = lines.pop()
        yield from (ln for ln in lines if ln)
    if carry:
        yield carry
