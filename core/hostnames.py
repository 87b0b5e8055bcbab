"""Host-name matching shared by the gate's router, its SNI selection and the certificate board:
an exact name first, then a one-label wildcard (`*.example.com` covers `a.example.com`, not
`example.com` nor `a.b.example.com`). Pure functions; callers keep their own tables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")

MAX_NAME_CHARS = 253  # RFC 1035's limit on a name's presentation form (without the trailing dot)


def normalize_host(name: str) -> str | None:
    """`Example.COM.` → `example.com`; None for what no table key can be: empty, non-ASCII (names
    arrive as IDNA A-labels, `xn--…`; `str.lower` would fold e.g. the Kelvin sign into `k`), a `*`
    anywhere (a client never asks for a pattern), or longer than a DNS name can be."""
    if not name.isascii():
        return None
    n = name.lower().rstrip(".")
    if not n or len(n) > MAX_NAME_CHARS or "*" in n:
        return None
    return n


def wildcard_for(name: str) -> str | None:
    """The wildcard pattern one label up from a normalized `name` (`a.example.com` → `*.example.com`),
    or None when it has no such parent (`localhost`, `.example.com`, `a.`)."""
    dot = name.find(".")
    if dot <= 0 or dot == len(name) - 1:
        return None
    return "*" + name[dot:]


def lookup_host(table: Mapping[str, T], name: str) -> T | None:
    """`table[name]` for a normalized `name`, else the entry of its one-label wildcard, else None. Keys are
    lowercase names and `*.`-patterns. Cheap enough for the request path: one or two dict lookups."""
    found = table.get(name)
    if found is None:
        dot = name.find(".")
        if 0 < dot < len(name) - 1:
            found = table.get("*" + name[dot:])
    return found


def find_host(table: Mapping[str, T], name: str) -> T | None:
    """`lookup_host` for a name as a client sent it (SNI, a query): normalized first; None when it
    cannot name anything (see `normalize_host`)."""
    n = normalize_host(name)
    return None if n is None else lookup_host(table, n)
