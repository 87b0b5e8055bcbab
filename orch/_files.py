"""Writing a service's config files inside its workdir and nowhere else.

The spec refuses paths that leave the workdir as text (`orch.spec.config_path_problem`); this writer
also refuses what only the disk can show: a symlink anywhere on the way (a directory or the file itself
replaced by a link to /etc, say, by the service that owns the workdir). It walks the path one component
at a time with `openat(..., O_NOFOLLOW)` from a descriptor of the workdir, so no check-then-open race
lets a link swapped in between redirect the write.
"""

from __future__ import annotations

import os
import posixpath


class ConfigFileRefused(Exception):
    """The path leaves the workdir or goes through a symlink; the message says which."""


def write_inside(workdir: str, path: str, content: str, mode: int) -> str:
    """Write `content` to `path` (relative to `workdir`, or absolute under it) with `mode`; returns
    the absolute path written. Creates missing directories (0755). Raises `ConfigFileRefused`."""
    base = posixpath.normpath(workdir)
    target = posixpath.normpath(path if path.startswith("/") else posixpath.join(base, path))
    if not target.startswith(base.rstrip("/") + "/"):
        raise ConfigFileRefused(f"config file {path!r} is outside the workdir {workdir}")
    parts = target[len(base.rstrip("/")) + 1:].split("/")
    dir_fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i, part in enumerate(parts[:-1]):
            try:
                os.mkdir(part, 0o755, dir_fd=dir_fd)
            except FileExistsError:
                pass
            try:
                fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
            except OSError as e:
                where = posixpath.join(base, *parts[:i + 1])
                raise ConfigFileRefused(
                    f"config file {path!r}: {where} is a symlink or not a directory; config files are "
                    "written only through real directories inside the workdir"
                ) from e
            os.close(dir_fd)
            dir_fd = fd
        try:
            fd = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode & 0o7777,
                         dir_fd=dir_fd)
        except OSError as e:
            raise ConfigFileRefused(
                f"config file {path!r}: {target} is a symlink or cannot be written ({e.strerror})"
            ) from e
        try:
            os.fchmod(fd, mode & 0o7777)
            with os.fdopen(fd, "w") as f:
                fd = -1
                f.write(content)
        finally:
            if fd >= 0:
                os.close(fd)
        return target
    finally:
        os.close(dir_fd)
