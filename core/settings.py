"""Process-wide settings: defaults, then the YAML config file, then `INFRACORE_*` env, then flags.

Each component validates its own section (`gate:`, `orch:`, ...) with its own model; this module only
knows the shape of the platform as a whole.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from core import yamlsafe
from core.errors import StartupError

DEFAULT_CONFIG_FILE = Path("/etc/infracore/config.yaml")
DEFAULT_CONSOLE = "127.0.0.1:7070"


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def default_data_dir() -> Path:
    return Path("/var/lib/infracore") if _is_root() else Path("var").absolute()


def parse_host_port(value: str, *, what: str) -> tuple[str, int]:
    """`HOST:PORT`, `[::1]:PORT` or `:PORT` (all interfaces) → (host, port)."""
    host, sep, port_s = value.rpartition(":")
    if not sep or not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
        raise ValueError(f"{what} {value!r} is not HOST:PORT (e.g. 127.0.0.1:7070)")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port_s)


class Settings(BaseSettings):
    """The platform's settings. Units are in the names."""

    model_config = SettingsConfigDict(env_prefix="INFRACORE_", extra="forbid", validate_default=True)
    # The config file's values; `load_settings` sets them on a throwaway subclass.
    file_values: ClassVar[dict[str, Any]] = {}

    data_dir: Path = Field(default_factory=default_data_dir)  # /var/lib/infracore as root, else ./var
    config_file: Path | None = None  # set by --config / INFRACORE_CONFIG_FILE, not in the file itself
    edge_host: str = "0.0.0.0"  # the address the gate's HTTP and HTTPS listeners bind
    # 80 as root, else 8080
    http_port: int = Field(default_factory=lambda: 80 if _is_root() else 8080, ge=0, le=65535)
    # 443 as root, else 8443
    https_port: int = Field(default_factory=lambda: 443 if _is_root() else 8443, ge=0, le=65535)
    console: str = DEFAULT_CONSOLE  # HOST:PORT of the console API and web console
    # Proxies (CIDRs) besides the platform's own gate whose X-Forwarded-For the console believes.
    console_trusted_proxies: list[str] = Field(default_factory=list)
    # Host names the console answers to besides localhost, IP literals and its gate routes' hosts.
    console_allowed_hosts: list[str] = Field(default_factory=list)
    log_level: Literal["debug", "info", "warning", "error"] = "info"  # the platform's own log
    log_format: Literal["auto", "console", "json"] = "auto"  # auto: console on a TTY, JSON lines otherwise
    drain_timeout_s: float = Field(default=10.0, gt=0)  # how long a stop waits for in-flight work
    sse_heartbeat_s: float = Field(default=15.0, gt=0)  # comment lines on idle event streams
    session_ttl_s: int = Field(default=12 * 3600, gt=0)  # a login's lifetime
    client_token_ttl_s: int = Field(default=15 * 60, gt=0, le=24 * 3600)  # CI client tokens (core/clients.py)
    password_hash_rounds: int = Field(default=12, ge=4, le=16)  # bcrypt cost
    api_max_body_bytes: int = Field(default=1024 * 1024, gt=0)  # console API request bodies
    event_retention_count: int = Field(default=100_000, gt=0)  # events kept for replay (Last-Event-ID)
    acme_directory: str = "https://acme-v02.api.letsencrypt.org/directory"  # the CA (default Let's Encrypt)
    acme_ca_bundle: Path | None = None  # CA bundle to trust for the ACME server (a private CA)
    acme_email: str | None = None  # contact address for the ACME account
    # Component sections, each validated by its own component's model.
    gate: dict[str, Any] = Field(default_factory=dict)
    certd: dict[str, Any] = Field(default_factory=dict)
    orch: dict[str, Any] = Field(default_factory=dict)
    probe: dict[str, Any] = Field(default_factory=dict)
    logbus: dict[str, Any] = Field(default_factory=dict)
    snap: dict[str, Any] = Field(default_factory=dict)
    security: dict[str, Any] = Field(default_factory=dict)

    @field_validator("console")
    @classmethod
    def _console_is_host_port(cls, v: str) -> str:
        parse_host_port(v, what="console address")
        return v

    @field_validator("console_trusted_proxies")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        for i, cidr in enumerate(v):
            try:
                ipaddress.ip_network(cidr.strip(), strict=False)
            except ValueError as e:
                raise ValueError(f"item {i}: {cidr!r} is not an IP address or CIDR ({e})") from None
        return v

    @property
    def console_addr(self) -> tuple[str, int]:
        return parse_host_port(self.console, what="console address")

    @property
    def state_db(self) -> Path:
        return self.data_dir / "state.db"

    @property
    def console_socket(self) -> Path:
        return self.data_dir / "console.sock"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, InitSettingsSource(settings_cls, cls.file_values))


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML config file into a mapping, with a precise message when it cannot be used."""
    try:
        text = path.read_text()
    except OSError as e:
        raise StartupError(f"cannot read config file {path}: {e.strerror}", hint="check the path") from e
    try:
        data = yamlsafe.load(text)
    except yamlsafe.YamlRefused as e:
        where = f"{path}:{e.line}:{e.column}" if e.line and e.column else f"{path}:{e.line}" if e.line else str(path)
        hint = "fix the YAML syntax" if e.limit is None else "a config file is a page of settings; write it out plainly"
        raise StartupError(f"{where}: {e.problem}", hint=hint) from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise StartupError(f"{path}: the config file must be a mapping of settings, not {type(data).__name__}")
    return data


def load_settings(config_file: Path | None = None, **flags: Any) -> Settings:
    """Build the settings: flags (non-None values) > `INFRACORE_*` env > config file > defaults.

    The config file is `config_file`, else `$INFRACORE_CONFIG_FILE`, else `/etc/infracore/config.yaml`
    when it exists; no config file at all is fine.
    """
    env_path = os.environ.get("INFRACORE_CONFIG_FILE")
    path = config_file or (Path(env_path) if env_path else None)
    if path is None and DEFAULT_CONFIG_FILE.exists():
        path = DEFAULT_CONFIG_FILE
    file_data = read_config_file(path) if path else {}
    overrides = {k: v for k, v in flags.items() if v is not None}
    if path:
        overrides["config_file"] = path

    class FileSettings(Settings):
        file_values = file_data

    try:
        settings = FileSettings(**overrides)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in e.errors())
        source = f"{path}: " if path else ""
        raise StartupError(f"{source}invalid settings: {problems}", hint="see README 'Configuration'") from e
    return settings


M = TypeVar("M", bound=BaseModel)


def load_section(
    model: type[M], section: dict[str, Any] | None, *, key: str, hint: str, what: str = "invalid settings"
) -> M:
    """A component's settings section (`key:` in the config) validated by `model`, or a StartupError
    naming each bad setting by its path (`gate.bogus: Extra inputs are not permitted`; a problem with
    the section as a whole is `key.(section)`). The one loader every component's section goes through."""
    try:
        return model.model_validate(section or {})
    except ValidationError as e:
        problems = "; ".join(
            f"{key}.{'.'.join(str(p) for p in err['loc']) or '(section)'}: {err['msg']}" for err in e.errors()
        )
        raise StartupError(f"{what}: {problems}", hint=hint) from e
