"""The small interfaces components cooperate through, wired by `fsctl` at start.

A component never imports another; it takes one of these in its constructor instead:

- orch → gate: `EndpointBoard` (where each service's healthy instances listen), swapped atomically;
- orch → logbus: `LogSink` (an instance's stdout/stderr pipes);
- gate → logbus: `AccessLogSink` (one JSON line per request, handed over in batches);
- gate, orch, certd → probe: `MetricsSource` (counters and gauges read each tick), `ServiceInventory`
  (running instances, and every defined service's state);
- certd → gate: `ChallengeStore` (pending ACME HTTP-01 tokens), `CertificateBoard` (which cert
  serves which name; and, gate → certd, which names want one).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, Protocol

from core.hostnames import find_host

Stream = Literal["stdout", "stderr"]


@dataclass(frozen=True)
class Endpoint:
    """One instance of a service that can take traffic."""

    host: str
    port: int
    instance: str = ""
    healthy: bool = True


class EndpointBoard:
    """Service name → its endpoints, as one immutable snapshot replaced atomically.

    Readers (the gate, per request) call `get`, a dict lookup with no lock; the writer (orch) calls
    `publish` with a service's complete new list. Listeners run synchronously after each swap, on the
    loop; they must not block.
    """

    def __init__(self) -> None:
        self._snapshot: Mapping[str, tuple[Endpoint, ...]] = MappingProxyType({})
        self._listeners: list[Callable[[str, tuple[Endpoint, ...]], None]] = []

    def get(self, service: str) -> tuple[Endpoint, ...]:
        return self._snapshot.get(service, ())

    def snapshot(self) -> Mapping[str, tuple[Endpoint, ...]]:
        return self._snapshot

    def publish(self, service: str, endpoints: tuple[Endpoint, ...] | list[Endpoint]) -> None:
        new = dict(self._snapshot)
        if endpoints:
            new[service] = tuple(endpoints)
        else:
            new.pop(service, None)
        self._snapshot = MappingProxyType(new)
        for fn in list(self._listeners):
            fn(service, self.get(service))

    def on_change(self, fn: Callable[[str, tuple[Endpoint, ...]], None]) -> None:
        self._listeners.append(fn)


class LogSink(Protocol):
    """Where service output goes (logbus implements it; orch calls it)."""

    def attach(self, service: str, instance: str, stream: Stream, fd: int) -> None:
        """Take ownership of `fd`, the read end of a pipe the instance writes to, and pump it until EOF,
        then close it. MUST never block or slow the writer: when storage is slow, lines are buffered in
        bounded memory and then dropped with a visible marker. Returns at once."""

    def append(self, service: str, instance: str, stream: Stream, data: bytes) -> None:
        """Output already read by the caller (e.g. a Docker log stream). Returns at once, never blocks."""

    def room(self) -> int:
        """Bytes `append` takes now without dropping (a reader that can wait, e.g. of a file, paces on it)."""

    def when_stored(self, fn: Callable[[], None]) -> None:
        """Call `fn` (on any thread) once everything appended before this call is stored (survives the
        platform's exit), e.g. to persist how far a file was shipped. Not called if it cannot be stored."""


ACCESS_LOG_FIELDS = (
    "at",
    "host",
    "method",
    "path",
    "status",
    "bytes_sent",
    "duration_ms",
    "upstream",
    "client_ip",
    "request_id",
    "route",
    "protocol",
    "bytes_received",
    "upstream_ms",
)


@dataclass(slots=True)
class AccessLogEntry:
    """One proxied request, as read back from its access-log line (`from_line`): the line is the record."""

    at: float  # epoch seconds when the request started
    host: str
    method: str
    path: str
    status: int
    bytes_sent: int
    duration_ms: float
    upstream: str | None
    client_ip: str
    request_id: str
    route: str | None = None
    protocol: str = "HTTP/1.1"
    bytes_received: int = 0  # request body bytes read from the client
    upstream_ms: float | None = None  # time from sending upstream to its response head

    @classmethod
    def from_line(cls, line: str | bytes) -> AccessLogEntry:
        return cls(**json.loads(line))


class AccessLogSink(Protocol):
    """Where the gate's access log goes, a batch at a time. The gate renders each request's line (a JSON
    object with the keys of `ACCESS_LOG_FIELDS` in that order, ASCII only, ending in one newline: a line is
    what a consumer reads, so nothing is formatted twice) into an open batch on its loop, and hands it
    over once it has `access_batch_lines` lines or `access_batch_chars` characters, `access_batch_s` after
    its first line, and when the gate stops."""

    access_batch_lines: int
    access_batch_chars: int
    access_batch_s: float

    def record_lines(self, lines: list[str], at: float) -> None:
        """Store a batch of lines, in order (`at`: epoch seconds when its first line came; the list is
        the sink's from now on). Called on the proxy's loop: MUST return at once and never raise; a
        batch it cannot take is counted as that many dropped lines."""


@dataclass(frozen=True)
class Sample:
    """One reading: a gauge value or a monotonically increasing counter (probe computes rates)."""

    name: str
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)
    kind: Literal["gauge", "counter"] = "gauge"


class MetricsSource(Protocol):
    def samples(self) -> list[Sample]:
        """Current readings; called once per probe tick on the loop, so it MUST be cheap and not block."""


@dataclass(frozen=True)
class InstanceInfo:
    service: str
    instance: str
    runtime: str  # "process" | "docker" | "systemd"
    state: str
    pid: int | None = None
    cgroup: str | None = None  # cgroup path relative to the hierarchy root, when the runtime made one
    container_id: str | None = None
    restarts: int = 0


@dataclass(frozen=True)
class ServiceState:
    """A service the orchestrator knows, running or not (probe's `service_up` is 0 for a stopped one)."""

    service: str
    status: str  # orch's: running, degraded, starting, stopped, failed, crashloop, backoff, exited, ...
    desired: str  # "running" | "stopped"
    healthy: int  # instances running and healthy
    replicas: int


class ServiceInventory(Protocol):
    def instances(self) -> list[InstanceInfo]:
        """The running instances now; cheap, non-blocking."""

    def service_states(self) -> list[ServiceState]:
        """Every defined service, whatever its state (a removed one is no longer listed); cheap,
        non-blocking, called on the loop once per probe tick."""


class ChallengeStore:
    """Pending ACME HTTP-01 challenges: token → key authorization. certd writes, gate's responder reads."""

    def __init__(self) -> None:
        self._tokens: dict[str, str] = {}

    def put(self, token: str, key_authorization: str) -> None:
        self._tokens[token] = key_authorization

    def get(self, token: str) -> str | None:
        return self._tokens.get(token)

    def remove(self, token: str) -> None:
        self._tokens.pop(token, None)


@dataclass(frozen=True)
class CertificateRef:
    """A certificate on disk that serves `names` (exact names or `*.example.com` wildcards)."""

    names: tuple[str, ...]
    cert_path: str  # PEM full chain
    key_path: str  # PEM private key, mode 0600
    not_after: float  # epoch seconds
    issuer: str = ""
    serial: str = ""
    source: str = "acme"  # "acme" | "imported" | "self-signed"


class CertificateBoard:
    """Which certificate serves which name, and which names want an automatic certificate.

    certd publishes certificates (`publish`, `withdraw`); the gate's SNI selection reads `get` on each
    handshake and rebuilds its contexts from `on_change`. The gate declares the names of routes with
    `tls: auto` through `set_wanted`; certd follows them with `on_wanted`. Both maps are replaced
    atomically; listeners run synchronously on the loop and must not block.
    """

    def __init__(self) -> None:
        self._certs: Mapping[str, CertificateRef] = MappingProxyType({})
        self._wanted: frozenset[str] = frozenset()
        self._cert_listeners: list[Callable[[CertificateRef | None, str], None]] = []
        self._wanted_listeners: list[Callable[[frozenset[str]], None]] = []

    def get(self, name: str) -> CertificateRef | None:
        """The certificate for `name`: an exact match first, then a wildcard one label up."""
        return find_host(self._certs, name)

    def all(self) -> Mapping[str, CertificateRef]:
        return self._certs

    def publish(self, ref: CertificateRef) -> None:
        new = dict(self._certs)
        for n in ref.names:
            new[n.lower()] = ref
        self._certs = MappingProxyType(new)
        for fn in list(self._cert_listeners):
            fn(ref, ref.names[0] if ref.names else "")

    def withdraw(self, name: str) -> None:
        new = dict(self._certs)
        if new.pop(name.lower(), None) is None:
            return
        self._certs = MappingProxyType(new)
        for fn in list(self._cert_listeners):
            fn(None, name)

    def on_change(self, fn: Callable[[CertificateRef | None, str], None]) -> None:
        self._cert_listeners.append(fn)

    @property
    def wanted(self) -> frozenset[str]:
        return self._wanted

    def set_wanted(self, names: frozenset[str] | set[str]) -> None:
        names = frozenset(n.lower() for n in names)
        if names == self._wanted:
            return
        self._wanted = names
        for fn in list(self._wanted_listeners):
            fn(names)

    def on_wanted(self, fn: Callable[[frozenset[str]], None]) -> None:
        self._wanted_listeners.append(fn)


class ServiceLauncher(Protocol):
    """Runs a temporary copy of a service (snap's shadow instance after a restore; orch's wiring implements it)."""

    async def start_copy(
        self, service: str, copy_name: str, path_map: Mapping[str, str], timeout_s: float
    ) -> dict[str, object]:
        """Apply `service`'s spec as `copy_name` (one replica, its own ports) with each `path_map` key replaced by
        its value wherever it starts a path in the spec; wait until healthy or `timeout_s`. Returns
        `{"name", "healthy", "status", "endpoints": ["host:port"], "reason"}`; leaves the copy running either way."""

    async def stop_copy(self, copy_name: str) -> None:
        """Stop and forget the copy. Idempotent."""
