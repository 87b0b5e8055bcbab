"""Is a TCP peer this very process? The gate runs in the console's process, so a connection the gate
opened to the console has its other end among our own sockets; nothing outside the process can fake
that (a forged header can, and so can any local program connecting from 127.0.0.1).

Blocking (reads /proc through psutil): call it in a worker thread.
"""

from __future__ import annotations

import psutil

_SELF = psutil.Process()


def _norm(host: str) -> str:
    return host[7:] if host.startswith("::ffff:") else host


def peer_is_this_process(peer: tuple[str, int], local: tuple[str, int]) -> bool:
    """True when one of this process's TCP sockets has `peer` as its own address and `local` (the
    console's end of the connection) as its remote address."""
    want_l, want_r = (_norm(peer[0]), peer[1]), (_norm(local[0]), local[1])
    try:
        # `net_connections` since psutil 6; `connections` before (the pyproject allows 5.9).
        lister = getattr(_SELF, "net_connections", None) or _SELF.connections
        conns = lister(kind="tcp")
    except (psutil.Error, OSError):
        return False
    for c in conns:
        if not c.raddr or not c.laddr:
            continue
        if (_norm(c.laddr[0]), c.laddr[1]) == want_l and (_norm(c.raddr[0]), c.raddr[1]) == want_r:
            return True
    return False
