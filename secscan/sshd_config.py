"""sshd_config as sshd reads it: keywords case-insensitive, `Keyword value` or `Keyword=value`, the first
value of a keyword wins, `Include` (globs, relative to /etc/ssh, nested up to 16 deep) read in place,
and `Match` blocks — whose settings apply only to matching connections — ending at the next `Match`
or at the end of the file they are in (checked against OpenSSH 9.2's `sshd -T`).

Pure: files are read through a `ConfigFiles` the caller provides (a directory tree, or a dict in tests).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

SSH_DIR = "/etc/ssh"
MAIN_CONFIG = "/etc/ssh/sshd_config"
MAX_DEPTH = 16  # sshd's SERVCONF_MAX_DEPTH
MAX_FILES = 256  # a glob matching thousands of files is someone's mistake; stop reading, say so
ALIASES = {
    "challengeresponseauthentication": "kbdinteractiveauthentication",
    "dsaauthentication": "pubkeyauthentication",
}


class ConfigFiles(Protocol):
    """Host paths (as sshd sees them, absolute) → contents."""

    def read(self, path: str) -> str | None:
        """The file's text, or None when it does not exist or cannot be read."""
        ...

    def glob(self, pattern: str) -> list[str]:
        """Host paths matching the absolute glob `pattern`, sorted as sshd's glob(3) sorts them."""
        ...


class DictFiles:
    """A `ConfigFiles` over a dict (tests, and staging a change before writing it)."""

    def __init__(self, files: Mapping[str, str]) -> None:
        self.files = dict(files)

    def read(self, path: str) -> str | None:
        return self.files.get(path)

    def glob(self, pattern: str) -> list[str]:
        return sorted(p for p in self.files if fnmatch.fnmatchcase(p, pattern) and p.count("/") == pattern.count("/"))


@dataclass(frozen=True)
class Directive:
    keyword: str  # lower case, aliases resolved (ChallengeResponseAuthentication → kbdinteractiveauthentication)
    args: tuple[str, ...]
    file: str
    line: int
    written: str  # the keyword as written, for evidence
    match: str | None = None  # the `Match` criteria in force, None at global scope

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def value(self) -> str:
        return " ".join(self.args)

    def evidence(self) -> str:
        scope = f" (inside `Match {self.match}`)" if self.match else ""
        return f"{self.where}: {self.written} {self.value}{scope}"


@dataclass
class SshdConfig:
    directives: list[Directive] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # read, in order
    problems: list[str] = field(default_factory=list)
    found: bool = False  # the main file exists

    def first(self, keyword: str) -> Directive | None:
        """The global value sshd uses: the first occurrence outside any Match block."""
        keyword = keyword.lower()
        return next((d for d in self.directives if d.keyword == keyword and d.match is None), None)

    def all_global(self, keyword: str) -> list[Directive]:
        keyword = keyword.lower()
        return [d for d in self.directives if d.keyword == keyword and d.match is None]

    def conditional(self, keyword: str) -> list[Directive]:
        """Occurrences inside Match blocks (for each Match, only its first one counts)."""
        keyword = keyword.lower()
        seen: set[str] = set()
        out = []
        for d in self.directives:
            if d.keyword == keyword and d.match is not None and d.match not in seen:
                seen.add(d.match)
                out.append(d)
        return out


def split_line(text: str) -> tuple[str, list[str]] | None:
    """`Keyword args…` → (keyword as written, args), honouring `=`, double quotes and trailing `#` comments;
    None for blank lines and comments."""
    s = text.strip()
    if not s or s.startswith("#"):
        return None
    m = re.match(r"([^\s=]+)\s*(?:=\s*)?(.*)$", s)
    if not m:
        return None
    keyword, rest = m.group(1), m.group(2)
    args: list[str] = []
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " \t":
            i += 1
        if i >= n or rest[i] == "#":
            break
        if rest[i] == '"':
            j = rest.find('"', i + 1)
            j = n if j < 0 else j
            args.append(rest[i + 1 : j])
            i = j + 1
        else:
            j = i
            while j < n and rest[j] not in " \t":
                j += 1
            args.append(rest[i:j])
            i = j
    return keyword, args


def parse(files: ConfigFiles, main: str = MAIN_CONFIG) -> SshdConfig:
    cfg = SshdConfig()
    text = files.read(main)
    if text is None:
        return cfg
    cfg.found = True
    _parse_file(files, main, text, cfg, None, 0)
    return cfg


def _parse_file(files: ConfigFiles, path: str, text: str, cfg: SshdConfig, match: str | None, depth: int) -> None:
    cfg.files.append(path)
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = split_line(line)
        if parts is None:
            continue
        written, args = parts
        keyword = ALIASES.get(written.lower(), written.lower())
        if keyword == "match":
            match = " ".join(args) or "(empty)"
            continue
        if keyword == "include":
            _include(files, path, lineno, args, cfg, match, depth)
            continue
        cfg.directives.append(Directive(keyword, tuple(args), path, lineno, written, match))


def _include(
    files: ConfigFiles, path: str, lineno: int, patterns: list[str], cfg: SshdConfig, match: str | None, depth: int
) -> None:
    if depth + 1 > MAX_DEPTH:
        cfg.problems.append(f"{path}:{lineno}: Include nested more than {MAX_DEPTH} deep (a loop?): not followed")
        return
    for pattern in patterns:
        absolute = pattern if pattern.startswith("/") else f"{SSH_DIR}/{pattern}"
        for sub in files.glob(absolute):
            if len(cfg.files) >= MAX_FILES:
                cfg.problems.append(f"{path}:{lineno}: more than {MAX_FILES} files included: stopped reading")
                return
            text = files.read(sub)
            if text is None:
                cfg.problems.append(f"{path}:{lineno}: cannot read included file {sub}")
                continue
            # The included file starts in the includer's scope; its own Match lines end with it.
            _parse_file(files, sub, text, cfg, match, depth + 1)


def parse_sshd_t(text: str) -> dict[str, list[str]]:
    """`sshd -T` output (`keyword value…`, lower case, one per line) → keyword → values in order."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key:
            out.setdefault(key.lower(), []).append(value.strip())
    return out


def parse_version(text: str) -> tuple[int, int] | None:
    """`OpenSSH_9.2p1 …` (sshd -V, ssh -V) or a Debian version `1:9.2p1-2+deb12u10` → (9, 2)."""
    m = re.search(r"OpenSSH_(\d+)\.(\d+)", text) or re.search(r"^(?:\d+:)?(\d+)\.(\d+)p", text.strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


def dpkg_version(status_text: str, package: str = "openssh-server") -> str | None:
    """The installed version of `package` from /var/lib/dpkg/status."""
    for stanza in status_text.split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z-]+): ?(.*)$", stanza, re.M))
        if fields.get("Package") == package and "installed" in fields.get("Status", "").split():
            return fields.get("Version")
    return None


def defaults(version: tuple[int, int] | None) -> dict[str, str]:
    """Compiled-in defaults of OpenSSH `version` (None: a current one) for the keywords the scan checks."""
    modern = version is None or version >= (7, 0)
    return {
        "permitrootlogin": "prohibit-password" if modern else "yes",  # changed in OpenSSH 7.0
        "passwordauthentication": "yes",
        "kbdinteractiveauthentication": "yes",
        "pubkeyauthentication": "yes",
        "usepam": "no",
        "port": "22",
    }
