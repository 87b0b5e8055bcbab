"""The `security:` section of the config: how often the server scans, and the thresholds of the checks."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.errors import StartupError
from core.units import parse_duration


class SecurityConfig(BaseModel):
    """Durations accept `24h`, `7d` or seconds."""

    model_config = ConfigDict(extra="forbid")

    interval_s: float = Field(default=86400.0, ge=0, description="periodic scan; 0 turns it off")
    # Not at once: a server started for a moment (tests, a restart loop) raises no scan events.
    first_scan_after_s: float = Field(default=600.0, ge=0, description="the first periodic scan after start")
    cert_warn_s: float = Field(default=14 * 86400.0, gt=0, description="certificates expiring sooner are reported")
    token_max_s: float = Field(default=365 * 86400.0, gt=0, description="API tokens valid longer are reported")
    sockets: bool = Field(default=True, description="read the host's listening sockets (psutil)")
    allowed_ports: list[int] = Field(
        default_factory=lambda: [22, 80, 443],
        max_length=1000,
        description="ports expected to face outside (the gate's are added)",
    )

    @field_validator("interval_s", "first_scan_after_s", "cert_warn_s", "token_max_s", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return parse_duration(v) if isinstance(v, str) else v

    @field_validator("allowed_ports")
    @classmethod
    def _ports(cls, v: list[int]) -> list[int]:
        bad = [p for p in v if not 0 < p < 65536]
        if bad:
            raise ValueError(f"ports must be 1-65535, not {bad}")
        return v


def load_security_config(section: dict[str, Any] | None) -> SecurityConfig:
    """The `security:` section validated, or a StartupError naming each bad key."""
    try:
        return SecurityConfig.model_validate(section or {})
    except ValidationError as e:
        problems = "; ".join(f"security.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
        raise StartupError(f"invalid settings: {problems}", hint="e.g. security: {interval_s: 24h}") from e
