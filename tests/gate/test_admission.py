"""The exchange's pure decisions (`gate.admission`), as tables."""

from __future__ import annotations

import pytest

from gate.admission import (
    Answer,
    acme_answer,
    fail_over,
    loss_counts_against,
    method_refused,
    no_target,
    retry_stale,
    too_large,
    too_many,
)
from gate.balancer import TargetHealth

NOW = 100.0


def _t(port: int, ejected_until: float = 0.0) -> TargetHealth:
    t = TargetHealth("10.0.0.1", port)
    t.ejected_until = ejected_until
    return t


A, B, C, D = _t(1), _t(2), _t(3), _t(4)
EJ = _t(9, ejected_until=NOW + 7.2)  # ejected for another 7.2 s


@pytest.mark.parametrize(
    ("target", "challenges", "expected"),
    [
        ("/.well-known/acme-challenge/tok", {"tok": "tok.key"}, Answer(200, body=b"tok.key")),
        ("/.well-known/acme-challenge/tok?x=1", {"tok": "tok.key"}, Answer(200, body=b"tok.key")),
        (
            "/.well-known/acme-challenge/other",
            {"tok": "tok.key"},
            Answer(404, "no pending ACME challenge has this token"),
        ),
        (
            "/.well-known/acme-challenge/",
            {"": "empty token never matches"},
            Answer(404, "no pending ACME challenge has this token"),
        ),
    ],
)
def test_acme_answer(target: str, challenges: dict[str, str], expected: Answer) -> None:
    assert acme_answer(target, "/.well-known/acme-challenge/", challenges) == expected


@pytest.mark.parametrize(
    ("make", "status", "headers", "close"),
    [
        (lambda: method_refused(b"DELETE", ["GET", "HEAD"]), 405, ((b"Allow", b"GET, HEAD"),), False),
        (lambda: too_many(0.2), 429, ((b"Retry-After", b"1"),), False),
        (lambda: too_many(3.01), 429, ((b"Retry-After", b"4"),), False),
        (lambda: too_large(10), 413, (), True),
    ],
)
def test_refusals(make: object, status: int, headers: tuple[tuple[bytes, bytes], ...], close: bool) -> None:
    a = make()  # type: ignore[operator]
    assert (a.status, a.headers, a.close) == (status, headers, close) and a.message


@pytest.mark.parametrize(
    ("targets", "tried", "status", "retry_after"),
    [
        ([], [], 503, b"1"),  # none configured (or none healthy among a service's endpoints)
        ([A, B], [A, B], 502, None),  # every one tried: the last failure is what the client learns
        ([EJ], [], 503, b"8"),  # all ejected: come back when the first returns (rounded up)
        ([EJ, _t(10, NOW + 2.5)], [], 503, b"3"),
    ],
)
def test_no_target(
    targets: list[TargetHealth], tried: list[TargetHealth], status: int, retry_after: bytes | None
) -> None:
    a = no_target(targets, tried, NOW)
    assert a.status == status
    assert dict(a.headers).get(b"Retry-After") == retry_after


@pytest.mark.parametrize(
    ("tried", "targets", "expected"),
    [
        ([A], [A, B], True),  # another one left
        ([A], [A], False),  # the only one failed
        ([A], [A, EJ], False),  # the other is ejected
        ([A, B], [A, B, C], True),  # third attempt allowed
        ([A, B, C], [A, B, C, D], False),  # three attempts is the most
    ],
)
def test_fail_over(tried: list[TargetHealth], targets: list[TargetHealth], expected: bool) -> None:
    assert fail_over(tried, targets, NOW) is expected


@pytest.mark.parametrize(
    ("requests", "retry_ok", "retried", "expected"),
    [
        (2, True, False, True),  # reused connection, idempotent bodiless request: once more on a fresh one
        (1, True, False, False),  # a fresh connection closing says something about the origin
        (2, False, False, False),  # a POST (or a body) is never sent twice
        (2, True, True, False),  # once only
    ],
)
def test_retry_stale(requests: int, retry_ok: bool, retried: bool, expected: bool) -> None:
    assert retry_stale(requests, retry_ok, retried) is expected


@pytest.mark.parametrize(("req_ended", "expected"), [(True, True), (False, False)])
def test_loss_counts_against(req_ended: bool, expected: bool) -> None:
    assert loss_counts_against(req_ended) is expected
