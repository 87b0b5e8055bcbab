"""The gate's settings (the `gate:` section of the config file), validated with precise messages."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.settings import load_section


class GateConfig(BaseModel):
    """Limits and timeouts of the edge. Units are in the names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_request_line_bytes: int = Field(default=8 * 1024, ge=256, le=1024 * 1024)
    max_header_bytes: int = Field(default=32 * 1024, ge=1024, le=1024 * 1024)
    max_header_count: int = Field(default=100, ge=8, le=10_000)
    max_body_bytes: int = Field(default=100 * 1024 * 1024, ge=0, description="per-route default; 0 = no limit")
    request_buffer_bytes: int = Field(
        default=64 * 1024,
        ge=0,
        le=64 * 1024 * 1024,
        description="per-route default: a request body up to this size is received "
        "whole before the upstream is contacted; 0 = stream at once",
    )
    header_timeout_s: float = Field(default=10.0, gt=0, le=600)
    body_timeout_s: float = Field(default=60.0, gt=0, le=3600, description="longest pause inside a request body")
    keepalive_timeout_s: float = Field(default=75.0, gt=0, le=3600)
    send_timeout_s: float = Field(default=60.0, gt=0, le=3600, description="longest stall writing to a client")
    connect_timeout_s: float = Field(default=5.0, gt=0, le=120)
    upstream_timeout_s: float = Field(default=60.0, gt=0, le=3600, description="longest wait for upstream bytes")
    upstream_idle_s: float = Field(default=30.0, gt=0, le=3600, description="pooled idle connection lifetime")
    pool_max_idle_per_target: int = Field(default=256, ge=0, le=10_000)
    pool_max_per_target: int = Field(default=1024, ge=1, le=100_000)
    eject_after_failures: int = Field(default=3, ge=1, le=100)
    eject_backoff_s: float = Field(default=1.0, gt=0, le=600)
    eject_max_backoff_s: float = Field(default=30.0, gt=0, le=3600)
    trusted_proxies: list[str] = Field(default_factory=list, description="CIDRs whose X-Forwarded-* are kept")
    via: bool = False
    server_header: str = ""
    high_water_bytes: int = Field(default=256 * 1024, ge=4096)
    low_water_bytes: int = Field(default=64 * 1024, ge=0)
    drain_timeout_s: float | None = Field(default=None, gt=0)
    basic_auth_failures: int = Field(
        default=10, ge=1, le=10_000, description="wrong Basic-auth passwords a client may send per window before 429"
    )
    basic_auth_failure_window_s: float = Field(default=60.0, gt=0, le=86_400)

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        for item in v:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR like 10.0.0.0/8") from None
        return v


def load_gate_config(section: dict[str, object]) -> GateConfig:
    """Validate the `gate:` settings section; a mistake is a StartupError naming the key."""
    return load_section(
        GateConfig, section, key="gate", what="invalid gate settings", hint="fix the gate: section of the config"
    )
