"""Certd's settings: the `certd:` section of the config file, validated with precise errors."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.settings import load_section
from core.units import parse_duration

LETSENCRYPT_PRODUCTION = "https://acme-v02.api.letsencrypt.org/directory"
LETSENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"


class CertdConfig(BaseModel):
    """Durations accept `30d`, `12h`, `90s` or a number of seconds; units are in the names."""

    # Use Let's Encrypt's staging directory instead of production (ignored when a directory URL is set).
    staging: bool = False
    # Renew when this share of a certificate's lifetime is left (1/3, as Let's Encrypt recommends:
    # 30 days of a 90-day cert, 2 days of a 6-day one); automatic orders never happen while more is left.
    renew_share: float = Field(default=1 / 3, gt=0, le=1)
    # Optional cap: never renew more than this before expiry (unset: the share alone decides).
    renew_before_s: float | None = Field(default=None, gt=0, alias="renew_before")
    # Renewals are spread over up to this much after the due time (at most a tenth of the renewal window).
    renew_jitter_s: float = Field(default=2 * 86400, ge=0, alias="renew_jitter")
    # Follow the CA's ACME Renewal Information (RFC 9773) when its directory offers `renewalInfo`.
    ari: bool = True
    # Failed orders are retried after backoff_base, doubling on each failure, at most backoff_cap.
    backoff_base_s: float = Field(default=60.0, gt=0, alias="backoff_base")
    backoff_cap_s: float = Field(default=6 * 3600, gt=0, alias="backoff_cap")
    # `cert.expiring` when a cert has less than this left; repeated at most every expiring_repeat.
    expiring_warn_s: float = Field(default=14 * 86400, gt=0, alias="expiring_warn")
    expiring_repeat_s: float = Field(default=86400, gt=0, alias="expiring_repeat")
    # Never place two automatic orders for the same name closer together than this.
    min_order_interval_s: float = Field(default=3600, gt=0, alias="min_order_interval")
    # One order (authorizations, finalization, download) must finish within this.
    order_timeout_s: float = Field(default=120, gt=0, alias="order_timeout")
    # Timeout of each HTTP request to the ACME server.
    request_timeout_s: float = Field(default=30, gt=0, alias="request_timeout")
    # Largest Retry-After honoured from a rate-limited answer (a larger one is clamped to this).
    max_retry_after_s: float = Field(default=7 * 86400, gt=0, alias="max_retry_after")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator(
        "renew_before_s",
        "renew_jitter_s",
        "backoff_base_s",
        "backoff_cap_s",
        "expiring_warn_s",
        "expiring_repeat_s",
        "min_order_interval_s",
        "order_timeout_s",
        "request_timeout_s",
        "max_retry_after_s",
        mode="before",
    )
    @classmethod
    def _duration(cls, v: Any) -> Any:
        if isinstance(v, str):
            return parse_duration(v)
        return v

    @model_validator(mode="after")
    def _coherent(self) -> CertdConfig:
        if self.renew_before_s is not None and self.renew_jitter_s >= self.renew_before_s:
            raise ValueError("renew_jitter must be shorter than renew_before")
        if self.backoff_cap_s < self.backoff_base_s:
            raise ValueError("backoff_cap must be at least backoff_base")
        return self

    def directory_url(self, configured: str) -> str:
        """The ACME directory to use: an explicitly configured one wins; else production or staging."""
        if configured and configured != LETSENCRYPT_PRODUCTION:
            return configured
        return LETSENCRYPT_STAGING if self.staging else LETSENCRYPT_PRODUCTION


def load_config(section: dict[str, Any]) -> CertdConfig:
    """Validate the `certd:` section; a mistake is a StartupError naming the key and the problem."""
    return load_section(CertdConfig, section, key="certd", hint="see README 'Certificates'")
