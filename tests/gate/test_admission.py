"""The exchange's pure decisions (`gate.admission`), as tables."""

from __future__ import annotations

import base64

import pytest

from gate.admission import (
    PROXY,
    STATIC,
    Answer,
    acme_answer,
    decide,
    fail_over,
    loss_counts_against,
    method_refused,
    no_target,
    retry_stale,
    route,
    too_large,
    too_many,
)
from gate.balancer import TargetHealth
from gate.config import GateConfig
from gate.h1 import RequestInfo, check_request
from gate.policies import Credentials
from gate.routes import Route, RouteSpec
from gate.state import ProxyState

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


# --- route and decide: the request head + the route snapshot + the client → what the exchange does -----

_HASH = "$2b$04$" + "a" * 53  # well-formed; never checked here (a password goes to the worker pool)


def _state(spec: dict[str, object]) -> ProxyState:
    st = ProxyState(GateConfig(), clock=lambda: NOW, wall_clock=lambda: 1.7e9, timer=lambda: NOW)
    st.install(st.build_snapshot([Route(1, RouteSpec(**{"host": "app.test", "upstreams": ["10.0.0.1:80"], **spec}))]))
    return st


def _head(method: bytes = b"GET", target: bytes = b"/x", *headers: tuple[bytes, bytes]) -> tuple[RequestInfo, list]:
    hs = [(b"Host", b"app.test"), *headers]
    return check_request(method, target, "1.1", hs), hs


@pytest.mark.parametrize(
    ("scheme", "target", "host", "hop", "expected"),
    [
        ("http", b"/.well-known/acme-challenge/tok", b"app.test", None, Answer(200, body=b"tok.key")),
        ("http", b"/.well-known/acme-challenge/nope", b"other.test", None, 404),  # before any route
        ("https", b"/.well-known/acme-challenge/tok", b"app.test", None, "/.well-known/acme-challenge/tok"),
        ("http", b"/x", b"app.test", b"ffff, HOP", 508),
        ("http", b"/x", b"app.test", b"ffff", "/x"),
        ("http", b"/x", b"other.test", None, 404),
    ],
)
def test_route(scheme: str, target: bytes, host: bytes, hop: bytes | None, expected: object) -> None:
    st = _state({})
    hs = [(b"Host", host)] + ([(b"X-Infracore-Hop", hop.replace(b"HOP", st.hop_id))] if hop else [])
    info = check_request(b"GET", target, "1.1", hs)
    got = route(st.snapshot, scheme, info, st.hop_id, {"tok": "tok.key"})
    if isinstance(expected, str):
        assert isinstance(got, tuple) and got[0].id == 1 and got[1] == expected
    elif isinstance(expected, int):
        assert isinstance(got, Answer) and got.status == expected
    else:
        assert got == expected


_BASIC_OK = (b"Authorization", b"Basic " + base64.b64encode(b"ann:pw"))

DECIDE_CASES: list[tuple[str, dict[str, object], str, tuple[object, ...], dict[str, object], object]] = [
    # (name, route spec, scheme, request (method, target, *headers), extra args, expected)
    ("plain route: proxy", {}, "http", (), {}, PROXY),
    ("static route", {"static_dir": "/srv/site", "upstreams": []}, "http", (), {}, STATIC),
    ("method not allowed", {"methods": ["GET"]}, "http", (b"POST",), {}, (405, ((b"Allow", b"GET"),))),
    ("method allowed", {"methods": ["GET"]}, "http", (b"GET",), {}, PROXY),
    ("denied address", {"policies": {"deny": ["203.0.113.0/24"]}}, "http", (), {}, (403, ())),
    ("allowed address", {"policies": {"allow": ["203.0.113.0/24"]}}, "http", (), {}, PROXY),
    ("not on the allow list", {"policies": {"allow": ["10.0.0.0/8"]}}, "https", (), {}, (403, ())),
    ("plain HTTP to a TLS route: 301", {"tls": "auto"}, "http", (), {}, (301, ((b"Location", b"https://app.test/x"),))),
    ("POST to a TLS route: 308", {"tls": "auto"}, "http", (b"POST",), {}, 308),
    ("HTTPS to a TLS route", {"tls": "auto"}, "https", (), {}, PROXY),
    ("no redirect when turned off", {"tls": "auto", "policies": {"redirect_https": False}}, "http", (), {}, PROXY),
    (
        "auth: no credentials",
        {"policies": {"basic_auth": [{"username": "ann", "bcrypt_hash": _HASH}]}},
        "http",
        (),
        {},
        401,
    ),
    (
        "auth: a password to check off the loop",
        {"policies": {"basic_auth": [{"username": "ann", "bcrypt_hash": _HASH}]}},
        "http",
        (b"GET", b"/x", _BASIC_OK),
        {},
        Credentials,
    ),
    (
        "auth: checked already, asked again",
        {"policies": {"basic_auth": [{"username": "ann", "bcrypt_hash": _HASH}]}},
        "http",
        (b"GET", b"/x", _BASIC_OK),
        {"checked": True},
        PROXY,
    ),
    ("checked skips the method check too", {"methods": ["GET"]}, "http", (b"POST",), {"checked": True}, PROXY),
    (
        "rate limit: over it",
        {"policies": {"rate_limit": {"rate_per_s": 1, "burst": 1}}},
        "http",
        (),
        {"repeat": 2},
        (429, ((b"Retry-After", b"1"),)),
    ),
    (
        "rate limit: under it",
        {"policies": {"rate_limit": {"rate_per_s": 1, "burst": 2}}},
        "http",
        (),
        {"repeat": 2},
        PROXY,
    ),
    ("body too large", {"max_body_bytes": 4}, "http", (b"POST", b"/x", (b"Content-Length", b"5")), {}, 413),
    ("body at the limit", {"max_body_bytes": 4}, "http", (b"POST", b"/x", (b"Content-Length", b"4")), {}, PROXY),
    (
        "deny before the limiter",
        {"policies": {"deny": ["0.0.0.0/0"], "rate_limit": {"rate_per_s": 1}}},
        "http",
        (),
        {"repeat": 3},
        403,
    ),
]


@pytest.mark.parametrize(
    ("spec", "scheme", "request_", "extra", "expected"),
    [c[1:] for c in DECIDE_CASES],
    ids=[c[0] for c in DECIDE_CASES],
)
def test_decide(
    spec: dict[str, object], scheme: str, request_: tuple[object, ...], extra: dict[str, object], expected: object
) -> None:
    st = _state(spec)
    info, hs = _head(*request_)  # type: ignore[arg-type]
    rt = st.snapshot.runtimes[1]
    checked = bool(extra.get("checked", False))
    got: object = None
    for _ in range(int(extra.get("repeat", 1))):  # type: ignore[call-overload]
        got = decide(rt, request_[0] if request_ else b"GET", scheme, "203.0.113.7", info, hs, lambda: NOW, checked)  # type: ignore[arg-type]
    if expected is PROXY or expected is STATIC:
        assert got is expected
    elif expected is Credentials:
        assert isinstance(got, Credentials) and got.user == "ann"
    elif isinstance(expected, tuple):
        assert isinstance(got, Answer) and (got.status, got.headers) == expected
    else:
        assert isinstance(got, Answer) and got.status == expected


def test_decide_allocates_nothing_to_proxy() -> None:
    """The common path returns the same preallocated decision every time."""
    st = _state({})
    info, hs = _head()
    rt = st.snapshot.runtimes[1]
    assert decide(rt, b"GET", "http", "203.0.113.7", info, hs, lambda: NOW, False) is PROXY
    assert decide(rt, b"GET", "https", "203.0.113.7", info, hs, lambda: NOW, False) is PROXY
