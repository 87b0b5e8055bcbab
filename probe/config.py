"""Probe's settings (the `probe:` section of the config) and the alert rule model at the API edge."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.settings import load_section
from core.units import parse_duration

_METRIC = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


def _duration(v: Any) -> Any:
    if isinstance(v, str):
        return parse_duration(v)
    return v


class RetentionConfig(BaseModel):
    """How long each resolution is kept (durations like `24h`, `7d`, or seconds)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    raw: float = Field(default=86400.0, ge=60)
    five_s: float = Field(default=7 * 86400.0, ge=300, alias="5s")
    one_m: float = Field(default=30 * 86400.0, ge=3600, alias="1m")

    _parse = field_validator("raw", "five_s", "one_m", mode="before")(_duration)

    @model_validator(mode="after")
    def _coarser_keeps_longer(self) -> RetentionConfig:
        if not self.raw <= self.five_s <= self.one_m:
            raise ValueError("each coarser resolution must be kept at least as long as the finer one (raw ≤ 5s ≤ 1m)")
        return self

    def as_map(self) -> dict[str, float]:
        return {"raw": self.raw, "5s": self.five_s, "1m": self.one_m}


class ProbeConfig(BaseModel):
    """The `probe:` section. Units are in the names; durations also accept `5s`, `10m`, `24h`."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    interval_s: float = Field(default=1.0, ge=0.1, le=5.0)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    connections_every_s: float = Field(default=10.0, ge=1.0)
    # A firing alert whose series sends nothing resolves ("no data") after max(2 * interval_s, the rule's
    # for_s, alert_stale_s): unset, only the first two count.
    alert_stale_s: float | None = Field(default=None, gt=0)
    webhook_url: str | None = None  # default target for rules without their own
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=60)
    webhook_attempts: int = Field(default=5, ge=1, le=20)
    webhook_backoff_s: float = Field(default=1.0, gt=0, le=300)

    _parse = field_validator(
        "interval_s", "connections_every_s", "alert_stale_s", "webhook_timeout_s", "webhook_backoff_s", mode="before"
    )(_duration)

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return _check_url(v)


def load_probe_config(section: dict[str, Any]) -> ProbeConfig:
    """Validate the `probe:` section; a mistake is a StartupError naming the setting's path."""
    return load_section(
        ProbeConfig, section, key="probe", what="invalid probe settings", hint="fix the probe: section of the config"
    )


def _check_url(v: str | None) -> str | None:
    if v is None:
        return v
    if not re.match(r"^https?://[^\s/]+(/\S*)?$", v):
        raise ValueError(f"{v!r} is not an http:// or https:// URL")
    return v


class AlertRuleBody(BaseModel):
    """An alert rule as the API takes it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1, max_length=100)
    metric: str = Field(min_length=1, max_length=200)
    labels: dict[str, str] = Field(default_factory=dict)
    op: Literal[">", ">=", "<", "<="]
    threshold: float
    for_s: float = Field(default=0.0, ge=0, le=7 * 86400, alias="for")
    hysteresis: float = Field(default=0.0, ge=0)
    webhook: str | None = None
    enabled: bool = True

    _parse = field_validator("for_s", mode="before")(_duration)

    @field_validator("metric")
    @classmethod
    def _metric(cls, v: str) -> str:
        if not _METRIC.match(v):
            raise ValueError(f"{v!r} is not a metric name (letters, digits, _ and :), e.g. host_cpu_percent")
        return v

    @field_validator("webhook")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return _check_url(v)
