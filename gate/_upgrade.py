"""Protocol-switch rules, pure: which `Upgrade` tokens the gate forwards (never `h2c`) and whether an
upstream's `101` switched to a protocol the client asked for."""

from __future__ import annotations


def strip_h2c(upgrade: bytes) -> bytes | None:
    """An Upgrade value without `h2c` (RFC 9113 §3.1 retired cleartext upgrades; an h2c upgrade through
    the gate would give the client an HTTP/2 session with the origin past the route's rules). None when
    nothing remains: the request is then an ordinary one."""
    kept = [t.strip() for t in upgrade.split(b",") if t.strip() and t.strip().lower() != b"h2c"]
    return b", ".join(kept) if kept else None


def switch_matches(requested: bytes, headers: list[tuple[bytes, bytes]] | tuple[tuple[bytes, bytes], ...]) -> bool:
    """Whether a 101's `Upgrade` names only protocols the client's `Upgrade` asked for (RFC 9110 §7.8:
    a server switches to one of those). Names compare case-insensitively; a name asked without a version accepts any."""
    asked = {_protocol_token(t) for t in requested.split(b",") if t.strip()}
    answered = [
        _protocol_token(t)
        for name, value in headers
        if name.lower() == b"upgrade"
        for t in value.split(b",")
        if t.strip()
    ]
    return bool(answered) and all(t in asked or (t[0], b"") in asked for t in answered)


def _protocol_token(token: bytes) -> tuple[bytes, bytes]:
    name, _, version = token.strip().partition(b"/")
    return name.strip().lower(), version.strip()
