"""Advice on a route's upstreams when it is saved: a `service:NAME` orch does not know, a host name that
does not resolve. The route is kept either way (the service may be applied later, DNS may catch up);
these are warnings for the person who typed it, never errors.

What is known comes from outside: `fsctl` wires orch's services and a resolver (the gate imports
neither). Resolution runs through the resolver (off the loop) under one short deadline for all names.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable, Collection, Mapping

from gate.routes import parse_target

ServicePorts = Callable[[], Mapping[str, Collection[str]]]
"""Every service orch knows now → the names of its ports (cheap, no I/O)."""

Resolver = Callable[[str], Awaitable[object]]
"""Resolve a host name off the loop; raises OSError when it does not resolve."""


def service_problems(upstreams: list[str], services: Mapping[str, Collection[str]]) -> list[str]:
    """Warnings for `service:NAME[:PORT]` targets that name no known service (or no port of it). Pure."""
    out = []
    for item in upstreams:
        t = parse_target(item)
        if not isinstance(t, str):
            continue
        name, _, port = t.partition(":")
        if name not in services:
            known = ", ".join(sorted(services)[:10]) or "none yet"
            out.append(f"upstream {item}: orch has no service named {name!r} (known: {known}); the route answers "
                       f"502 until one is applied with `fsctl service apply`")
        elif port and port not in services[name]:
            ports = ", ".join(sorted(services[name])) or "none"
            out.append(f"upstream {item}: service {name!r} has no port named {port!r} (its ports: {ports})")
    return out


def names_to_resolve(upstreams: list[str]) -> list[str]:
    """The host names (not IP literals, not services) among `host:port` targets, each once. Pure."""
    out: list[str] = []
    for item in upstreams:
        t = parse_target(item)
        if isinstance(t, str):
            continue
        try:
            ipaddress.ip_address(t[0])
        except ValueError:
            if t[0] not in out:
                out.append(t[0])
    return out


async def upstream_warnings(upstreams: list[str], *, services: ServicePorts | None, resolve: Resolver | None,
                            timeout_s: float = 2.0) -> list[str]:
    """All warnings for a route's upstreams. A missing source (None) is not checked. Names are resolved
    concurrently; one still unanswered after `timeout_s` is reported as such. Cancellation propagates."""
    out = service_problems(upstreams, services()) if services is not None else []
    names = names_to_resolve(upstreams) if resolve is not None else []
    if not names or resolve is None:
        return out
    tasks = [asyncio.ensure_future(resolve(n)) for n in names]
    try:
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
    finally:
        for task in tasks:
            task.cancel()  # a no-op for the finished ones; a slow lookup's thread ends on its own
    for name, task in zip(names, tasks, strict=True):
        if task in pending:
            out.append(f"upstream host {name!r} did not resolve within {timeout_s:g} s; check the name "
                       "(requests get 502 while it does not resolve)")
            continue
        err = task.exception()
        if isinstance(err, OSError):
            out.append(f"upstream host {name!r} does not resolve ({err.strerror or err}); requests will get 502 "
                       "until it does — for an orch service use service:NAME")
        elif err is not None:
            raise err
    return out
