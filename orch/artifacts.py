"""Artifacts: files a packager or CI uploads (a tar.gz / tar unpacked at install, or a single file),
stored once per SHA-256 under `<data>/artifacts/`, and installed into `<data>/releases/<service>/<version>/`
(a release's `${installPath}`) for orch's deploys.

Theory of operation. An upload streams into a temp file in bounded pieces, hashed as it is written (in
the store's worker threads, never on the loop); only when the whole body is in, its size is within the
limit, its SHA-256 matches the client's (when given) and, for an archive, every member passed the rules
of `orch._tarcheck` does it move to `blobs/<sha[:2]>/<sha>`. The artifact's id is its SHA-256, so the same
bytes uploaded twice are one artifact. `install` claims `(service, version)` in the state DB first, then
unpacks through a staging dir renamed into place (orch/_unpack.py): a release dir either exists whole or
not at all, and a crash between the two steps is repaired by the next `install` of that version.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import os
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Any

import structlog

from core.clock import Clock, SystemClock
from core.errors import BadRequest, Conflict, NotFound, PayloadTooLarge, Unavailable
from core.store import Migration, Store
from core.tasks import TaskSet
from core.workers import WorkerPool
from orch import _unpack
from orch._tarcheck import TarLimits, TarRejected
from orch.release import VERSION_RE, VERSION_RULE
from orch.spec import NAME_RE

log = structlog.get_logger("orch.artifacts")

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
FILENAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
WRITE_CHUNK = 1024 * 1024  # bytes gathered on the loop before one write+hash job in a worker

MIGRATIONS = [
    Migration(
        1,
        "artifacts, the services they were uploaded for, and installs",
        """
CREATE TABLE artifacts (
    id TEXT PRIMARY KEY,            -- the SHA-256 of the bytes, hex
    kind TEXT NOT NULL CHECK (kind IN ('tar.gz', 'tar', 'file')),
    size INTEGER NOT NULL,
    filename TEXT NOT NULL,
    members INTEGER NOT NULL,
    unpacked_bytes INTEGER NOT NULL,
    created_at REAL NOT NULL,
    created_by TEXT
);
CREATE TABLE artifact_services (
    artifact_id TEXT NOT NULL REFERENCES artifacts(id) ON DELETE CASCADE,
    service TEXT NOT NULL,
    added_at REAL NOT NULL,
    added_by TEXT,
    PRIMARY KEY (artifact_id, service)
);
CREATE TABLE artifact_installs (
    service TEXT NOT NULL,
    version TEXT NOT NULL,
    artifact_id TEXT NOT NULL,
    installed_at REAL NOT NULL,
    PRIMARY KEY (service, version)
);
""",
    ),
]


def check_version(version: str) -> str:
    if not VERSION_RE.match(version or ""):
        raise BadRequest(
            f"invalid version {version!r}: use {VERSION_RULE}; it names the release dir", details={"field": "version"}
        )
    return version


def check_service(service: str) -> str:
    if not NAME_RE.match(service or ""):
        raise BadRequest(f"invalid service name {service!r}", details={"field": "service"})
    return service


def check_sha256(value: str | None) -> str | None:
    """The client's expected SHA-256 (hex, any case; `sha256:` prefix allowed), or None."""
    if value is None or value == "":
        return None
    v = value.strip().lower().removeprefix("sha256:")
    if not SHA256_RE.match(v):
        raise BadRequest("the expected SHA-256 must be 64 hex digits", details={"field": "sha256"})
    return v


def _write(f: IO[bytes], h: Any, data: bytes) -> None:
    h.update(data)  # hashlib drops the GIL for large buffers
    f.write(data)


def _close(f: IO[bytes]) -> None:
    f.flush()
    os.fsync(f.fileno())
    f.close()


class ArtifactStore:
    """The artifact store as a component. Safe for concurrent use by tasks of one loop; `install` of one
    `(service, version)` runs once at a time (a second caller waits, then finds it done)."""

    name = "artifacts"

    def __init__(
        self,
        data_dir: Path,
        store: Store,
        *,
        max_bytes: int,
        limits: TarLimits,
        keep_count: int = 10,
        clock: Clock | None = None,
        pool: WorkerPool | None = None,
    ) -> None:
        self.root = data_dir / "artifacts"
        self.blobs = self.root / "blobs"
        self.tmp = self.root / "tmp"
        self.releases = data_dir / "releases"
        self.store = store
        self.max_bytes = max_bytes
        self.limits = limits
        self.keep_count = keep_count
        self._clock = clock or SystemClock()
        # Threads: the jobs are file I/O and hashing, which release the GIL. Bounded: a full pool is a
        # 503 with Retry-After (PoolBusy), not an unbounded queue of uploads.
        self._pool = pool or WorkerPool("artifacts", workers=2, backlog=16, kind="thread")
        self._install_locks: dict[tuple[str, str], asyncio.Lock] = {}
        # The installs run in tasks of the store's own (a caller cancelled mid-way does not cut one short),
        # owned here: `stop` cancels and awaits them before the worker pool goes.
        self._tasks = TaskSet("artifacts")
        self._stopping = False

    # --- component ------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.store.migrate("artifacts", MIGRATIONS)
        for d in (self.blobs, self.tmp, self.releases):
            d.mkdir(parents=True, exist_ok=True, mode=0o700 if d != self.releases else 0o755)
        await self._pool.start()
        await self._pool.run(_clear_dir, self.tmp)  # uploads a crash cut short

    async def stop(self, drain_timeout_s: float) -> None:
        """Cancel the installs under way and wait for them (each drops its claim: the next install of that
        version cleans what a cut-short unpack left and unpacks again), then the worker pool."""
        self._stopping = True
        await self._tasks.close(drain_timeout_s)
        await self._pool.stop(drain_timeout_s)

    # --- upload ---------------------------------------------------------------------------------

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"the artifact is larger than the {self.max_bytes}-byte limit",
            hint="raise orch.artifact_max_bytes in the server's config, or upload less",
            details={"limit_bytes": self.max_bytes},
        )

    async def receive(
        self,
        chunks: AsyncIterator[bytes],
        *,
        content_length: int | None = None,
        expected_sha256: str | None = None,
        filename: str = "artifact",
        service: str | None = None,
        actor: str | None = None,
    ) -> dict[str, Any]:
        """Store an upload; the artifact record (with `deduplicated`). Nothing is kept when it fails:
        too large (`PayloadTooLarge`), a SHA-256 other than `expected_sha256` or an archive member
        breaking a rule (`BadRequest`), or the client going away."""
        expected = check_sha256(expected_sha256)
        if not FILENAME_RE.match(filename):
            raise BadRequest(
                f"invalid file name {filename!r}: a plain name of letters, digits and . _ + -",
                details={"field": "filename"},
            )
        if service is not None:
            check_service(service)
        if content_length is not None and content_length > self.max_bytes:
            raise self._too_large()
        tmp = self.tmp / f"upload-{secrets.token_hex(8)}"
        f: IO[bytes] = await self._pool.run(open, tmp, "xb")
        h = hashlib.sha256()
        size = 0
        buf = bytearray()
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > self.max_bytes:
                    raise self._too_large()
                buf += chunk
                if len(buf) >= WRITE_CHUNK:
                    # Not reading the socket while the worker writes is the back-pressure on the client.
                    await self._pool.run(_write, f, h, bytes(buf))
                    buf.clear()
            if buf:
                await self._pool.run(_write, f, h, bytes(buf))
            await self._pool.run(_close, f)
            sha = h.hexdigest()
            if expected is not None and sha != expected:
                raise BadRequest(
                    "the upload's SHA-256 does not match the one sent: the file was changed or cut "
                    "on the way; nothing was kept",
                    hint="upload again",
                    code="sha256_mismatch",
                    details={"expected": expected, "actual": sha, "size": size},
                )
            record = await self._keep(tmp, sha, size, filename, actor)
        except BaseException:
            f.close()
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        if service is not None:
            await self.store.execute(
                "INSERT OR IGNORE INTO artifact_services (artifact_id, service, added_at, added_by) VALUES (?,?,?,?)",
                (sha, service, self._clock.now(), actor),
            )
        out = await self.get(sha)
        out["deduplicated"] = record["deduplicated"]
        log.info(
            "artifact stored",
            artifact_id=sha,
            size=size,
            kind=out["kind"],
            service=service,
            deduplicated=record["deduplicated"],
        )
        return out

    async def _keep(self, tmp: Path, sha: str, size: int, filename: str, actor: str | None) -> dict[str, Any]:
        blob = self.blob_path(sha)
        row = await self.store.fetchone("SELECT id FROM artifacts WHERE id = ?", (sha,))
        if row is not None and await self._pool.run(blob.exists):
            await self._pool.run(tmp.unlink)
            return {"deduplicated": True}
        try:
            kind, counts = await self._pool.run(_classify, tmp, self.limits)
        except TarRejected as e:
            raise BadRequest(
                f"the archive was refused: member {e}",
                code="archive_refused",
                hint="build the archive from inside the release dir (tar -czf app.tgz -C DIR .) "
                "with plain files, dirs and links that stay inside it",
                details={"member": e.member, "rule": e.rule},
            ) from None
        except _unpack.ArchiveInvalid as e:
            raise BadRequest(str(e), code="archive_invalid", hint="upload the archive again") from None
        await self._pool.run(_place, tmp, blob)
        async with self.store.transaction() as db:
            await db.execute(
                "INSERT OR IGNORE INTO artifacts (id, kind, size, filename, members, unpacked_bytes, created_at, "
                "created_by) VALUES (?,?,?,?,?,?,?,?)",
                (sha, kind, size, filename, counts["members"], counts["unpacked_bytes"], self._clock.now(), actor),
            )
        return {"deduplicated": False}

    def blob_path(self, sha: str) -> Path:
        return self.blobs / sha[:2] / sha

    # --- queries --------------------------------------------------------------------------------

    async def get(self, artifact_id: str) -> dict[str, Any]:
        row = await self.store.fetchone("SELECT * FROM artifacts WHERE id = ?", (artifact_id,))
        if row is None:
            raise NotFound(f"no artifact with id {artifact_id!r}", hint="see GET /api/artifacts")
        return await self._record(dict(row))

    async def list(self, service: str | None = None) -> list[dict[str, Any]]:
        if service is None:
            rows = await self.store.fetchall("SELECT * FROM artifacts ORDER BY created_at DESC, id")
        else:
            rows = await self.store.fetchall(
                "SELECT a.* FROM artifacts a JOIN artifact_services s ON s.artifact_id = a.id "
                "WHERE s.service = ? ORDER BY a.created_at DESC, a.id",
                (service,),
            )
        links: dict[str, list[str]] = {}
        for r in await self.store.fetchall("SELECT artifact_id, service FROM artifact_services ORDER BY service"):
            links.setdefault(r["artifact_id"], []).append(r["service"])
        return [{**dict(r), "sha256": r["id"], "services": links.get(r["id"], [])} for r in rows]

    async def _record(self, d: dict[str, Any]) -> dict[str, Any]:
        svc = await self.store.fetchall(
            "SELECT service FROM artifact_services WHERE artifact_id = ? ORDER BY service", (d["id"],)
        )
        d["sha256"] = d["id"]
        d["services"] = [r["service"] for r in svc]
        return d

    async def services_of(self, artifact_id: str) -> set[str]:
        return set((await self.get(artifact_id))["services"])

    async def installs(self, service: str) -> builtins.list[dict[str, Any]]:
        """The versions of `service` unpacked on disk, newest first."""
        rows = await self.store.fetchall(
            "SELECT version, artifact_id, installed_at FROM artifact_installs WHERE service = ? "
            "ORDER BY installed_at DESC, version DESC",
            (check_service(service),),
        )
        return [{**dict(r), "path": str(self.release_dir(service, r["version"]))} for r in rows]

    # --- install and prune ----------------------------------------------------------------------

    def release_dir(self, service: str, version: str) -> Path:
        return self.releases / check_service(service) / check_version(version)

    async def install(self, artifact_id: str, service: str, version: str) -> Path:
        """Unpack the artifact into `<data>/releases/<service>/<version>/` and return that path.

        Idempotent: the same artifact for the same version again returns the existing dir. Another
        artifact for an installed version is a `Conflict` (a version's files never change under it).
        A refused archive leaves no dir. Runs in the store's worker threads (`PoolBusy` when full)."""
        dest = self.release_dir(service, version)
        art = await self.get(artifact_id)
        # The claim, the unpack and its record run to their end in a task of their own: a caller cancelled
        # mid-way (a client gone) must not leave a dir without its record or a record without its dir.
        if self._stopping:
            raise Unavailable("the artifact store is stopping", hint="deploy again once the server is back")

        async def run() -> BaseException | None:  # the install's error is the caller's, not a crashed task
            try:
                await self._install(artifact_id, art, service, version, dest)
            except Exception as e:
                return e
            return None

        task = self._tasks.spawn(f"install:{service}:{version}", run())
        try:
            error = await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.cancelled():
                raise  # the caller is cancelled; the install runs on (and `stop` ends it)
            raise Unavailable(
                f"the install of {service} version {version} was stopped: the server is stopping",
                hint="deploy again once the server is back (the cut-short unpack is cleaned and redone)",
            ) from None
        if error is not None:
            raise error
        log.info("artifact installed", artifact_id=artifact_id, service=service, version=version, path=str(dest))
        return dest

    async def _install(self, artifact_id: str, art: dict[str, Any], service: str, version: str, dest: Path) -> None:
        lock = self._install_locks.setdefault((service, version), asyncio.Lock())
        async with lock:
            row = await self.store.fetchone(
                "SELECT artifact_id FROM artifact_installs WHERE service = ? AND version = ?", (service, version)
            )
            exists = await self._pool.run(dest.exists)
            if row is not None and row["artifact_id"] != artifact_id:
                raise Conflict(
                    f"{service} version {version} is already installed from artifact {row['artifact_id'][:12]}",
                    hint="deploy the new artifact as a new version",
                    details={"artifact_id": row["artifact_id"]},
                )
            if row is not None and exists:
                return
            if row is None and exists:
                # `<data>/releases/` is the store's: a dir with no record is what an install interrupted
                # by an older version of this code (or a crash between the rename and its record) left.
                log.warning("half-installed release dir removed", service=service, version=version, path=str(dest))
                await self._pool.run(_unpack.remove_tree, dest)
            if row is None:  # the claim first: a crash before the rename is repaired by the next install
                await self.store.execute(
                    "INSERT INTO artifact_installs (service, version, artifact_id, installed_at) VALUES (?,?,?,?)",
                    (service, version, artifact_id, self._clock.now()),
                )
            try:
                await self._pool.run(
                    _unpack.unpack, self.blob_path(artifact_id), art["kind"], dest, self.limits, art["filename"]
                )
            except BaseException as e:
                await self.store.execute(
                    "DELETE FROM artifact_installs WHERE service = ? AND version = ?", (service, version)
                )
                if isinstance(e, TarRejected):
                    raise BadRequest(
                        f"the archive was refused: member {e}",
                        code="archive_refused",
                        details={"member": e.member, "rule": e.rule},
                    ) from None
                raise

    async def prune(self, service: str, keep: set[str], keep_count: int | None = None) -> builtins.list[str]:
        """Remove `service`'s release dirs beyond the newest `keep_count` (default the store's), never
        one whose version is in `keep` (the current and previous releases). Returns the removed versions."""
        count = self.keep_count if keep_count is None else keep_count
        installs = await self.installs(service)
        doomed = [i["version"] for i in installs[count:] if i["version"] not in keep]
        for version in doomed:
            await self._pool.run(_unpack.remove_tree, self.release_dir(service, version))
            await self.store.execute(
                "DELETE FROM artifact_installs WHERE service = ? AND version = ?", (service, version)
            )
        await self._pool.run(_clear_staging, self.releases / service)
        if doomed:
            log.info("releases pruned", service=service, removed=doomed, kept=count)
        return doomed


def _classify(path: Path, limits: TarLimits) -> tuple[str, dict[str, int]]:
    kind = _unpack.detect_kind(path)
    if kind == "file":
        return kind, {"members": 1, "unpacked_bytes": path.stat().st_size}
    return kind, _unpack.scan(path, kind, limits)


def _place(tmp: Path, blob: Path) -> None:
    blob.parent.mkdir(mode=0o700, exist_ok=True)
    os.chmod(tmp, 0o400)
    os.replace(tmp, blob)


def _clear_dir(d: Path) -> None:
    for p in d.iterdir():
        with contextlib.suppress(OSError):
            p.unlink()


def _clear_staging(d: Path) -> None:
    if d.is_dir():
        for p in d.iterdir():
            if p.name.startswith(".staging-"):
                _unpack.remove_tree(p)
