"""The route model: what a person declares for one host/path (upstreams, TLS mode, limits, policies),
validated field by field with messages that say what is wrong and how to fix it.

A `RouteSpec` is what the API, the CLI and the state DB carry; `Route` is a spec with its id, frozen,
as the router and the proxy use it. Specs never hold live state (connections, health, buckets).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from gate.static import static_root_problem

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_SERVICE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}(:[a-z0-9][a-z0-9_-]{0,62})?$")  # NAME or NAME:PORTNAME
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
    }
)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})


def normalize_host_pattern(value: str) -> str:
    """`Example.COM.` → `example.com`; `*.example.com` stays a one-label wildcard; `*` is the catch-all.

    IP literals are allowed (IPv6 in brackets or bare). Raises ValueError saying what is wrong."""
    v = value.strip().lower().rstrip(".")
    if v == "*":
        return v
    if not v:
        raise ValueError("host is empty; give a name like example.com or *.example.com")
    if v.startswith("[") and v.endswith("]"):
        v = v[1:-1]
    try:
        ip = ipaddress.ip_address(v)
        return f"[{ip.compressed}]" if ip.version == 6 else ip.compressed
    except ValueError:
        pass
    if ":" in v:
        raise ValueError(f"host {value!r} must not carry a port; routes match the name on every edge port")
    labels = v.split(".")
    if labels[0] == "*":
        labels = labels[1:]
        if len(labels) < 2:
            raise ValueError(f"wildcard {value!r} is too broad; use at least *.example.com")
    if len(v) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(
            f"host {value!r} is not a valid DNS name (letters, digits and '-' in dot-separated labels; "
            "a wildcard only as the whole first label, like *.example.com)"
        )
    return v


def parse_target(value: str) -> tuple[str, int] | str:
    """`host:port`, `[v6]:port` → (host, port); `service:NAME[:PORT]` → `NAME[:PORT]` (the endpoint board's
    key: a service's first port, or the named one). Raises ValueError otherwise."""
    v = value.strip()
    if v.startswith("service:"):
        name = v[len("service:") :]
        if not _SERVICE.match(name):
            raise ValueError(
                f"upstream {value!r}: use service:NAME or service:NAME:PORT with lowercase letters, "
                "digits, '-', '_', '.'"
            )
        return name
    for scheme in ("http://", "https://"):
        if v.startswith(scheme):
            if scheme == "https://":
                raise ValueError(f"upstream {value!r}: TLS to upstreams is not supported; use host:port")
            v = v[len(scheme) :].rstrip("/")
    host, sep, port_s = v.rpartition(":")
    if not sep or not port_s.isdigit() or not 1 <= int(port_s) <= 65535:
        raise ValueError(f"upstream {value!r} is not host:port (e.g. 127.0.0.1:3000) or service:NAME")
    host = host.strip("[]")
    if not host:
        raise ValueError(f"upstream {value!r} has no host")
    return host, int(port_s)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RateLimit(_Model):
    """Token bucket per client IP: `rate_per_s` tokens refill each second, up to `burst`."""

    rate_per_s: float = Field(gt=0, le=1_000_000)
    burst: int = Field(default=0, ge=0, le=1_000_000, description="0 means max(1, rate_per_s)")


class BasicAuthUser(_Model):
    username: str = Field(min_length=1, max_length=128, pattern=r"^[^:]+$")
    bcrypt_hash: str = Field(pattern=r"^\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}$")


class HeaderRules(_Model):
    """Headers to set (replacing any of that name) and to remove, on requests or responses."""

    set: dict[str, str] = Field(default_factory=dict)
    remove: list[str] = Field(default_factory=list)

    @field_validator("set")
    @classmethod
    def _set_ok(cls, v: dict[str, str]) -> dict[str, str]:
        for name, value in v.items():
            _check_header(name, value)
        return v

    @field_validator("remove")
    @classmethod
    def _remove_ok(cls, v: list[str]) -> list[str]:
        for name in v:
            _check_header(name, "")
        return v


def _check_header(name: str, value: str) -> None:
    if not _HEADER_NAME.match(name):
        raise ValueError(f"header name {name!r} has characters not allowed in a header name")
    if name.lower() in HOP_BY_HOP or name.lower() in ("host", "content-length"):
        raise ValueError(f"header {name!r} is managed by the gate and cannot be set or removed by a rule")
    if any(c in value for c in "\r\n\x00"):
        raise ValueError(f"header {name!r}: the value must not contain CR, LF or NUL")


class Policies(_Model):
    """Per-route behaviour in front of the upstream."""

    redirect_https: bool = Field(
        default=True,
        description="on a route with TLS (auto or manual), plain-HTTP "
        "requests get 301 (GET, HEAD) or 308 to https:// on the gate's HTTPS port (never "
        "/.well-known/acme-challenge/); routes with tls off never redirect",
    )
    hsts_max_age_s: int = Field(
        default=0,
        ge=0,
        description="Strict-Transport-Security max-age, sent over HTTPS; "
        "0 = none (opt-in: browsers then refuse plain HTTP for that long)",
    )
    security_headers: bool = Field(default=False, description="add X-Content-Type-Options, X-Frame-Options, ...")
    rate_limit: RateLimit | None = None
    allow: list[str] = Field(default_factory=list, description="CIDRs allowed (empty: everyone)")
    deny: list[str] = Field(default_factory=list, description="CIDRs denied (checked first)")
    basic_auth: list[BasicAuthUser] = Field(default_factory=list)
    basic_auth_realm: str = Field(default="restricted", max_length=100, pattern=r'^[^"\\\r\n]*$')
    request_headers: HeaderRules = Field(default_factory=HeaderRules)
    response_headers: HeaderRules = Field(default_factory=HeaderRules)

    @field_validator("allow", "deny")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        out = []
        for item in v:
            try:
                out.append(str(ipaddress.ip_network(item.strip(), strict=False)))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR like 10.0.0.0/8 or 2001:db8::/32") from None
        return out


class RouteSpec(_Model):
    """One route as people write it. `path` is a prefix matched on whole segments."""

    host: str
    path: str = "/"
    upstreams: list[str] = Field(default_factory=list, max_length=64)
    strip_prefix: bool = False
    methods: list[str] | None = None
    tls: Literal["auto", "off", "manual"] = "off"
    balance: Literal["round_robin", "least_conn"] = "round_robin"
    max_body_bytes: int | None = Field(default=None, ge=0, description="None: the gate default")
    request_buffer_bytes: int | None = Field(
        default=None,
        ge=0,
        le=64 * 1024 * 1024,
        description="bodies up to this size are received whole before the "
        "upstream is contacted; 0 = stream at once; None: the gate "
        "default",
    )
    upstream_timeout_s: float | None = Field(default=None, gt=0, le=3600)
    static_dir: str | None = Field(default=None, description="serve files from this directory instead")
    static_spa: bool = Field(default=False, description="unknown extension-less paths get /index.html (SPA)")
    static_dotfiles: Literal["deny", "allow"] = Field(
        default="deny",
        description="deny: files and directories whose name starts with '.' answer 404 "
        "(.well-known/ excepted); allow: served like any other file",
    )
    policies: Policies = Field(default_factory=Policies)

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        return normalize_host_pattern(v)

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"path {v!r} must start with '/'")
        if any(c in v for c in "?#% \t\r\n\x00") or any(seg in (".", "..") for seg in v.split("/")):
            raise ValueError(f"path {v!r} must be a plain prefix: no query, fragment, escapes, spaces or dot-segments")
        return v.rstrip("/") or "/"

    @field_validator("upstreams")
    @classmethod
    def _upstreams(cls, v: list[str]) -> list[str]:
        for i, item in enumerate(v):
            try:
                parse_target(item)
            except ValueError as e:
                raise ValueError(f"upstreams[{i}]: {e}") from None
        if len(set(v)) != len(v):
            raise ValueError("upstreams lists the same target twice")
        return [x.strip() for x in v]

    @field_validator("static_dir")
    @classmethod
    def _static_dir(cls, v: str | None) -> str | None:
        """Refuse roots that would publish the system (the data dir and symlinks: `GateService`)."""
        if v is None:
            return None
        if not v.startswith("/"):
            raise ValueError(f"static_dir {v!r} must be an absolute path")
        if "\x00" in v:
            raise ValueError("static_dir must not contain NUL")
        problem = static_root_problem(v)
        if problem:
            raise ValueError(f"static_dir {v!r} cannot be served: {problem}")
        return v

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return None
        up = [m.upper() for m in v]
        bad = [m for m in up if m not in METHODS]
        if bad or not up:
            raise ValueError(f"methods must be some of {sorted(METHODS)}; got {v!r}")
        return sorted(set(up))

    @model_validator(mode="after")
    def _target(self) -> RouteSpec:
        if not self.upstreams and not self.static_dir:
            raise ValueError("a route needs upstreams (host:port or service:NAME) or a static_dir")
        if self.upstreams and self.static_dir:
            raise ValueError("a route has either upstreams or a static_dir, not both")
        if self.static_dotfiles != "deny" and not self.static_dir:
            raise ValueError("static_dotfiles applies only to routes with a static_dir")
        if self.tls == "auto" and (self.host.startswith("*") or self.host == "*" or self.host[0] in "[0123456789"):
            raise ValueError("tls: auto needs an exact DNS name (ACME HTTP-01 cannot issue wildcards or IPs)")
        return self


@dataclass(frozen=True, slots=True)
class Route:
    """A stored route: its id and validated spec."""

    id: int
    spec: RouteSpec

    @property
    def name(self) -> str:
        return f"{self.spec.host}{'' if self.spec.path == '/' else self.spec.path}"

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, **self.spec.model_dump()}


def _optional(model: type[BaseModel], name: str, doc: str, types: dict[str, Any] | None = None) -> type[BaseModel]:
    """`model` with every field optional (None: not given), for partial updates; the merged result is
    validated by `model` itself, so the field rules live in one place."""
    fields: dict[str, Any] = {
        k: (Optional[(types or {}).get(k, f.annotation)], Field(default=None, description=f.description))  # noqa: UP045
        for k, f in model.model_fields.items()
    }
    return create_model(name, __config__=ConfigDict(extra="forbid"), __doc__=doc, **fields)


PoliciesPatch = _optional(Policies, "PoliciesPatch", "Policy fields to change; the others stay.")
RoutePatch = _optional(
    RouteSpec,
    "RoutePatch",
    "A partial route (JSON merge patch): the fields given replace the current ones — inside `policies` field by "
    "field, other values whole — and null puts a field back to its default.",
    {"policies": PoliciesPatch},
)
