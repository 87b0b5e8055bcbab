"""Load balancing, passive health and per-route policies, driven with `now` passed in."""

from __future__ import annotations

import base64

import bcrypt
import pytest

from gate.balancer import Cursor, HealthPolicy, TargetHealth, pick, record_failure, record_success, retry_after_s
from gate.policies import (
    AUTH_CACHE_SIZE,
    AuthFailures,
    CompiledPolicies,
    Credentials,
    RateLimiter,
    Verdict,
    client_key,
    https_redirect,
    ip_in,
    verify_password,
)
from gate.routes import Policies, RateLimit, RouteSpec


def targets(n: int) -> list[TargetHealth]:
    return [TargetHealth("127.0.0.1", 1000 + i) for i in range(n)]


def test_round_robin_cycles_and_skips_ejected():
    ts, c = targets(3), Cursor()
    assert [pick(ts, 0, cursor=c).port for _ in range(4)] == [1000, 1001, 1002, 1000]
    ts[1].ejected_until = 10
    assert [pick(ts, 5, cursor=c).port for _ in range(3)] == [1002, 1000, 1002]
    assert pick(ts, 10, exclude=[ts[0], ts[2]]) is ts[1]  # half-open again at its time
    assert pick(ts, 5, exclude=[ts[0], ts[2]]) is None


def test_least_conn_prefers_fewest_active():
    ts = targets(3)
    ts[0].active, ts[1].active, ts[2].active = 5, 1, 3
    assert pick(ts, 0, balance="least_conn", cursor=Cursor()).port == 1001
    ts[1].ejected_until = 9
    assert pick(ts, 0, balance="least_conn", cursor=Cursor()).port == 1002


def test_ejection_backoff_doubles_and_success_resets():
    t, pol = TargetHealth("h", 1), HealthPolicy(eject_after=2, backoff_s=1, max_backoff_s=3)
    assert not record_failure(t, 100, pol)
    assert record_failure(t, 100, pol) and t.ejected_until == 101
    assert not t.available(100.5) and t.available(101)
    record_failure(t, 101, pol)
    assert record_failure(t, 101, pol) and t.ejected_until == 103
    record_failure(t, 103, pol)
    assert record_failure(t, 103, pol) and t.ejected_until == 106  # capped at 3 s
    assert retry_after_s([t], 103.2) == 3
    record_success(t)
    assert t.available(0) and t.ejections == 0


def test_target_key_brackets_v6():
    assert TargetHealth("::1", 80).key == "[::1]:80"


def test_rate_limiter_bucket():
    rl = RateLimiter(RateLimit(rate_per_s=2, burst=3))
    assert [rl.take("1.1.1.1", 0.0) for _ in range(3)] == [0, 0, 0]
    assert rl.take("1.1.1.1", 0.0) == pytest.approx(0.5)
    assert rl.take("2.2.2.2", 0.0) == 0  # other clients have their own bucket
    assert rl.take("1.1.1.1", 0.5) == 0  # one token refilled
    assert rl.take("1.1.1.1", 0.5) > 0


def test_rate_limiter_memory_is_bounded():
    rl = RateLimiter(RateLimit(rate_per_s=1), max_clients=10)
    for i in range(100):
        rl.take(f"10.0.0.{i}", 0)
    assert len(rl.buckets) == 10


@pytest.mark.parametrize(
    ("nets", "ip", "inside"),
    [
        (["10.0.0.0/8"], "10.1.2.3", True),
        (["10.0.0.0/8"], "11.0.0.1", False),
        (["2001:db8::/32"], "2001:db8::5", True),
        (["10.0.0.0/8"], "::ffff:10.0.0.1", True),
        (["10.0.0.0/8"], "not-an-ip", False),
        (["::/0"], "1.2.3.4", False),
    ],
)
def test_ip_in(nets, ip, inside):
    import ipaddress

    assert ip_in(tuple(ipaddress.ip_network(n) for n in nets), ip) is inside


def test_allow_deny_order():
    p = CompiledPolicies(Policies(allow=["10.0.0.0/8"], deny=["10.0.0.5/32"]))
    assert p.check_ip("10.0.0.1") is None
    assert p.check_ip("10.0.0.5").status == 403
    assert p.check_ip("192.168.1.1").status == 403


def test_redirect_https_codes():
    spec = RouteSpec(host="a.com", upstreams=["127.0.0.1:1"], tls="manual")
    p = CompiledPolicies(spec.policies, https_redirect(spec, 443))
    v = p.check_redirect("http", b"GET", "a.com", "/x?y")
    assert v.status == 301 and v.headers == ((b"Location", b"https://a.com/x?y"),)
    assert p.check_redirect("http", b"HEAD", "a.com", "/").status == 301
    assert p.check_redirect("http", b"POST", "a.com", "/").status == 308
    assert p.check_redirect("https", b"GET", "a.com", "/") is None


def test_basic_auth():
    h = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()
    p = CompiledPolicies(Policies(basic_auth=[{"username": "ann", "bcrypt_hash": h}]))
    good = b"Basic " + base64.b64encode(b"ann:s3cret")
    cred = p.check_auth(good)  # not seen before: to be verified (off the loop) by the caller
    assert isinstance(cred, Credentials) and verify_password(cred.password, cred.stored)
    p.remember(cred)
    assert p.check_auth(good) is None and len(p.auth_cache) == 1
    wrong = p.check_auth(b"Basic " + base64.b64encode(b"ann:nope"))
    assert isinstance(wrong, Credentials) and not verify_password(wrong.password, wrong.stored)
    assert wrong.key != cred.key
    # An unknown user is verified too — against the decoy hash, same algorithm and cost, which nothing matches.
    unknown = p.check_auth(b"Basic " + base64.b64encode(b"bob:s3cret"))
    assert isinstance(unknown, Credentials) and unknown.stored[:29] == h.encode()[:29]
    assert not verify_password(unknown.password, unknown.stored)
    for bad in (
        b"",
        b"Basic !!",
        b"Basic " + base64.b64encode(b"ann"),
        b"Bearer x",
        b"Basic " + base64.b64encode(b"\xff:x"),
    ):
        v = p.check_auth(bad)  # answered at once, no bcrypt
        assert isinstance(v, Verdict) and v.status == 401 and v.headers[0][0] == b"WWW-Authenticate"
    assert verify_password(b"x", b"not a bcrypt hash") is False


def test_basic_auth_cache_is_bounded_and_keyed_on_the_stored_hash():
    h1 = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    h2 = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    p1 = CompiledPolicies(Policies(basic_auth=[{"username": "ann", "bcrypt_hash": h1}]))
    p2 = CompiledPolicies(Policies(basic_auth=[{"username": "ann", "bcrypt_hash": h2}]))
    header = b"Basic " + base64.b64encode(b"ann:pw")
    c1, c2 = p1.check_auth(header), p2.check_auth(header)
    assert isinstance(c1, Credentials) and isinstance(c2, Credentials) and c1.key != c2.key  # a new hash: re-check
    for i in range(AUTH_CACHE_SIZE + 50):
        p1.remember(Credentials("ann", b"pw", h1.encode(), i.to_bytes(4, "big")))
    assert len(p1.auth_cache) == AUTH_CACHE_SIZE


def test_auth_failures_throttle_per_client_and_ipv6_prefix():
    t = AuthFailures(burst=3, window_s=30.0)  # 3 wrong passwords, then one per 10 s
    assert [t.attempt("1.2.3.4", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert t.attempt("1.2.3.4", 0.0) == pytest.approx(10.0)
    assert t.attempt("1.2.3.5", 0.0) == 0.0  # another client is not affected
    assert t.attempt("1.2.3.4", 5.0) == pytest.approx(5.0)
    assert t.attempt("1.2.3.4", 10.0) == 0.0  # aged out: one more try
    t.attempt("5.5.5.5", 0.0)
    t.succeeded("5.5.5.5", 0.0)  # a right password gives its token back...
    assert [t.attempt("5.5.5.5", 0.0) for _ in range(4)][-1] > 0  # ...but never resets the count
    for i in range(3):
        assert t.attempt(f"2001:db8::{i + 1}", 0.0) == 0.0
    assert t.attempt("2001:db8::ffff", 0.0) > 0  # one /64 is one client
    assert t.attempt("2001:db8:0:1::1", 0.0) == 0.0
    assert client_key("::ffff:10.0.0.1") == "10.0.0.1" and client_key("10.0.0.1") == "10.0.0.1"


def test_response_headers_hsts_only_on_https():
    p = CompiledPolicies(Policies(security_headers=True, response_headers={"set": {"X-A": "1"}}))
    names = [k for k, _ in p.response_headers("http", 3600)]
    assert b"X-Content-Type-Options" in names and b"X-A" in names and b"Strict-Transport-Security" not in names
    assert (b"Strict-Transport-Security", b"max-age=3600") in p.response_headers("https", 3600)
