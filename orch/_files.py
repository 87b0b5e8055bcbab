"""Writing a service's config files inside its workdir and nowhere else.

The spec refuses paths that leave the workdir as text (`orch.spec.config_path_problem`); this writer
also refuses what only the disk can show: a symlink anywhere on the way (a directory or the file itself
replaced by a link to /etc, say, by the service that owns the workdir). It walks the path one component
at a time with `openat(..., O_NOFOLLOW)` from `/` — the workdir's own path included, as the caller resolved
and checked it — so no check-then-open race lets a link swapped in between redirect a write or a read.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import posixpath
import pwd
import secrets
import stat
from typing import Any


class ConfigFileRefused(Exception):
    """The path leaves the workdir or goes through a symlink; the message says which."""


# Directories a config file never goes into without `allow_system_paths: true`: the host's configuration,
# programs, boot files, kernel interfaces, root's home, cron and mail spools.
SYSTEM_DIRS: tuple[str, ...] = (
    "/",
    "/etc",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/boot",
    "/dev",
    "/proc",
    "/sys",
    "/root",
    "/var/spool",
    "/var/run",
    "/run",
    "/var/lib/dpkg",
)


def system_dir_problem(workdir: str, data_dir: str, releases_dir: str) -> str | None:
    """Why config files may not be written under `workdir` (absolute, links resolved), or None. Pure.
    Refused: a system directory or one inside it (`/etc/cron.d`), `/` and the platform's data dir (its
    database and keys) — except the release directories under it (`${installPath}`)."""
    w = posixpath.normpath(workdir)

    def within(path: str, root: str) -> bool:
        root = posixpath.normpath(root)
        return path == root or path.startswith(root.rstrip("/") + "/")

    if within(w, releases_dir) and w != posixpath.normpath(releases_dir):
        return None
    for d in SYSTEM_DIRS:
        if w == d or (d != "/" and within(w, d)):
            return f"{workdir} is a system directory ({d})"
    if within(w, data_dir) or within(data_dir, w):
        return f"{workdir} holds or lies inside the platform's data dir {data_dir} (its database and keys)"
    return None


_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY


def _open_base(base: str, path: str) -> int:
    """A descriptor of the workdir `base` (absolute, normalized), opened from `/` one component at a time
    with O_NOFOLLOW: a component swapped for a symlink after the caller resolved and checked the path (its
    realpath) is refused, not followed. (`openat2`'s RESOLVE_NO_SYMLINKS does this in one call, but Python's
    `os` has no openat2.) O_PATH: walking needs only search permission on each directory, as a plain open of
    the whole path would (a home at 0711 on the way is fine); every later use of these descriptors is a
    `dir_fd` for openat/mkdirat/renameat/unlinkat, which O_PATH descriptors serve."""
    dir_fd = os.open("/", _DIR_FLAGS)
    done = "/"
    try:
        for part in [p for p in base.split("/") if p]:
            done = posixpath.join(done, part)
            try:
                fd = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
            except OSError as e:
                what = "is a symlink or not a directory" if e.errno in (errno.ELOOP, errno.ENOTDIR) else e.strerror
                raise ConfigFileRefused(
                    f"config file {path!r}: the workdir {base} cannot be opened: {done} {what}; the workdir is "
                    "opened without following symlinks (give it as its real path, see `realpath`)"
                ) from e
            os.close(dir_fd)
            dir_fd = fd
    except BaseException:
        os.close(dir_fd)
        raise
    return dir_fd


def _walk(base: str, parts: list[str], path: str, *, create: bool) -> int:
    """A descriptor of the directory `base/parts...`, reached without following any symlink (in the
    workdir's own path too, see `_open_base`)."""
    dir_fd = _open_base(base, path)
    try:
        for i, part in enumerate(parts):
            if create:
                try:
                    os.mkdir(part, 0o755, dir_fd=dir_fd)
                except FileExistsError:
                    pass
            try:
                fd = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
            except OSError as e:
                where = posixpath.join(base, *parts[: i + 1])
                raise ConfigFileRefused(
                    f"config file {path!r}: {where} is a symlink or not a directory; config files are "
                    "written only through real directories inside the workdir"
                ) from e
            os.close(dir_fd)
            dir_fd = fd
    except BaseException:
        os.close(dir_fd)
        raise
    return dir_fd


def _split(workdir: str, path: str) -> tuple[str, list[str], str]:
    base = posixpath.normpath(workdir)
    target = posixpath.normpath(path if path.startswith("/") else posixpath.join(base, path))
    if not target.startswith(base.rstrip("/") + "/"):
        raise ConfigFileRefused(f"config file {path!r} is outside the workdir {workdir}")
    return base, target[len(base.rstrip("/")) + 1 :].split("/"), target


def write_inside(workdir: str, path: str, content: str, mode: int, owner: tuple[int, int] | None = None) -> str:
    """Write `content` to `path` (relative to `workdir`, or absolute under it) with `mode` (and `owner`
    uid/gid when given); returns the absolute path written. Creates missing directories (0755). Atomic: a
    temporary file beside it is renamed over it, so a reader sees the old text or the new, never a part.
    Raises `ConfigFileRefused`."""
    base, parts, target = _split(workdir, path)
    dir_fd = _walk(base, parts[:-1], path, create=True)
    tmp = f".{parts[-1]}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
        except OSError as e:
            raise ConfigFileRefused(
                f"config file {path!r}: cannot write in {posixpath.dirname(target)} ({e.strerror})"
            ) from e
        try:
            with os.fdopen(fd, "w") as f:
                if owner is not None:
                    os.fchown(f.fileno(), *owner)
                os.fchmod(f.fileno(), mode & 0o7777)
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
            # rename() replaces a symlink at the target name itself; it never writes through it.
            os.rename(tmp, parts[-1], src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise ConfigFileRefused(f"config file {path!r}: cannot be written ({e.strerror})") from e
        return target
    finally:
        os.close(dir_fd)


def read_inside(workdir: str, path: str, limit: int = 1024 * 1024) -> str:
    """The text of `path` inside `workdir` (a config file's template), read without following symlinks
    and at most `limit` bytes; only a regular file (what was opened is checked, not the name: no race
    with a swap). Raises `ConfigFileRefused`."""
    base, parts, target = _split(workdir, path)
    dir_fd = _walk(base, parts[:-1], path, create=False)
    try:
        try:
            # O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOCTTY: a terminal is not taken.
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=dir_fd)
        except OSError as e:
            raise ConfigFileRefused(f"template {path!r}: {target} is a symlink or cannot be read ({e.strerror})") from e
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise ConfigFileRefused(
                f"template {path!r}: {target} is not a regular file (a directory, "
                "FIFO, socket or device); a template must be a plain file"
            )
        with os.fdopen(fd, "rb") as f:
            if st.st_size > limit:
                raise ConfigFileRefused(f"template {path!r} is larger than {limit} bytes")
            try:
                data = f.read(limit + 1)
            except OSError as e:
                raise ConfigFileRefused(f"template {path!r}: {target} cannot be read ({e.strerror})") from e
        if len(data) > limit:
            raise ConfigFileRefused(f"template {path!r} is larger than {limit} bytes")
        try:
            return data.decode()
        except UnicodeDecodeError as e:
            raise ConfigFileRefused(f"template {path!r} is not UTF-8 text") from e
    finally:
        os.close(dir_fd)


def resolve_owner(owner: str) -> tuple[int, int]:
    """`user[:group]` → (uid, gid); only root may give files away. Raises `ConfigFileRefused`."""
    user, _, group = owner.partition(":")
    try:
        pw = pwd.getpwnam(user)
        gid = grp.getgrnam(group).gr_gid if group else pw.pw_gid
    except KeyError:
        raise ConfigFileRefused(f"owner {owner!r}: no such user or group on this host") from None
    if os.geteuid() != 0 and (pw.pw_uid != os.geteuid()):
        raise ConfigFileRefused(f"owner {owner!r}: the platform is not running as root, so files stay its own")
    return pw.pw_uid, gid


def write_config_files(config: Any, *, owners: list[str | None], allow_system: bool, data_dir: str) -> None:
    """Write an instance's config files (`config.config_files`, already expanded) inside its workdir, each
    atomically. The workdir (links resolved) may not be a system directory or the platform's data dir
    unless `allow_system` (see `system_dir_problem`). Blocking: call it off the loop."""
    if not config.workdir:
        raise ConfigFileRefused("config files need a workdir to be written in")
    real = os.path.realpath(config.workdir)
    if not allow_system:
        data = os.path.realpath(data_dir)
        problem = system_dir_problem(real, data, posixpath.join(data, "releases"))
        if problem:
            raise ConfigFileRefused(
                f"config files refused: {problem}; config files go in the service's own "
                "directory (allow_system_paths: true overrides this, audited)"
            )
    for i, (path, content, mode) in enumerate(config.config_files):
        owner = owners[i] if i < len(owners) else None
        write_inside(real, path, content, mode, resolve_owner(owner) if owner else None)
