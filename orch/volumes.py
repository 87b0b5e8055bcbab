"""Container volumes as written in a spec (`SOURCE:TARGET[:ro|:rw]`) and the host paths a container may
not mount. Pure: text in, `Volume` or a message out; the existence of a bind source is checked by the
caller (it is a fact about the host, not about the text).

A bind mount that equals, contains or lies inside a sensitive path is refused: mounting `/var` exposes
`/var/run/docker.sock` (root on the host) just as mounting the socket itself does.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

# Paths no container gets without `allow_host_mounts: true` (the platform's data dir is added at apply).
SENSITIVE: tuple[str, ...] = (
    "/",
    "/etc",
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    "/root",
)
_VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Volume:
    """A named volume (`kind == "volume"`, `source` is its name) or a bind mount of a host path."""

    kind: Literal["bind", "volume"]
    source: str
    target: str
    read_only: bool = False


def parse_volume(text: str) -> Volume:
    """`data:/var/lib/app`, `/srv/site:/www:ro` → `Volume`; raises ValueError with a message saying how to
    write it."""
    parts = text.split(":")
    mode = "rw"
    if len(parts) == 3:
        mode = parts.pop()
        if mode not in ("ro", "rw"):
            raise ValueError(f"{text!r}: the third part is {mode!r}; it can only be ro or rw")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise ValueError(f"{text!r} is not SOURCE:TARGET[:ro] (e.g. data:/var/lib/app or /srv/site:/www:ro)")
    source, target = parts
    if not target.startswith("/"):
        raise ValueError(f"{text!r}: the target {target!r} inside the container must be an absolute path")
    if posixpath.normpath(target) == "/":
        raise ValueError(f"{text!r}: a volume cannot replace the container's root directory")
    if source.startswith("/"):
        return Volume("bind", posixpath.normpath(source), posixpath.normpath(target), mode == "ro")
    if source.startswith(".") or "/" in source:
        raise ValueError(
            f"{text!r}: a bind mount needs an absolute host path (start it with /); "
            "a named volume is a plain name like data"
        )
    if not _VOLUME_NAME.match(source):
        raise ValueError(f"{text!r}: {source!r} is not a volume name (letters, digits, _ . -, up to 64)")
    return Volume("volume", source, posixpath.normpath(target), mode == "ro")


def _within(path: str, root: str) -> bool:
    return path == root or root == "/" or path.startswith(root.rstrip("/") + "/")


def host_mount_problem(path: str, sensitive: Iterable[str] = SENSITIVE) -> str | None:
    """Why a bind mount of host `path` (absolute, normalized) is refused, or None. A path is refused when
    it is a sensitive path, lies inside one (`/etc/shadow`), or contains one (`/var` holds the Docker
    socket). `/` itself is only refused as a whole, else everything would lie inside it."""
    path = posixpath.normpath(path)
    for s in sensitive:
        s = posixpath.normpath(s)
        if path == s:
            return f"mounting {s} gives the container {_what(s)}"
        if s != "/" and _within(path, s):
            return f"{path} lies inside {s} ({_what(s)})"
        if _within(s, path):
            return f"{path} contains {s} ({_what(s)})"
    return None


def _what(s: str) -> str:
    return {
        "/": "the host's whole file system",
        "/etc": "the host's configuration and password files",
        "/var/run/docker.sock": "the Docker socket, i.e. root on the host",
        "/run/docker.sock": "the Docker socket, i.e. root on the host",
        "/proc": "the host's process table",
        "/sys": "the host's kernel settings",
        "/dev": "the host's devices",
        "/boot": "the host's boot files",
        "/root": "root's home directory",
    }.get(s, "the platform's data dir (its database and keys)")
