"""Routing table and route validation: tables of inputs and the exact answers."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gate.router import RouteConflict, RouteTable, parse_host_header, strip_prefix
from gate.routes import Route, RouteSpec, parse_target


def table(*specs: dict) -> RouteTable:
    return RouteTable([Route(i + 1, RouteSpec(**s)) for i, s in enumerate(specs)])


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("example.com", "example.com"),
        ("Example.COM:8080", "example.com"),
        ("example.com.", "example.com"),
        ("[::1]", "[::1]"),
        ("[::1]:8080", "[::1]"),
        ("[2001:DB8:0:0::1]:443", "[2001:db8::1]"),
        ("127.0.0.1:80", "127.0.0.1"),
        (b"a-b.example.com", "a-b.example.com"),
        ("", None),
        (":80", None),
        ("example.com:abc", None),
        ("example.com:123456", None),
        ("[::1", None),
        ("[::1]x", None),
        ("[zz::1]", None),
        ("exa mple.com", None),
        ("exämple.com", None),
        (b"\xff", None),
        ("a/b", None),
        ("a@b", None),
    ],
)
def test_parse_host_header(header, expected):
    assert parse_host_header(header) == expected


ROUTES = (
    {"host": "example.com", "upstreams": ["127.0.0.1:1"]},
    {"host": "example.com", "path": "/api", "upstreams": ["127.0.0.1:2"], "strip_prefix": True},
    {"host": "example.com", "path": "/api/v2", "upstreams": ["127.0.0.1:3"]},
    {"host": "*.example.com", "upstreams": ["127.0.0.1:4"]},
    {"host": "x.example.com", "upstreams": ["127.0.0.1:5"]},
    {"host": "*", "path": "/health", "upstreams": ["127.0.0.1:6"]},
    {"host": "[::1]", "upstreams": ["127.0.0.1:7"]},
    {"host": "only.example.org", "path": "/app", "upstreams": ["127.0.0.1:8"]},
)


@pytest.mark.parametrize(
    ("host", "target", "route_id", "upstream_target"),
    [
        ("example.com", "/", 1, "/"),
        ("example.com", "/index.html?x=1", 1, "/index.html?x=1"),
        ("example.com", "/api", 2, "/"),
        ("example.com", "/api?q=1", 2, "/?q=1"),
        ("example.com", "/api/", 2, "/"),
        ("example.com", "/api/users/1", 2, "/users/1"),
        ("example.com", "/apix", 1, "/apix"),
        ("example.com", "/api/v2/x", 3, "/api/v2/x"),
        ("example.com", "/api/v20", 2, "/v20"),
        ("a.example.com", "/", 4, "/"),
        ("x.example.com", "/", 5, "/"),
        ("a.b.example.com", "/health", 6, "/health"),
        ("a.b.example.com", "/", None, None),
        ("other.net", "/health/deep", 6, "/health/deep"),
        ("other.net", "/", None, None),
        ("[::1]", "/z", 7, "/z"),
        ("only.example.org", "/app/1", 8, "/app/1"),
        ("only.example.org", "/", None, None),
        ("only.example.org", "/application", None, None),
    ],
)
def test_match(host, target, route_id, upstream_target):
    m = table(*ROUTES).match(host, target)
    if route_id is None:
        assert m is None
    else:
        assert m is not None and (m.route.id, m.upstream_target) == (route_id, upstream_target)


def test_duplicate_host_path_is_refused_naming_both():
    with pytest.raises(RouteConflict, match=r"route 2 and route 1 both claim host a\.com path /x"):
        table(
            {"host": "a.com", "path": "/x", "upstreams": ["h:1"]},
            {"host": "A.com", "path": "/x/", "upstreams": ["h:2"]},
        )


def test_strip_prefix_root_keeps_target():
    assert strip_prefix("/", "/a?b") == "/a?b"


def test_hosts_wanting_certs():
    t = table({"host": "a.com", "upstreams": ["h:1"], "tls": "auto"}, {"host": "b.com", "upstreams": ["h:1"]})
    assert t.hosts_wanting_certs() == frozenset({"a.com"})


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"host": "", "upstreams": ["h:1"]}, "host is empty"),
        ({"host": "exa_mple.com", "upstreams": ["h:1"]}, "not a valid DNS name"),
        ({"host": "a.*.com", "upstreams": ["h:1"]}, "not a valid DNS name"),
        ({"host": "*.com", "upstreams": ["h:1"]}, "too broad"),
        ({"host": "a.com:80", "upstreams": ["h:1"]}, "must not carry a port"),
        ({"host": "a.com", "path": "api", "upstreams": ["h:1"]}, "must start with '/'"),
        ({"host": "a.com", "path": "/a/../b", "upstreams": ["h:1"]}, "dot-segments"),
        ({"host": "a.com", "path": "/a?x", "upstreams": ["h:1"]}, "plain prefix"),
        ({"host": "a.com"}, "needs upstreams"),
        ({"host": "a.com", "upstreams": ["nohost"]}, "upstreams[0]"),
        ({"host": "a.com", "upstreams": ["h:0"]}, "is not host:port"),
        ({"host": "a.com", "upstreams": ["h:1", "h:1"]}, "same target twice"),
        ({"host": "a.com", "upstreams": ["service:Bad Name"]}, "service:NAME or service:NAME:PORT"),
        ({"host": "a.com", "upstreams": ["https://h:1"]}, "TLS to upstreams"),
        ({"host": "a.com", "upstreams": ["h:1"], "methods": ["FETCH"]}, "methods must be"),
        ({"host": "*.a.com", "upstreams": ["h:1"], "tls": "auto"}, "tls: auto needs an exact DNS name"),
        ({"host": "a.com", "upstreams": ["h:1"], "tls": "sometimes"}, "tls"),
        ({"host": "a.com", "upstreams": ["h:1"], "typo": 1}, "Extra inputs are not permitted"),
        ({"host": "a.com", "upstreams": ["h:1"], "policies": {"allow": ["10.0.0.300/8"]}}, "not an IP address or CIDR"),
        (
            {"host": "a.com", "upstreams": ["h:1"], "policies": {"response_headers": {"set": {"X-A": "b\r\nc"}}}},
            "CR, LF or NUL",
        ),
        (
            {"host": "a.com", "upstreams": ["h:1"], "policies": {"request_headers": {"remove": ["Connection"]}}},
            "managed by the gate",
        ),
        ({"host": "a.com", "upstreams": ["h:1"], "static_dir": "/srv/www"}, "not both"),
    ],
)
def test_invalid_specs_say_what_is_wrong(spec, fragment):
    with pytest.raises(ValidationError) as e:
        RouteSpec(**spec)
    assert fragment in str(e.value)


def test_spec_normalizes():
    s = RouteSpec(host="Example.COM.", path="/api/", upstreams=[" 127.0.0.1:80 "], methods=["get", "post", "get"])
    assert (s.host, s.path, s.upstreams, s.methods) == ("example.com", "/api", ["127.0.0.1:80"], ["GET", "POST"])
    assert RouteSpec(host="[::1]", upstreams=["h:1"]).host == "[::1]"
    assert RouteSpec(host="::1", upstreams=["h:1"]).host == "[::1]"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:80", ("127.0.0.1", 80)),
        ("[::1]:8080", ("::1", 8080)),
        ("http://a.local:3000/", ("a.local", 3000)),
        ("service:web", "web"),
        ("service:web:admin", "web:admin"),
    ],
)
def test_parse_target(value, expected):
    assert parse_target(value) == expected


def test_host_resolution_stays_bounded_and_right_under_many_hosts():
    """The table remembers host → routes (one dict lookup per request); hostile Host values churn through it
    without growing it, and answers stay those of `core.hostnames` after every reset."""
    from gate.router import _CACHE_MAX

    t = table(
        {"host": "*.wild.test", "path": "/", "upstreams": ["127.0.0.1:1"]},
        {"host": "*", "path": "/", "upstreams": ["127.0.0.1:2"]},
    )
    for i in range(3 * _CACHE_MAX):
        found = t.lookup(f"h{i}.wild.test" if i % 2 else f"h{i}.other.test", "/")
        assert found is not None and found[0].id == (1 if i % 2 else 2)
    assert len(t._resolved) <= _CACHE_MAX
    assert t.lookup("a.b.wild.test", "/")[0].id == 2  # one label only, else the catch-all
