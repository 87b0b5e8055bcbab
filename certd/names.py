"""Names as certd accepts them: what a wanted name becomes (or why it cannot be ordered over HTTP-01)
and the API's precise error for a bad one.
"""

from __future__ import annotations

import ipaddress

import structlog

from certd import pem
from core.errors import ValidationFailed

log = structlog.get_logger("certd")


def orderable(name: str) -> str | None:
    """A wanted name certd can order over HTTP-01, normalized; None (with a log line) otherwise."""
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        pass
    else:
        log.info("not ordering a certificate for an IP address", name=name)
        return None
    try:
        n = pem.normalize_name(name)
    except ValueError as e:
        log.warning("ignoring a wanted name", name=name, error=str(e))
        return None
    if n.startswith("*."):
        log.warning("wildcard names need the DNS-01 challenge; import a certificate for it", name=n)
        return None
    return n


def name_or_error(name: str, field: str) -> str:
    try:
        return pem.normalize_name(name)
    except ValueError as e:
        raise ValidationFailed(f"{field}: {e}", details={"field": field}) from e
