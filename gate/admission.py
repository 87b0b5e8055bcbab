"""The exchange's decisions as pure functions (no I/O, no clock of their own): which route takes a
request and what the gate does with it — answer itself (ACME token, 404, 405, a policy's 403/401/
redirect, 429, 413) or go on (static files, proxy) — and the failover and retry rules over what was tried.

`Exchange` asks `route` then `decide` for every request and executes what they return: an `Answer`, the
`Credentials` of a password to check off the loop (then `decide` again with `checked`), or one of the
preallocated go-ons `PROXY` / `STATIC` (the common path allocates nothing here). Compiled with the hot
modules (`admission.pxd`: the exchange calls these in C). Tested directly with tables
(tests/gate/test_admission.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

from gate.balancer import TargetHealth, retry_after_s
from gate.policies import ACME_PREFIX, Credentials

if TYPE_CHECKING:
    from gate.h1 import RequestInfo
    from gate.routes import Route
    from gate.state import RouteRuntime, Snapshot

MAX_ATTEMPTS = 3  # targets tried for one request (the first and two failovers)


@dataclass(frozen=True, slots=True)
class Answer:
    """A response the gate makes itself: an error page for `status` >= 400 (with `message`), else `body`."""

    status: int
    message: str = ""
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""
    close: bool = False


class Challenges(Protocol):
    def get(self, token: str) -> str | None: ...


class Go:
    """A decision to go on rather than answer: one preallocated instance per kind, compared by identity."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


PROXY: Final = Go("proxy")  # send it to an upstream (`Exchange.choose`, after buffering the body if the route does)
STATIC: Final = Go("static")  # answer from the route's directory (`gate._static_io.serve_static`)

LOOP: Final = Answer(
    508,
    "this request came back to the gate that forwarded it: a route's upstream leads to the "
    "gate itself; point it at the application instead",
)


def route(
    snap: Snapshot, scheme: str, info: RequestInfo, hop_id: bytes, challenges: Challenges
) -> Answer | tuple[Route, str]:
    """Which route takes the request — (route, the target to send upstream) — or the answer given before
    any route: an ACME HTTP-01 token over plain HTTP, a request that looped back to this gate (508), or
    no route for its host and path (404)."""
    if scheme == "http" and info.target.startswith(ACME_PREFIX):
        return acme_answer(info.target, ACME_PREFIX, challenges)
    hop = info.hop
    if hop is not None and hop.find(hop_id) >= 0:
        return LOOP
    m = snap.table.lookup(info.host, info.target)
    if m is None:
        return Answer(404, f"no site is configured for {info.host or 'this address'} at this path")
    return m


def decide(
    rt: RouteRuntime,
    method: bytes,
    scheme: str,
    client_ip: str,
    info: RequestInfo,
    headers: list[tuple[bytes, bytes]],
    clock: Callable[[], float],
    checked: bool,
) -> Answer | Credentials | Go:
    """What the route `rt` does with the request: its method (405) and access policies (allow/deny 403,
    HTTPS redirect, Basic auth: a 401, or `Credentials` to verify first), then — or at once when
    `checked` (a password was verified) — its rate limit (429, taking a token), body limit (413), and
    then `STATIC` or `PROXY`. `clock` is read only when a limiter needs the time."""
    if not checked:
        if rt.methods is not None and method not in rt.methods:
            return method_refused(method, rt.route.spec.methods)
        pol = rt.policies
        if not (pol.trivial_https if scheme == "https" else pol.trivial):
            verdict = pol.check_ip(client_ip) or pol.check_redirect(scheme, method, info.host, info.target)
            if verdict is None and pol.auth_users:
                auth = pol.check_auth(_header(headers, b"authorization"))
                if isinstance(auth, Credentials):
                    return auth
                verdict = auth
            if verdict is not None:
                if 300 <= verdict.status < 400:
                    return Answer(verdict.status, headers=verdict.headers)
                return Answer(verdict.status, verdict.message, verdict.headers)
    if rt.limiter is not None:
        wait = rt.limiter.take(client_ip, clock())
        if wait > 0:
            return too_many(wait)
    if rt.max_body is not None and info.content_length is not None and info.content_length > rt.max_body:
        return too_large(rt.max_body)
    if rt.static_root is not None:
        return STATIC
    return PROXY


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes:
    for n, v in headers:
        if n.lower() == name:
            return v
    return b""


def acme_answer(target: str, prefix: str, challenges: Challenges) -> Answer:
    """An HTTP-01 challenge request (`target` starts with `prefix`): the key authorization, or 404."""
    token = target[len(prefix) :].split("?", 1)[0]
    key_auth = challenges.get(token) if token else None
    if key_auth is None:
        return Answer(404, "no pending ACME challenge has this token")
    return Answer(200, body=key_auth.encode())


def method_refused(method: bytes, allowed: Sequence[str] | None) -> Answer:
    return Answer(405, f"{method.decode()} is not allowed here", ((b"Allow", ", ".join(allowed or ()).encode()),))


def too_many(wait_s: float, message: str = "too many requests from your address; slow down") -> Answer:
    return Answer(429, message, ((b"Retry-After", str(math.ceil(wait_s)).encode()),))


def too_large(max_body: int) -> Answer:
    return Answer(413, f"the request body is larger than this site accepts ({max_body} bytes)", close=True)


def no_target(targets: Sequence[TargetHealth], tried: Sequence[TargetHealth], now: float) -> Answer:
    """No target can take the request: none configured (503), every one tried already (502), or all
    ejected (503 with the soonest return as Retry-After)."""
    if not targets:
        return Answer(503, "no upstream is available for this site", ((b"Retry-After", b"1"),))
    if tried:
        return Answer(502, "the upstream could not be reached")
    return Answer(
        503,
        "every upstream of this site is failing; retry shortly",
        ((b"Retry-After", str(retry_after_s(targets, now)).encode()),),
    )


def fail_over(tried: Sequence[TargetHealth], targets: Sequence[TargetHealth], now: float) -> bool:
    """After a failed dial: whether another target is worth a try (attempts left, one not tried and
    not ejected)."""
    return len(tried) < MAX_ATTEMPTS and any(t not in tried and t.available(now) for t in targets)


def retry_stale(requests_on_conn: int, retry_ok: bool, retried: bool) -> bool:
    """The upstream closed without answering: whether to send the request again on a fresh connection.
    Only when the connection was reused (the origin closed an idle one just as we sent), the request
    is safe to repeat (idempotent, no body: `retry_ok`) and not retried already."""
    return requests_on_conn > 1 and retry_ok and not retried


def loss_counts_against(req_ended: bool) -> bool:
    """Whether an upstream closing without an answer counts against its health: not while the request
    body was still arriving (the origin may have given up on a slow client; nginx and HAProxy agree)."""
    return req_ended
