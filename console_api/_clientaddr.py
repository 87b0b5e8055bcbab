"""Who is the client, and is this Host ours: the pure rules behind the console's client address
(`X-Forwarded-For` from trusted peers only) and its DNS-rebinding guard. No I/O here.

Theory of operation. The console sees a TCP peer. When that peer is trusted — the platform's own gate
(the caller establishes that; see `console_api/_peerproc.py`) or an address in a configured trusted
CIDR — the client is read from `X-Forwarded-For` the way nginx's `real_ip_recursive on` does: walk the
list from the right, skip every address that is itself a trusted proxy, and take the first one that is
not. An untrusted peer's `X-Forwarded-For` is ignored entirely: a direct client cannot choose its own
address. A malformed entry stops the walk; the last address proven (the hop to its right) is the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Hosts every console answers to, whatever its configuration says.
LOCAL_NAMES = frozenset({"localhost"})


def parse_networks(cidrs: Iterable[str], *, what: str = "console_trusted_proxies") -> tuple[Network, ...]:
    """CIDRs (or bare addresses) → networks; a bad one is a ValueError naming it and the setting."""
    out: list[Network] = []
    for i, cidr in enumerate(cidrs):
        try:
            out.append(ipaddress.ip_network(str(cidr).strip(), strict=False))
        except ValueError as e:
            raise ValueError(f"{what}[{i}]: {cidr!r} is not an IP address or CIDR ({e})") from None
    return tuple(out)


def parse_ip(text: str) -> Address | None:
    """An address from an `X-Forwarded-For` entry (`1.2.3.4`, `1.2.3.4:5678`, `::1`, `[::1]:80`), with an
    IPv4-mapped IPv6 address turned into its IPv4 form; None when it is not an address."""
    s = text.strip().strip('"')
    if s.startswith("["):
        end = s.find("]")
        if end < 0:
            return None
        s = s[1:end]
    elif s.count(":") == 1:  # IPv4 with a port
        s = s.partition(":")[0]
    try:
        ip = ipaddress.ip_address(s)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_trusted(ip: Address, networks: Sequence[Network]) -> bool:
    return any(ip.version == net.version and ip in net for net in networks)


def forwarded_client(peer_ip: str, xff: Sequence[str], *, peer_trusted: bool, trusted: Sequence[Network]) -> str:
    """The client's address for a request from `peer_ip` carrying the `X-Forwarded-For` header values
    `xff` (in order; several headers are one list). `peer_trusted` says the peer is the gate; a peer in
    `trusted` is trusted as well."""
    peer = parse_ip(peer_ip)
    if peer is None:
        return peer_ip
    if not xff or not (peer_trusted or is_trusted(peer, trusted)):
        return str(peer)
    entries = [e for value in xff for e in value.split(",") if e.strip()]
    client = peer
    for entry in reversed(entries):
        ip = parse_ip(entry)
        if ip is None:
            break
        client = ip
        if not is_trusted(ip, trusted):
            break
    return str(client)


def host_name(host_header: str) -> str:
    """The name part of a Host header, lowercase, without port or IPv6 brackets or a trailing dot."""
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[1 : h.find("]")] if "]" in h else h
    if h.count(":") == 1:
        h = h.partition(":")[0]
    return h.rstrip(".")


def host_allowed(host_header: str | None, allowed: Iterable[str]) -> bool:
    """Whether a request naming `host_header` may be answered.

    DNS rebinding needs the browser to believe it talks to a *name* the attacker controls, so an IP
    literal Host is always fine; a name must be `localhost` or one of `allowed` (exact, or `*.suffix`
    for any name under it). No Host at all (HTTP/1.0 tools) is not a browser and is allowed.
    """
    if host_header is None or not host_header.strip():
        return True
    name = host_name(host_header)
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    if name in LOCAL_NAMES:
        return True
    for pattern in allowed:
        p = pattern.strip().lower().rstrip(".")
        if p.startswith("*.") and name.endswith(p[1:]) and len(name) > len(p) - 1:
            return True
        if name == p:
            return True
    return False
