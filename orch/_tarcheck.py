"""The rules a release archive's members must pass before anything is unpacked: pure, no I/O.

Theory of operation. `TarChecker.check(member)` is fed the archive's members in order (their header
fields only, as `Member`) and either accepts each or raises `TarRejected` saying which member broke which
rule. The unpacker (orch/_unpack.py) writes a member only after it was accepted, into a staging dir it
throws away on any rejection, so a bad archive never leaves files behind.

What keeps every write inside the release dir, with no help from the file system:
- names are relative, normalised, with no `..` component, no NUL, no backslash tricks;
- no member is written through a symlink: a name whose parent path is (or passes through) an earlier
  symlink member is refused, and no name appears twice (a later file cannot replace a symlink);
- a symlink's target is relative, with `..` only as its leading components, and not more of them than
  the link's own depth. Every parent of the link is then a real directory (the rule above), so those
  leading `..` resolve exactly as written; what follows only descends, through links that by the same
  argument stay inside. (`a -> .` plus `b -> a/..` would escape if `..` were allowed after a component.)
- a hard link names an earlier regular-file member of the same archive (tar's own meaning of one);
- only regular files, directories, symlinks and hard links: devices, fifos, sparse and unknown types
  are refused;
- the member count and the sum of file sizes are bounded (declared sizes are checked before the data
  is read, so a gzip bomb is refused at its header, not after filling the disk).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["file", "dir", "symlink", "hardlink", "device", "fifo", "other"]

MAX_NAME_BYTES = 4096
MAX_DEPTH = 64


class TarRejected(ValueError):
    """An archive member broke a rule; `member` names it and `rule` is a stable short code."""

    def __init__(self, member: str, rule: str, message: str) -> None:
        super().__init__(f"{member!r}: {message}")
        self.member, self.rule, self.message = member, rule, message


@dataclass(frozen=True)
class Member:
    """The header fields of one archive member that the rules look at."""

    name: str
    kind: Kind
    size: int = 0
    linkname: str = ""


@dataclass(frozen=True)
class TarLimits:
    max_members: int = 100_000
    max_unpacked_bytes: int = 2 * 1024**3


def normalise(name: str) -> str:
    """A member name as the path it will be written to (relative, no `.` parts, no trailing slash), or
    `TarRejected` when it is absolute, climbs with `..`, or is otherwise unusable."""
    if not name or "\x00" in name:
        raise TarRejected(name, "bad_name", "empty names and NUL bytes are not allowed")
    if len(name.encode(errors="surrogateescape")) > MAX_NAME_BYTES:
        raise TarRejected(name[:80] + "...", "bad_name", f"the name is longer than {MAX_NAME_BYTES} bytes")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":" and name[0].isalpha()):
        raise TarRejected(
            name,
            "absolute_path",
            "absolute paths are not allowed; archive paths relative to the release dir (tar -C DIR .)",
        )
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise TarRejected(name, "parent_path", "'..' in a member name would write outside the release dir")
    if len(parts) > MAX_DEPTH:
        raise TarRejected(name, "bad_name", f"the path is deeper than {MAX_DEPTH} directories")
    return "/".join(parts)


@dataclass
class TarChecker:
    """Accepts or refuses members one by one, in archive order. Not thread-safe (one per archive)."""

    limits: TarLimits = field(default_factory=TarLimits)
    members: int = 0
    unpacked_bytes: int = 0
    _files: set[str] = field(default_factory=set)
    _dirs: set[str] = field(default_factory=set)
    _links: set[str] = field(default_factory=set)  # symlink members

    def check(self, m: Member) -> str:
        """The normalised path `m` is written to, or `TarRejected`."""
        self.members += 1
        if self.members > self.limits.max_members:
            raise TarRejected(
                m.name, "too_many_members", f"the archive has more than {self.limits.max_members} members"
            )
        if m.kind in ("device", "fifo"):
            raise TarRejected(m.name, f"{m.kind}_file", f"{m.kind} files are not allowed in a release")
        if m.kind == "other":
            raise TarRejected(
                m.name, "unsupported_type", "only regular files, directories, symlinks and hard links are allowed"
            )
        path = normalise(m.name)
        if path == "":
            if m.kind == "dir":
                return ""  # `./` itself: the release dir
            raise TarRejected(m.name, "bad_name", "only a directory may name the archive root")
        self._no_link_in_parents(m.name, path)
        if m.kind == "dir":
            if path in self._files or path in self._links:
                raise TarRejected(m.name, "duplicate", "a directory replaces an earlier file or link")
            parts = path.split("/")
            self._dirs.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
            return path
        if path in self._files or path in self._links or path in self._dirs:
            raise TarRejected(m.name, "duplicate", "the archive holds this path twice")
        if m.kind == "file":
            if m.size < 0:
                raise TarRejected(m.name, "bad_size", "negative size")
            self.unpacked_bytes += m.size
            if self.unpacked_bytes > self.limits.max_unpacked_bytes:
                raise TarRejected(
                    m.name,
                    "too_large",
                    f"the files unpack to more than {self.limits.max_unpacked_bytes} bytes "
                    "(a decompression bomb, or raise orch.artifact_max_unpacked_bytes)",
                )
            self._files.add(path)
        elif m.kind == "symlink":
            self._check_symlink(m, path)
            self._links.add(path)
        elif m.kind == "hardlink":
            try:
                target = normalise(m.linkname)
            except TarRejected:
                raise TarRejected(
                    m.name, "hardlink_outside", f"the hard link's target {m.linkname!r} is outside the release dir"
                ) from None
            if target not in self._files:
                raise TarRejected(
                    m.name,
                    "hardlink_outside",
                    f"a hard link must name an earlier file of the archive, not {m.linkname!r}",
                )
            self._files.add(path)
        parts = path.split("/")
        self._dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
        return path

    def _no_link_in_parents(self, raw: str, path: str) -> None:
        parts = path.split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            if prefix in self._links:
                raise TarRejected(raw, "through_symlink", f"the path passes through the symlink {prefix!r}")
            if prefix in self._files:
                raise TarRejected(raw, "duplicate", f"the path passes through the file {prefix!r}")

    @staticmethod
    def _check_symlink(m: Member, path: str) -> None:
        target = m.linkname
        if not target or "\x00" in target:
            raise TarRejected(m.name, "symlink_outside", "a symlink needs a target")
        if target.startswith("/"):
            raise TarRejected(m.name, "symlink_outside", f"the symlink's target {target!r} is absolute")
        parts = [p for p in target.split("/") if p not in ("", ".")]
        ups = 0
        while ups < len(parts) and parts[ups] == "..":
            ups += 1
        if ".." in parts[ups:]:
            raise TarRejected(
                m.name, "symlink_outside", f"the symlink's target {target!r} has '..' after a name; write it as ../a/b"
            )
        depth = len(posixpath.dirname(path).split("/")) if "/" in path else 0
        if ups > depth:
            raise TarRejected(
                m.name, "symlink_outside", f"the symlink's target {target!r} points outside the release dir"
            )
