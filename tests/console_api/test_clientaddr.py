"""The console's client-address and Host rules, as tables and properties (pure, no sockets)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from console_api._clientaddr import forwarded_client, host_allowed, parse_ip, parse_networks

TRUSTED = parse_networks(["10.0.0.0/8", "fd00::/8"])


@pytest.mark.parametrize(
    ("peer", "xff", "peer_trusted", "want"),
    [
        ("127.0.0.1", [], True, "127.0.0.1"),  # no header: the peer
        ("127.0.0.1", ["203.0.113.7"], True, "203.0.113.7"),  # the gate's header
        ("127.0.0.1", ["203.0.113.7"], False, "127.0.0.1"),  # a direct client's header: ignored
        ("198.51.100.1", ["203.0.113.7"], False, "198.51.100.1"),
        ("10.1.2.3", ["203.0.113.7"], False, "203.0.113.7"),  # a configured trusted proxy
        ("10.1.2.3", ["1.1.1.1, 203.0.113.7, 10.9.9.9"], False, "203.0.113.7"),  # right-most untrusted
        ("10.1.2.3", ["1.1.1.1", "203.0.113.7"], False, "203.0.113.7"),  # two header lines are one list
        ("127.0.0.1", ["forged-by-client, 203.0.113.7"], True, "203.0.113.7"),  # left of the answer: unread
        ("127.0.0.1", ["203.0.113.7, garbage"], True, "127.0.0.1"),  # malformed right-most: stop at the peer
        ("10.1.2.3", ["10.0.0.1, 10.0.0.2"], False, "10.0.0.1"),  # all trusted: the left-most
        ("127.0.0.1", ["203.0.113.7:5555"], True, "203.0.113.7"),  # with a port
        ("127.0.0.1", ["[2001:db8::1]:443"], True, "2001:db8::1"),
        ("127.0.0.1", ["2001:db8::1"], True, "2001:db8::1"),
        ("127.0.0.1", ["::ffff:203.0.113.7"], True, "203.0.113.7"),  # v4-mapped is the v4 address
        ("::ffff:127.0.0.1", [], False, "127.0.0.1"),
        ("127.0.0.1", [" , ,203.0.113.7 "], True, "203.0.113.7"),
    ],
)
def test_forwarded_client_table(peer, xff, peer_trusted, want):
    assert forwarded_client(peer, xff, peer_trusted=peer_trusted, trusted=TRUSTED) == want


_addr = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str)
_junk = st.text(alphabet="0123456789abcdef.:[], xyz", max_size=40)


@given(peer=_addr, xff=st.lists(st.one_of(_addr, _junk), max_size=5))
def test_an_untrusted_peer_is_always_itself(peer, xff):
    ip = parse_ip(peer)
    if ip is not None and any(ip in n for n in TRUSTED if n.version == ip.version):
        return
    assert forwarded_client(peer, xff, peer_trusted=False, trusted=TRUSTED) == str(ip)


@given(peer=_addr, xff=st.lists(st.one_of(_addr, _junk), max_size=5))
def test_the_answer_is_the_peer_or_an_address_in_the_header(peer, xff):
    got = forwarded_client(peer, xff, peer_trusted=True, trusted=TRUSTED)
    ipaddress.ip_address(got)
    seen = {str(parse_ip(e)) for v in xff for e in v.split(",") if parse_ip(e) is not None}
    assert got == str(parse_ip(peer)) or got in seen


def test_bad_trusted_proxy_is_named():
    with pytest.raises(ValueError, match=r"console_trusted_proxies\[1\]: 'nope'"):
        parse_networks(["10.0.0.0/8", "nope"])


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        (None, True),
        ("", True),
        ("127.0.0.1", True),
        ("127.0.0.1:7070", True),
        ("[::1]:7070", True),
        ("[::1]", True),
        ("10.2.3.4", True),
        ("localhost", True),
        ("LOCALHOST:7070", True),
        ("localhost.", True),
        ("panel.example.com", True),
        ("PANEL.example.com:443", True),
        ("a.tenant.example.net", True),
        ("evil.example", False),
        ("localhost.evil.example", False),
        ("panel.example.com.evil.example", False),
        ("tenant.example.net", False),  # `*.tenant...` does not cover the bare name
        ("example.com", False),
        ("127.0.0.1.nip.io", False),
        ("[::1", False),
    ],
)
def test_host_table(host, ok):
    assert host_allowed(host, ["panel.example.com", "*.tenant.example.net"]) is ok
