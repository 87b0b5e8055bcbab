"""Static files for front-end builds, decided purely: which file answers a path (`try_files`-style with
an optional SPA fallback to `/index.html`), which precompressed variant (`.br`, `.gz`) the client
accepts, validators (ETag, Last-Modified) and conditional/range answers.

`pick_file` touches the file system only through `os.stat` on paths proven to be inside the root; the
proxy reads the chosen file off the loop. The gate runs as root, so it serves only what an unprivileged
user could read (the file world-readable, every directory from the root down to it world-searchable,
as nginx's unprivileged workers effectively do), never dotfiles unless the route allows them, and
`static_root_problem` refuses roots that would expose the system or the platform's own data.
"""

from __future__ import annotations

import mimetypes
import os
import stat
import urllib.parse
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime


@dataclass(frozen=True, slots=True)
class StaticFile:
    path: str  # the file to send (maybe a .br/.gz variant)
    size: int
    mtime: float
    content_type: str
    encoding: str | None  # "br" | "gzip" | None
    etag: str
    dev: int = 0  # the file that passed the checks: the one opened must be the same (see _static_io)
    ino: int = 0

    @property
    def last_modified(self) -> str:
        return formatdate(self.mtime, usegmt=True)


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


# Static roots refused with everything under them: the system's configuration, secrets, kernel
# interfaces, programs, libraries and the state of other software (/var/lib holds databases, Docker's
# volumes and our own data dir by default).
SYSTEM_TREES = (
    "/etc",
    "/root",
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    "/efi",
    "/run",
    "/var/run",
    "/var/lock",
    "/var/lib",
    "/var/log",
    "/var/cache",
    "/var/spool",
    "/var/backups",
    "/var/mail",
    "/var/db",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/snap",
    "/lost+found",
)
# Refused as roots themselves (a site lives in a directory below them): serving one whole would publish
# every user's home, every service's data, every mounted disk, every shared temporary file. (/var/www is
# the conventional tree of published web content and stays allowed.)
SHARED_PARENTS = ("/home", "/var", "/srv", "/opt", "/mnt", "/media", "/tmp", "/var/tmp")


def static_root_problem(path: str, data_dir: str | None = None) -> str | None:
    """Why `path` (absolute, normalized; pass both the given path and its realpath) must not be a static
    root, or None. Pure: the caller resolves symlinks. `data_dir` (the platform's, resolved) is refused
    with everything under it (keys, password files, databases) and every directory above it."""
    p = os.path.normpath(path)
    if p.startswith("//"):
        p = "/" + p.lstrip("/")  # POSIX keeps a leading "//"; it is the same directory as "/"
    if p == "/":
        return "it is the whole file system"
    for tree in SYSTEM_TREES:
        if _inside(tree, p):
            return f"it is inside the system directory {tree}"
        if _inside(p, tree):
            return f"it contains the system directory {tree}"
    if p in SHARED_PARENTS:
        return f"{p} holds other users' or sites' files; serve a directory below it"
    if data_dir:
        d = os.path.normpath(data_dir)
        if _inside(d, p):
            where = "the platform's data dir" if p == d else f"inside the platform's data dir {d}"
            return f"it is {where} (keys, passwords, databases)"
        if _inside(p, d):
            return f"it contains the platform's data dir {d} (keys, passwords, databases)"
    return None


def check_static_root(path: str, data_dir: str | None = None) -> str | None:
    """`static_root_problem` for the path as given and as it resolves after symlinks (I/O: realpath)."""
    real_data = os.path.realpath(data_dir) if data_dir else None
    problem = static_root_problem(path, data_dir) or static_root_problem(path, real_data)
    if problem:
        return problem
    real = os.path.realpath(path)
    problem = static_root_problem(real, real_data) or static_root_problem(real, data_dir)
    return f"it resolves to {real}, and {problem}" if problem else None


def _hidden(rel: str) -> bool:
    """Whether a root-relative path names a dotfile or passes through a dot-directory (`.well-known/`
    at the top is public: RFC 8615)."""
    segs = [s for s in rel.split("/") if s]
    if segs and segs[0] == ".well-known":
        segs = segs[1:]
    return any(s.startswith(".") for s in segs)


def _world_readable(root: str, full: str, st: os.stat_result) -> bool:
    """The file is o+r and every directory from `root` down to it is o+x (`full` is inside `root`)."""
    if not st.st_mode & stat.S_IROTH:
        return False
    d = os.path.dirname(full)
    while True:
        try:
            dst = os.stat(d)
        except OSError:
            return False
        if not dst.st_mode & stat.S_IXOTH:
            return False
        if len(d) <= len(root):
            return True
        d = os.path.dirname(d)


def _servable(root: str, full: str, st: os.stat_result, dotfiles: bool) -> bool:
    if not dotfiles and _hidden(full[len(root) :]):
        return False  # a symlink with a plain name that resolves to a dotfile is as hidden as the dotfile
    return _world_readable(root, full, st)


def _stat_file(path: str) -> os.stat_result | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def pick_file(
    root: str, url_path: str, accept_encoding: str, *, spa: bool, dotfiles: bool = False
) -> StaticFile | None:
    """The file for `url_path` under `root` (already realpath'd), or None (404).

    Order: the path itself; `path/index.html`; with `spa`, `/index.html` for paths without an extension.
    Symlinks may not lead outside the root. A file is served only when an unprivileged user could read it
    (see the module docstring) and, unless `dotfiles`, when no segment of its path (as requested or as
    resolved) starts with a dot, `.well-known/` excepted."""
    try:
        rel = urllib.parse.unquote(url_path.split("?", 1)[0], errors="strict")
    except UnicodeDecodeError:
        return None
    if "\x00" in rel or "\\" in rel or any(seg in (".", "..") for seg in rel.split("/")):
        return None
    if not dotfiles and _hidden(rel):
        return None
    candidates = [rel]
    if rel.endswith("/") or not rel:
        candidates = [rel.rstrip("/") + "/index.html"]
    else:
        candidates.append(rel + "/index.html")
    last = rel.rsplit("/", 1)[-1]
    if spa and "." not in last:
        candidates.append("/index.html")
    for cand in candidates:
        full = os.path.realpath(os.path.join(root, cand.lstrip("/")))
        if not _inside(root, full):
            continue
        st = _stat_file(full)
        if st is None or not _servable(root, full, st, dotfiles):
            continue
        ctype = mimetypes.guess_type(full)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype in ("application/javascript", "application/json", "image/svg+xml"):
            ctype += "; charset=utf-8"
        chosen, enc, chosen_st = full, None, st
        accepts = {t.split(";")[0].strip().lower() for t in accept_encoding.split(",")} if accept_encoding else set()
        for token, suffix in (("br", ".br"), ("gzip", ".gz")):
            if token in accepts:
                vst = _stat_file(full + suffix)
                vreal = os.path.realpath(full + suffix)
                if (
                    vst is not None
                    and _inside(root, vreal)
                    and vst.st_mtime >= st.st_mtime
                    and _servable(root, vreal, vst, dotfiles)
                ):
                    chosen, enc, chosen_st = full + suffix, token, vst
                    break
        etag = f'"{int(chosen_st.st_mtime * 1000):x}-{chosen_st.st_size:x}{"-" + enc if enc else ""}"'
        return StaticFile(
            chosen, chosen_st.st_size, chosen_st.st_mtime, ctype, enc, etag, chosen_st.st_dev, chosen_st.st_ino
        )
    return None


def not_modified(f: StaticFile, if_none_match: str, if_modified_since: str) -> bool:
    """Whether a conditional GET can be answered 304 (If-None-Match wins over If-Modified-Since)."""
    if if_none_match:
        tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
        return "*" in tags or f.etag in tags
    if if_modified_since:
        try:
            since = parsedate_to_datetime(if_modified_since).timestamp()
        except (TypeError, ValueError, IndexError):
            return False
        return int(f.mtime) <= since
    return False


def plan_range(range_header: str, size: int) -> tuple[int, int] | bool | None:
    """A single `bytes=` range → (start, end_inclusive); None: send the whole file; False: 416.

    Multiple ranges are answered with the whole file (allowed by RFC 9110)."""
    if not range_header:
        return None
    unit, _, spec = range_header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if first == "":
            n = int(last)
            if n <= 0:
                return False
            return (max(0, size - n), size - 1) if size else False
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size or start < 0 or end < start:
        return False
    return start, min(end, size - 1)
