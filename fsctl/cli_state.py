"""`fsctl state backup FILE` / `fsctl state restore FILE`: the platform's own state (every database,
certificates and keys, the snap repository's key, the config file) as one archive, and back onto an
empty data dir. Runs on the host, beside or without `fsctl serve`, not through the API.

Databases are copied through SQLite's online backup API, so a running server's state is captured
consistently. Logs, metrics rollups beyond the database, the snap repository's packs and unpacked
releases are not state: they are either rebuilt or backed up by snap itself.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from fsctl import __version__
from fsctl.client import CliError

FORMAT = "infracore-state/1"
MANIFEST = "MANIFEST.json"
# Trees copied file by file (relative to the data dir); databases are found anywhere outside SKIP_DIRS.
TREES = ("certs", "gate", "snap/repo/keys")
FILES = ("snap/repo/config",)
SKIP_DIRS = ("logs", "run", "snap/repo", "releases", "artifacts", "restore", "upgrade-backups")
_LIMIT_BYTES = 8 * 1024**3  # a state archive is small; a huge one is not ours


@dataclass(frozen=True)
class Entry:
    """One file of the archive: its path in the archive, its size and SHA-256."""

    name: str
    size: int
    sha256: str
    mode: int


def valid_member_name(name: str) -> bool:
    """A member the restore may write: a plain relative path under `data/` or `config/`, no `..`."""
    p = PurePosixPath(name)
    return (
        not p.is_absolute()
        and ".." not in p.parts
        and len(p.parts) >= 2
        and p.parts[0] in ("data", "config")
        and "\\" not in name
        and "\0" not in name
    )


def check_manifest(doc: Any) -> list[Entry]:
    """The entries of a manifest, or a precise error: what is wrong with which entry."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else None
        raise CliError(f"not an Infra-Core state archive (format {found!r}, expected {FORMAT!r})")
    entries = []
    for i, e in enumerate(doc.get("files") or []):
        try:
            entry = Entry(str(e["name"]), int(e["size"]), str(e["sha256"]), int(e.get("mode", 0o600)) & 0o777)
        except (KeyError, TypeError, ValueError):
            raise CliError(f"state archive manifest: entry {i} is malformed") from None
        if not valid_member_name(entry.name):
            raise CliError(f"state archive manifest: entry {entry.name!r} is not a path the restore may write")
        entries.append(entry)
    return entries


# --- backup ---------------------------------------------------------------------------------------------


def _databases(data_dir: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(data_dir):
        rel = Path(root).relative_to(data_dir)
        dirs[:] = sorted(d for d in dirs if (rel / d).as_posix() not in SKIP_DIRS)
        found += [Path(root) / f for f in sorted(files) if f.endswith(".db")]
    return found


def _copy_database(src: Path, dst: Path) -> None:
    """A consistent copy of a live database (SQLite's backup API), read-only on the source."""
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=30)
    try:
        target = sqlite3.connect(dst)
        try:
            source.backup(target)
            check = target.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            target.close()
    finally:
        source.close()
    if check != "ok":
        raise CliError(
            f"{src}: the database fails SQLite's integrity check ({check})",
            hint="restore it from an earlier state backup, or `sqlite3 .recover` it",
        )


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file, read a MiB at a time (hex)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def collect(data_dir: Path, config_file: Path | None, staging: Path) -> list[Entry]:
    """Stage every state file under `staging` (databases through the backup API), returning the entries."""
    entries: list[Entry] = []

    def add(src_name: str, staged: Path, mode: int) -> None:
        entries.append(Entry(src_name, staged.stat().st_size, sha256_file(staged), mode))

    for db in _databases(data_dir):
        rel = db.relative_to(data_dir).as_posix()
        out = staging / "data" / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        _copy_database(db, out)
        add(f"data/{rel}", out, 0o600)
    paths = [p for t in TREES if (data_dir / t).is_dir() for p in sorted((data_dir / t).rglob("*"))]
    paths += [data_dir / f for f in FILES if (data_dir / f).is_file()]
    for p in paths:
        if p.is_symlink() or not p.is_file():
            continue
        rel = p.relative_to(data_dir).as_posix()
        out = staging / "data" / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, out)
        add(f"data/{rel}", out, p.stat().st_mode & 0o777)
    if config_file is not None and config_file.is_file():
        out = staging / "config" / "config.yaml"
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(config_file, out)
        add("config/config.yaml", out, 0o600)
    return entries


def backup(data_dir: Path, config_file: Path | None, out_file: Path) -> dict[str, Any]:
    if not (data_dir / "state.db").is_file():
        raise CliError(
            f"{data_dir} holds no Infra-Core state (no state.db)",
            hint="pass the server's --data-dir (default /var/lib/infracore as root, else ./var)",
        )
    with tempfile.TemporaryDirectory(prefix=".state-", dir=out_file.parent) as tmp:
        staging = Path(tmp) / "staging"
        entries = collect(data_dir, config_file, staging)
        manifest = {
            "format": FORMAT,
            "created_at": time.time(),
            "release": __version__,
            "data_dir": str(data_dir),
            "config_file": str(config_file) if config_file else None,
            "files": [e.__dict__ for e in entries],
        }
        part = Path(tmp) / "archive"
        # keys inside: the archive is the owner's alone from its first byte
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            body = json.dumps(manifest, indent=1).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime, info.mode = len(body), int(time.time()), 0o600
            tar.addfile(info, io.BytesIO(body))
            for e in entries:
                tar.add(staging / e.name, arcname=e.name, recursive=False)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(part, out_file)
    return {
        "file": str(out_file),
        "files": len(entries),
        "bytes": out_file.stat().st_size,
        "databases": [e.name for e in entries if e.name.endswith(".db")],
    }


# --- restore --------------------------------------------------------------------------------------------


def _empty(data_dir: Path) -> bool:
    return not data_dir.exists() or not any(data_dir.iterdir())


def restore(archive: Path, data_dir: Path) -> dict[str, Any]:
    if not _empty(data_dir):
        raise CliError(
            f"{data_dir} is not empty: a state restore only fills an empty data dir",
            hint="stop the server, move the old data dir aside, then restore",
        )
    try:
        tar = tarfile.open(archive, mode="r:*")
    except (OSError, tarfile.TarError) as e:
        raise CliError(f"{archive}: not a readable state archive ({e})") from None
    with tar:
        try:
            first = tar.next()
            if first is None or first.name != MANIFEST or not first.isfile() or first.size > 1 << 20:
                raise CliError(f"{archive}: not an Infra-Core state archive (no {MANIFEST} first)")
            f = tar.extractfile(first)
            assert f is not None
            entries = check_manifest(json.loads(f.read()))
        except (json.JSONDecodeError, UnicodeDecodeError, tarfile.TarError, EOFError, OSError) as e:
            raise CliError(f"{archive}: the manifest cannot be read ({e})") from None
        if sum(e.size for e in entries) > _LIMIT_BYTES:
            raise CliError(f"{archive}: the manifest announces more than {_LIMIT_BYTES >> 30} GiB")
        wanted = {e.name: e for e in entries}
        parent = data_dir.parent
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}.restore-", dir=parent))
        try:
            seen = _extract_checked(tar, wanted, staging, archive)
            missing = sorted(set(wanted) - seen)
            if missing:
                raise CliError(f"{archive}: {len(missing)} file(s) of the manifest are missing, e.g. {missing[0]}")
            config = staging / "config" / "config.yaml"
            restored_config = None
            if config.exists():
                restored_config = data_dir / "config.restored.yaml"
                os.replace(config, staging / "data" / "config.restored.yaml")
            if not (staging / "data").exists():
                (staging / "data").mkdir()
            os.chmod(staging / "data", 0o700)
            if data_dir.exists():
                data_dir.rmdir()  # empty, checked above
            os.replace(staging / "data", data_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return {
        "data_dir": str(data_dir),
        "files": len(entries),
        "config_file": str(restored_config) if restored_config else None,
    }


def _extract_checked(tar: tarfile.TarFile, wanted: dict[str, Entry], staging: Path, archive: Path) -> set[str]:
    """Every member written under `staging` and checked against the manifest; anything else refused."""
    seen: set[str] = set()
    for i, m in enumerate(tar):
        if i == 0:
            continue  # the manifest, read already
        e = wanted.get(m.name)
        if e is None or not m.isfile() or m.name in seen:
            raise CliError(
                f"{archive}: member {m.name!r} is not in the manifest (or not a plain file, or twice)",
                hint="the archive was altered; use the original",
            )
        out = staging / e.name
        out.parent.mkdir(parents=True, exist_ok=True)
        src = tar.extractfile(m)
        assert src is not None
        h = hashlib.sha256()
        n = 0
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, e.mode or 0o600)
        with os.fdopen(fd, "wb") as dst:
            while chunk := src.read(1 << 20):
                n += len(chunk)
                if n > e.size:
                    break
                h.update(chunk)
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        if n != e.size or h.hexdigest() != e.sha256:
            raise CliError(
                f"{archive}: {e.name} is damaged (its SHA-256 or size differs from the manifest)",
                hint="nothing was restored; use another copy of the archive",
            )
        seen.add(m.name)
    return seen


# --- commands -------------------------------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> tuple[Path, Path | None]:
    from core.errors import StartupError
    from core.settings import load_settings

    try:
        s = load_settings(args.config, data_dir=args.data_dir)
    except StartupError as e:
        raise CliError(e.message, hint=e.hint) from None
    return s.data_dir, s.config_file


def _backup(args: argparse.Namespace) -> int:
    data_dir, config_file = _settings(args)
    res = backup(data_dir, config_file, args.file.absolute())
    if args.json:
        print(json.dumps(res))
    else:
        dbs = ", ".join(d.removeprefix("data/") for d in res["databases"])
        print(
            f"state of {data_dir}: {res['files']} files (databases: {dbs}) in {res['file']}, "
            f"{res['bytes']} bytes (mode 0600: it holds keys)"
        )
    return 0


def _restore(args: argparse.Namespace) -> int:
    data_dir, _ = _settings(args)
    res = restore(args.file, data_dir)
    if args.json:
        print(json.dumps(res))
    else:
        print(f"restored {res['files']} files into {res['data_dir']}")
        if res["config_file"]:
            print(
                f"the config file was restored to {res['config_file']}: move it to /etc/infracore/config.yaml "
                f"or pass --config"
            )
    return 0


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("state", help="back up or restore the platform's own state (databases, keys, config)")
    ssub = p.add_subparsers(dest="state_command", required=True, metavar="ACTION")
    for name, fn, what in (
        ("backup", _backup, "write the state to FILE (.tar.gz, mode 0600)"),
        ("restore", _restore, "restore FILE onto an empty data dir"),
    ):
        q = ssub.add_parser(name, help=what)
        q.add_argument("file", type=Path, metavar="FILE")
        q.add_argument("--data-dir", type=Path, help="the server's data dir (default as for `fsctl serve`)")
        q.add_argument("--config", type=Path, help="the server's config file (default as for `fsctl serve`)")
        q.add_argument("--json", action="store_true", help="machine-readable output")
        q.set_defaults(func=fn)
