"""Advice on a route's upstreams when it is saved: a `service:NAME` orch does not know, a host name that
does not resolve. The route is kept either way (the service may be applied later, DNS may catch up);
these are warnings for the person who typed it, never errors.

What is known comes from outside: `fsctl` wires orch's services and a resolver (the gate imports
neither). Resolution runs through the resolver (off the loop) under one short deadline for all names;
`LookupPool` is the resolver for these checks: its own two threads and a bounded queue, apart from the
loop's shared getaddrinfo threads that upstream connects use, so names slow to fail cannot delay them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import queue
import socket
import threading
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

from gate.routes import parse_target

ServicePorts = Callable[[], Mapping[str, Collection[str]]]
"""Every service orch knows now → the names of its ports (cheap, no I/O)."""

Resolver = Callable[[str], Awaitable[object]]
"""Resolve a host name off the loop; raises OSError when it does not resolve."""


class LookupBusy(RuntimeError):
    """The check's lookup queue is full (many slow names at once): this name was not checked."""


def _os_lookup(host: str) -> object:
    return socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)  # (looked up per call: tests fake it)


class LookupPool:
    """getaddrinfo for the upstream checks in `threads` daemon threads of its own (a hung lookup never
    holds the process's exit) with at most `queued` lookups waiting; beyond that `resolve` raises
    LookupBusy at once. `lookup` is the blocking OS resolver (socket.getaddrinfo)."""

    def __init__(self, *, threads: int = 2, queued: int = 8, lookup: Callable[[str], object] | None = None) -> None:
        self._lookup = lookup or _os_lookup
        self._threads = threads
        self._limit = threads + queued  # lookups running or waiting
        self._jobs: queue.SimpleQueue[tuple[str, asyncio.AbstractEventLoop, asyncio.Future[Any]]] = queue.SimpleQueue()
        self._outstanding = 0
        self._started = 0
        self._lock = threading.Lock()

    async def resolve(self, host: str) -> object:
        """Resolve `host` in the pool's threads; OSError when it does not resolve, LookupBusy when
        too many lookups are running or waiting already."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            if self._outstanding >= self._limit:
                raise LookupBusy(f"{self._outstanding} lookups already running or waiting")
            self._outstanding += 1
            while self._started < self._threads:
                self._started += 1
                threading.Thread(target=self._work, name="upstream-check-dns", daemon=True).start()
        self._jobs.put((host, loop, future))
        return await future

    def _work(self) -> None:
        while True:
            host, loop, future = self._jobs.get()
            try:
                if future.cancelled():  # the check gave up on it before it started: skip the lookup
                    continue
                try:
                    result, error = self._lookup(host), None
                except Exception as e:
                    result, error = None, e
            finally:
                with self._lock:
                    self._outstanding -= 1
            with contextlib.suppress(RuntimeError):  # the loop has closed meanwhile
                loop.call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future[Any], result: object, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


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
            out.append(
                f"upstream {item}: orch has no service named {name!r} (known: {known}); the route answers "
                f"502 until one is applied with `fsctl service apply`"
            )
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


async def upstream_warnings(
    upstreams: list[str], *, services: ServicePorts | None, resolve: Resolver | None, timeout_s: float = 2.0
) -> list[str]:
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
            out.append(
                f"upstream host {name!r} did not resolve within {timeout_s:g} s; check the name "
                "(requests get 502 while it does not resolve)"
            )
            continue
        err = task.exception()
        if isinstance(err, OSError):
            out.append(
                f"upstream host {name!r} does not resolve ({err.strerror or err}); requests will get 502 "
                "until it does — for an orch service use service:NAME"
            )
        elif isinstance(err, LookupBusy):
            out.append(f"upstream host {name!r} was not checked: {err} (slow DNS?)")
        elif err is not None:
            raise err
    return out
