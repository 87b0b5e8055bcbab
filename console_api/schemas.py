"""Response models of the console API, for its OpenAPI document (the UI's typed client is generated
from it). `RESPONSES` maps each operation to what it returns; a route added without an entry here (or
a `returns=` on its `api.route`) fails tests/console_api/test_openapi.py."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gate import RouteSpec
from probe import AlertRuleBody


class Out(BaseModel):
    """A response object. Unknown keys are refused so that a test validating real responses against
    these models catches a handler that grew a field the document does not describe."""

    model_config = ConfigDict(extra="forbid")


JSON = dict[str, Any]
Timestamp = float  # seconds since the epoch (UTC)

# --- kernel ---------------------------------------------------------------------------------------


class Health(Out):
    status: Literal["ok"]
    version: str


class Component(Out):
    name: str
    state: str


class You(Out):
    username: str
    role: Literal["admin", "viewer"]


class Status(Out):
    version: str
    uptime_s: float
    you: You
    data_dir: str
    components: list[Component]


class LoginResult(Out):
    token: str = Field(description="bearer token for API clients (the console uses its session cookie)")
    expires_at: Timestamp
    username: str
    role: Literal["admin", "viewer"]


class Me(Out):
    username: str
    role: Literal["admin", "viewer"]
    via: Literal["session", "api", "socket"]


class Session(Out):
    username: str
    role: Literal["admin", "viewer"]
    expires_at: Timestamp | None
    csrf_token: str = Field(description="send it back as X-CSRF-Token on every mutating call")


class Token(Out):
    id: int
    name: str
    kind: str
    role: Literal["admin", "viewer"]
    owner: str
    created_at: Timestamp
    expires_at: Timestamp
    revoked_at: Timestamp | None
    last_used_at: Timestamp | None
    state: Literal["active", "revoked", "expired"]


class TokenCreated(Token):
    token: str = Field(description="the secret, shown once")


class User(Out):
    id: int
    username: str
    role: Literal["admin", "viewer"]
    created_at: Timestamp
    password_changed_at: Timestamp | None
    disabled: bool
    totp: bool
    recovery_codes_left: int


class PasswordChanged(Out):
    username: str
    password_changed: bool


class TotpBegin(Out):
    secret: str
    otpauth_uri: str


class TotpState(Out):
    username: str
    totp: bool


class TotpEnabled(TotpState):
    recovery_codes: list[str] = Field(description="single-use codes for logging in without the app; shown once")


class RecoveryCodes(Out):
    username: str
    recovery_codes: list[str] = Field(description="the new single-use codes (shown once); the old ones are void")


class AuditEntry(Out):
    id: int
    at: Timestamp
    actor: str
    role: str | None
    action: str
    target: str | None
    outcome: Literal["ok", "failed", "denied"]
    status: int
    client_ip: str | None
    before: Any = None
    after: Any = None


class Event(Out):
    """One event of `/api/events` (the `data:` line; the SSE `id:` and `event:` carry id and type)."""

    id: int
    type: str
    at: Timestamp
    data: JSON


# --- orch -----------------------------------------------------------------------------------------


class LastExit(Out):
    code: int | None
    signal: int | None
    oom_killed: bool
    detail: str


class HealthCheck(Out):
    ok: bool
    detail: str
    duration_ms: float
    at: Timestamp


class InstanceStats(Out):
    cpu_seconds: float
    memory_bytes: int
    pids: int


class Instance(Out):
    id: str
    index: int
    phase: str
    state: str
    healthy: bool
    health_failures: int
    version: int
    pid: int | None
    ports: dict[str, int]
    restarts: int
    reason: str
    started_at: Timestamp | None
    next_start_in_s: float | None
    last_exit: LastExit | None
    adopted: bool
    cgroup: str | None
    runtime: Literal["process", "docker", "systemd"]
    container: str | None = Field(default=None, description="docker: the container's name")
    container_id: str | None = Field(default=None, description="docker: the container's id")
    image: str | None = Field(default=None, description="docker: the image it runs")
    container_ports: dict[str, int] | None = Field(
        default=None, description="docker: each named port's number inside the container (`ports` has the host's)"
    )
    unit: str | None = Field(default=None, description="systemd: the unit's name")
    stats: InstanceStats | None
    health: list[HealthCheck]


class ServiceSummary(Out):
    name: str
    version: int
    desired: Literal["running", "stopped"]
    status: str = Field(description="pending, starting, running, degraded, crashloop, failed, stopped ...")
    reason: str
    healthy: int = Field(description="instances passing their health check")
    replicas: int
    restarts: int
    last_exit: LastExit | None
    runtime: str
    created_at: Timestamp
    updated_at: Timestamp
    endpoints: list[str]


class ServiceDetail(ServiceSummary):
    spec: JSON
    instances: list[Instance]


class ServiceApplied(ServiceDetail):
    changed: bool
    deployment_id: int | None = Field(
        default=None,
        description="set when the change runs as a deployment (a running service): poll GET /api/deployments/{id}",
    )


class ServiceStatus(Out):
    name: str
    version: int
    desired: Literal["running", "stopped"]
    status: str
    reason: str
    healthy: int
    replicas: int
    restarts: int
    last_exit: LastExit | None
    endpoints: list[str]


class ServiceVersion(Out):
    version: int
    filename: str
    applied_at: Timestamp
    applied_by: str | None
    source: str


class ServiceRemoved(Out):
    name: str
    removed: bool


class OrchLimits(Out):
    kind: str | None = None
    enforces_memory: bool = False
    enforces_cpu: bool = False
    warning: str | None = None


# --- gate -----------------------------------------------------------------------------------------


class ServedCertificate(Out):
    source: str
    issuer: str
    not_after: Timestamp | None
    serial: str
    names: list[str]
    cert_path: str


class Route(RouteSpec):
    id: int
    name: str


class RouteSaved(Route):
    warnings: list[str] = Field(
        description="advice on the upstreams just saved (unknown service, a host name "
        "that does not resolve); the route is stored and live either way"
    )


class RouteWithCert(Route):
    certificate: ServedCertificate | None = Field(description="what the HTTPS listener serves (None: no TLS)")


class Latency(Out):
    count: int
    p50: float | None
    p95: float | None
    p99: float | None


class StatusClasses(Out):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    c1xx: int = Field(alias="1xx")
    c2xx: int = Field(alias="2xx")
    c3xx: int = Field(alias="3xx")
    c4xx: int = Field(alias="4xx")
    c5xx: int = Field(alias="5xx")
    aborted: int


class Traffic(Out):
    requests: int
    qps: float
    status: StatusClasses
    bytes_in: int
    bytes_out: int
    active: int
    latency_ms: Latency


class Connections(Out):
    open: int
    total: int


class GateMetrics(Out):
    window_s: float
    connections: Connections
    protocol_errors: int
    timeouts: int
    total: Traffic
    routes: dict[str, Traffic]
    targets: dict[str, Traffic]
    table_version: int
    pool: JSON
    targets_health: JSON


# --- certd ----------------------------------------------------------------------------------------


class CertificateAri(Out):
    id: str = Field(description="the certificate's ACME Renewal Information id (RFC 9773)")
    window_start: Timestamp | None
    window_end: Timestamp | None
    renew_at: Timestamp | None = Field(description="the time certd picked inside the CA's suggested window")
    next_check_at: Timestamp | None
    error: str | None


class Certificate(Out):
    name: str
    names: list[str]
    status: str = Field(description="valid, expiring, expired, pending, failed ...")
    source: str
    origin: str | None
    auto_renew: bool
    serial: str | None
    issuer: str | None
    not_before: Timestamp | None
    not_after: Timestamp | None
    days_left: float | None
    fingerprint_sha256: str | None
    failures: int
    last_error: str | None
    last_attempt_at: Timestamp | None
    next_attempt_at: Timestamp | None
    last_issued_at: Timestamp | None
    renew_at: Timestamp | None = Field(description="when certd renews it on its own (none: never automatically)")
    ari: CertificateAri | None = Field(description="the CA's renewal information, when it offers ARI")
    cert_path: str
    key_path: str
    wanted: bool


# --- logbus ---------------------------------------------------------------------------------------


class LogLine(Out):
    ts: str = Field(description="ISO 8601, UTC")
    service: str
    instance: str
    stream: str
    text: str


class LogPage(Out):
    lines: list[LogLine]
    next_cursor: str | None
    services: list[str]
    scanned_bytes: int | None = None
    partial: bool | None = None


class LogService(Out):
    service: str
    files: int
    bytes: int
    lines: int
    first_ts: Timestamp | None
    last_ts: Timestamp | None


class LogIngested(Out):
    service: str
    bytes: int
    lines: int


# --- probe ----------------------------------------------------------------------------------------


Point = tuple[float, float | None, float | None, float | None]  # time, avg, min, max


class Series(Out):
    labels: dict[str, str]
    points: list[Point]


class MetricQuery(Out):
    name: str
    resolution: str
    step: float
    from_: float = Field(alias="from")
    to: float
    series: list[Series]


class TopEntry(Out):
    # Keyed by the `by` label too, e.g. {"service": "web", "value": 1.5, "series": 1}.
    model_config = ConfigDict(extra="allow")
    value: float
    series: int


class MetricTop(Out):
    name: str
    by: str
    from_: float = Field(alias="from")
    to: float
    top: list[TopEntry]


class ServiceMetrics(Out):
    service: str
    from_: float = Field(alias="from")
    to: float
    step: float
    resolution: str
    metrics: dict[str, list[Series]]


class ActiveAlert(Out):
    rule_id: int
    rule: str | None
    metric: str | None
    labels: dict[str, str]
    status: str
    since: Timestamp
    value: float | None


class AlertTransition(Out):
    event: str
    rule_id: int
    rule: str
    metric: str
    labels: dict[str, str]
    op: str
    threshold: float
    for_s: float
    value: float | None
    at: Timestamp
    reason: str  # threshold (triggered), cleared, no data, rule removed, rule changed


class Alerts(Out):
    active: list[ActiveAlert]
    recent: list[AlertTransition]


class AlertRule(Out):
    id: int
    name: str
    metric: str
    labels: dict[str, str]
    op: Literal[">", ">=", "<", "<="]
    threshold: float
    for_s: float
    hysteresis: float
    webhook: str | None
    enabled: bool
    created_at: Timestamp


class ProbeStatus(Out):
    # The collector figures grow with the collectors.
    model_config = ConfigDict(extra="allow")
    interval_s: float
    ticks: int
    errors: int
    points: int
    series: int


TEXT = {"type": "string"}

# (METHOD, path as registered) -> model, list[model], a JSON schema dict, or None (204, no body).
RESPONSES: dict[tuple[str, str], Any] = {
    ("GET", "/api/health"): Health,
    ("GET", "/api/openapi.json"): {"type": "object", "description": "this document"},
    ("GET", "/api/status"): Status,
    ("POST", "/api/auth/login"): LoginResult,
    ("POST", "/api/auth/logout"): None,
    ("GET", "/api/auth/me"): Me,
    ("POST", "/api/auth/session"): Session,
    ("GET", "/api/auth/session"): Session,
    ("DELETE", "/api/auth/session"): None,
    ("GET", "/api/tokens"): list[Token],
    ("POST", "/api/tokens"): TokenCreated,
    ("DELETE", "/api/tokens/{id:\\d+}"): Token,
    ("GET", "/api/users"): list[User],
    ("POST", "/api/users"): User,
    ("PUT", "/api/users/{name}/password"): PasswordChanged,
    ("POST", "/api/users/{name}/totp"): TotpBegin,
    ("POST", "/api/users/{name}/totp/confirm"): TotpEnabled,
    ("POST", "/api/users/{name}/totp/recovery-codes"): RecoveryCodes,
    ("DELETE", "/api/users/{name}/totp"): TotpState,
    ("DELETE", "/api/users/{name}"): User,
    ("GET", "/api/audit"): list[AuditEntry],
    ("GET", "/api/events"): Event,
    ("GET", "/api/services"): list[ServiceSummary],
    ("POST", "/api/services"): ServiceApplied,
    ("GET", "/api/services/{name}"): ServiceDetail,
    ("GET", "/api/services/{name}/status"): ServiceStatus,
    ("GET", "/api/services/{name}/versions"): list[ServiceVersion],
    ("POST", "/api/services/{name}/start"): ServiceDetail,
    ("POST", "/api/services/{name}/stop"): ServiceDetail,
    ("POST", "/api/services/{name}/restart"): ServiceDetail,
    ("DELETE", "/api/services/{name}"): ServiceRemoved,
    ("GET", "/api/orch/limits"): OrchLimits,
    ("GET", "/api/routes"): list[RouteWithCert],
    ("POST", "/api/routes"): RouteSaved,
    ("GET", "/api/routes/{ref:.+}"): RouteWithCert,
    ("PUT", "/api/routes/{id:\\d+}"): RouteSaved,
    ("PATCH", "/api/routes/{id:\\d+}"): RouteSaved,
    ("DELETE", "/api/routes/{ref:.+}"): Route,
    ("GET", "/api/gate/metrics"): GateMetrics,
    ("GET", "/api/certs"): list[Certificate],
    ("GET", "/api/certs/{name}"): Certificate,
    ("POST", "/api/certs"): Certificate,
    ("POST", "/api/certs/{name}/renew"): Certificate,
    ("POST", "/api/certs/import"): Certificate,
    ("DELETE", "/api/certs/{name}"): Certificate,
    ("GET", "/api/logs"): LogPage,
    ("GET", "/api/logs/services"): list[LogService],
    ("GET", "/api/logs/status"): JSON,
    ("GET", "/api/logs/download"): TEXT,
    ("GET", "/api/docs"): TEXT,
    ("POST", "/api/logs/{service}"): LogIngested,
    ("GET", "/api/logs/{service}/stream"): {
        "type": "string",
        "description": "SSE: `lines` events carry LogLine arrays, `skipped` events a notice",
    },
    ("GET", "/api/metrics/query"): MetricQuery,
    ("GET", "/api/metrics/names"): list[str],
    ("GET", "/api/metrics/top"): MetricTop,
    ("GET", "/api/services/{id}/metrics"): ServiceMetrics,
    ("GET", "/metrics"): TEXT,
    ("GET", "/api/probe/status"): ProbeStatus,
    ("GET", "/api/alerts"): Alerts,
    ("GET", "/api/alerts/rules"): list[AlertRule],
    ("GET", "/api/alerts/rules/{ref}"): AlertRule,
    ("POST", "/api/alerts/rules"): AlertRule,
    ("PUT", "/api/alerts/rules/{ref}"): AlertRule,
    ("DELETE", "/api/alerts/rules/{ref}"): AlertRule,
}

# Operations that read a body without a pydantic model (raw text, or YAML) -> (content type -> schema).
REQUESTS: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/services"): {
        "application/yaml": {"schema": {"type": "string", "description": "the service spec as YAML"}},
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"yaml": {"type": "string"}, "filename": {"type": "string"}},
                "required": ["yaml"],
            }
        },
    },
    ("POST", "/api/logs/{service}"): {"text/plain": {"schema": {"type": "string"}}},
    ("POST", "/api/artifacts"): {
        "application/octet-stream": {
            "schema": {
                "type": "string",
                "format": "binary",
                "description": "the artifact's bytes (tar.gz, tar or one file)",
            }
        }
    },
}

__all__ = ["REQUESTS", "RESPONSES", "AlertRuleBody"]
