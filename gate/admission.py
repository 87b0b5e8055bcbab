"""The exchange's decisions as pure functions (no I/O, no clock of their own): what the gate answers
itself (ACME token, method, size, rate), and the failover and retry rules over what was tried.

`Exchange` keeps the cheap guards of the common path inline (a proxied request pays no call here) and
asks these functions once a guard trips; each returns an `Answer` (or a yes/no), which the exchange
executes. Tested directly with tables (tests/gate/test_admission.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from gate.balancer import TargetHealth, retry_after_s

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
