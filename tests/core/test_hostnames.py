"""The one wildcard host matcher (core/hostnames.py), table-tested with what clients and attackers send."""

from __future__ import annotations

import pytest

from core.hostnames import find_host, lookup_host, normalize_host, wildcard_for

TABLE = {
    "example.com": "apex",
    "*.example.com": "wild",
    "a.example.com": "a",
    "xn--bcher-kva.example": "idn",
    "*.xn--bcher-kva.example": "idn-wild",
    "localhost": "local",
}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("example.com", "apex"),
        ("a.example.com", "a"),  # exact beats the wildcard
        ("b.example.com", "wild"),
        ("b.c.example.com", None),  # one label only
        ("example.com.", "apex"),  # trailing dot
        ("B.Example.COM", "wild"),  # case
        ("B.Example.COM..", "wild"),
        ("localhost", "local"),
        ("x.localhost", None),  # no `*.localhost` entry
        ("com", None),
        ("", None),
        (".", None),
        ("*.", None),
        ("*", None),
        ("*.example.com", None),  # a client asking for the pattern itself gets nothing
        (".example.com", None),  # empty first label
        ("a.", None),
        ("xn--bcher-kva.example", "idn"),
        ("XN--BCHER-KVA.example", "idn"),
        ("www.xn--bcher-kva.example", "idn-wild"),
        ("bücher.example", None),  # U-labels never match (SNI carries A-labels)
        ("\u212a.example.com", None),  # Kelvin sign: lower() would make it `k.example.com`
        ("a" * 63 + ".example.com", "wild"),
        ("a" * 250 + ".example.com", None),  # longer than a DNS name
        ("a." * 2000 + "example.com", None),
        ("b.example.com\x00", None),
        ("b.example.com ", None),
    ],
)
def test_find_host(name: str, expected: str | None) -> None:
    assert find_host(TABLE, name) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Example.COM.", "example.com"),
        ("a.b", "a.b"),
        ("", None),
        ("...", None),
        ("*.a.b", None),
        ("é.com", None),
        ("x" * 253, "x" * 253),
        ("x" * 254, None),
    ],
)
def test_normalize_host(name: str, expected: str | None) -> None:
    assert normalize_host(name) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.example.com", "*.example.com"),
        ("example.com", "*.com"),
        ("localhost", None),
        (".com", None),
        ("a.", None),
        ("", None),
        ("a..b", "*..b"),
    ],
)
def test_wildcard_for(name: str, expected: str | None) -> None:
    assert wildcard_for(name) == expected


def test_lookup_agrees_with_wildcard_for() -> None:
    """`lookup_host` (the request-path form) and `wildcard_for` name the same pattern for every shape."""
    names = ["a.example.com", "example.com", "b.c.example.com", "localhost", ".x", "x.", "a..example.com"]
    for n in names:
        table = {"*" + n[n.find(".") :] if "." in n else "zz": 1}
        w = wildcard_for(n)
        assert (lookup_host(table, n) == 1) == (w is not None and w in table), n
