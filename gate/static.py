"""Static files for front-end builds, decided purely: which file answers a path (`try_files`-style with
an optional SPA fallback to `/index.html`), which precompressed variant (`.br`, `.gz`) the client
accepts, validators (ETag, Last-Modified) and conditional/range answers.

`pick_file` touches the file system only through `os.stat` on paths proven to be inside the root; the
proxy reads the chosen file off the loop.
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

    @property
    def last_modified(self) -> str:
        return formatdate(self.mtime, usegmt=True)


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _stat_file(path: str) -> os.stat_result | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def pick_file(root: str, url_path: str, accept_encoding: str, *, spa: bool) -> StaticFile | None:
    """The file for `url_path` under `root` (already realpath'd), or None (404).

    Order: the path itself; `path/index.html`; with `spa`, `/index.html` for paths without an extension.
    Symlinks may not lead outside the root."""
    try:
        rel = urllib.parse.unquote(url_path.split("?", 1)[0], errors="strict")
    except UnicodeDecodeError:
        return None
    if "\x00" in rel or "\\" in rel or any(seg in (".", "..") for seg in rel.split("/")):
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
        if st is None:
            continue
        ctype = mimetypes.guess_type(full)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype in ("application/javascript", "application/json", "image/svg+xml"):
            ctype += "; charset=utf-8"
        chosen, enc, chosen_st = full, None, st
        accepts = {t.split(";")[0].strip().lower() for t in accept_encoding.split(",")} if accept_encoding else set()
        for token, suffix in (("br", ".br"), ("gzip", ".gz")):
            if token in accepts:
                vst = _stat_file(full + suffix)
                if vst is not None and _inside(root, os.path.realpath(full + suffix)) and vst.st_mtime >= st.st_mtime:
                    chosen, enc, chosen_st = full + suffix, token, vst
                    break
        etag = f'"{int(chosen_st.st_mtime * 1000):x}-{chosen_st.st_size:x}{"-" + enc if enc else ""}"'
        return StaticFile(chosen, chosen_st.st_size, chosen_st.st_mtime, ctype, enc, etag)
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
