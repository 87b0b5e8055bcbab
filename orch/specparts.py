"""The parts a service spec is made of (`orch.spec.ServiceSpec`): its field validators (ports, durations,
sizes, images, volumes, restart policies) and its nested models (ports, health check, resources, config
files, deploy settings), each with errors that say what is wrong and how to write it."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from core.units import parse_duration, parse_size
from orch.volumes import host_mount_problem, parse_volume

_RESTART_RE = re.compile(r"^(no|always|unless-stopped|on-failure(?::(\d+))?)$")


def _err(code: str, message: str) -> PydanticCustomError:
    """A validation error whose message is already final (without a context pydantic formats nothing)."""
    return PydanticCustomError(code, message)


def _port(value: Any) -> Any:
    if value == "auto":
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535:
        return value
    raise _err("port", f"{value!r} is not a port: auto, or a number from 1 to 65535")


def _duration(value: Any) -> float:
    if isinstance(value, bool):
        raise _err("duration", f"{value!r} is not a duration like 5s or 1m30s")
    try:
        return parse_duration(value)
    except (ValueError, TypeError):
        raise _err("duration", f"{value!r} is not a duration like 5s or 1m30s") from None


def _size(value: Any) -> int:
    if isinstance(value, bool) or isinstance(value, float):
        raise _err("size", f"{value!r} is not a size like 256Mi or 1G")
    try:
        return parse_size(value)
    except (ValueError, TypeError):
        raise _err("size", f"{value!r} is not a size like 256Mi or 1G") from None


def _scalar_str(value: Any) -> Any:
    """Environment values may be written as numbers or booleans in YAML; they are strings to the child."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


# A Docker image reference: [registry[:port]/]path[:tag][@sha256:digest] (the registry part may have dots,
# digits and a port; the path is lowercase).
_IMAGE_RE = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)


def _image(value: Any) -> Any:
    if isinstance(value, str) and not _IMAGE_RE.match(value):
        raise _err(
            "image",
            f"{value!r} is not an image reference like nginx:1.27, ghcr.io/owner/app:2 or "
            "name@sha256:<digest> (lowercase path)",
        )
    return value


def _volume(value: Any, info: ValidationInfo) -> Any:
    """One `volumes:` entry: its syntax, and the host paths refused without `allow_host_mounts: true`."""
    if not isinstance(value, str):
        return value
    try:
        vol = parse_volume(value)
    except ValueError as e:
        raise _err("volume", str(e)) from None
    if vol.kind == "bind" and not info.data.get("allow_host_mounts"):
        problem = host_mount_problem(vol.source)
        if problem:
            raise _err(
                "volume_host_mount",
                f"{value!r} is refused: {problem}; if you really mean it, add "
                "allow_host_mounts: true (recorded in the audit log)",
            )
    return value


Duration = Annotated[float, BeforeValidator(_duration)]
Size = Annotated[int, BeforeValidator(_size)]
EnvValue = Annotated[str, BeforeValidator(_scalar_str)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PortSpec(_Model):
    """A port the service listens on. `internal: auto` lets orch pick a free 127.0.0.1 port."""

    name: str = Field(default="http", pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    internal: Annotated[Literal["auto"] | int, BeforeValidator(_port)] = "auto"


class HealthcheckSpec(_Model):
    """Exactly one of `http` (a URL answered 2xx/3xx), `tcp` (`HOST:PORT` accepting), `exec` (exit 0)."""

    http: str | None = None
    tcp: str | None = None
    exec: list[str] | str | None = None
    interval: Duration = 10.0
    timeout: Duration = 5.0
    retries: int = Field(default=3, ge=1, le=100)
    start_period: Duration = 0.0

    @model_validator(mode="after")
    def _exactly_one(self) -> HealthcheckSpec:
        kinds = [k for k in ("http", "tcp", "exec") if getattr(self, k) is not None]
        if len(kinds) != 1:
            got = ", ".join(kinds) if kinds else "none"
            raise _err("healthcheck_kind", f"give exactly one of http, tcp or exec (got {got})")
        if self.timeout <= 0 or self.interval <= 0:
            raise _err("healthcheck_time", "interval and timeout must be more than 0")
        return self

    @property
    def kind(self) -> str:
        return "http" if self.http is not None else "tcp" if self.tcp is not None else "exec"


class ResourcesSpec(_Model):
    cpu: float | None = Field(default=None, gt=0, le=1024, description="CPU cores, e.g. 0.5")
    memory: Size | None = None

    @field_validator("memory")
    @classmethod
    def _min_memory(cls, v: int | None) -> int | None:
        if v is not None and v < 4 * 1024 * 1024:
            raise _err("memory_min", f"{v} bytes is too little; give at least 4Mi")
        return v


class ConfigFileSpec(_Model):
    """A file written before the instance starts: `content` (inline text) or `template` (a file inside the
    workdir, e.g. `${installPath}/app.ini.tmpl`), with `${version}`, `${installPath}`, `${env}`, `${PORT}`
    and the service's variables expanded; `owner` (`user[:group]`) needs the platform to run as root."""

    path: str
    content: str | None = None
    template: str | None = None
    mode: int = Field(default=0o644, ge=0, le=0o7777)
    owner: str | None = Field(default=None, pattern=r"^[a-z_][a-z0-9_-]{0,31}(:[a-z_][a-z0-9_-]{0,31})?$")

    @model_validator(mode="after")
    def _one_source(self) -> ConfigFileSpec:
        if (self.content is None) == (self.template is None):
            raise _err(
                "config_file_source",
                "give exactly one of content (the text) or template (a file inside the workdir whose text is expanded)",
            )
        if self.template is not None and (
            (self.template.startswith("/") and "${" not in self.template) or ".." in self.template.split("/")
        ):
            raise _err(
                "config_file_template",
                f"{self.template!r}: a template is a path relative to the workdir "
                "(or under ${installPath}), without '..'",
            )
        return self


class DeploySpec(_Model):
    """How a new release replaces the running one. `rolling` starts new instances beside the old ones and
    switches the gate once they are healthy; `recreate` stops the old ones first (a fixed port, a
    single-writer database). Batches of `max_surge` extra / `max_unavailable` missing instances."""

    strategy: Literal["rolling", "recreate"] = "rolling"
    max_surge: int = Field(default=1, ge=0, le=64)
    max_unavailable: int = Field(default=0, ge=0, le=64)
    health_deadline: Duration = 60.0
    drain: Duration = 2.0
    auto_rollback: bool = True

    @model_validator(mode="after")
    def _progress(self) -> DeploySpec:
        if self.max_surge == 0 and self.max_unavailable == 0:
            raise _err("deploy_batch", "max_surge and max_unavailable cannot both be 0: nothing could move")
        if self.health_deadline <= 0:
            raise _err("deploy_deadline", "health_deadline must be more than 0")
        return self


def config_path_problem(path: str, workdir: str | None) -> str | None:
    """Why a `config_files` path may not be written (None: it may). Pure: paths are compared as text
    after normalising `.` and `..`; the writer checks symlinks on disk when it writes
    (`orch/_files.py`). `${...}` variables stay opaque here; their values are checked at write time."""
    if not workdir:
        return "config files are written inside the service's workdir: set workdir (an absolute path)"
    if "\0" in path or not path.strip():
        return f"{path!r} is not a file path"
    base = posixpath.normpath(workdir)
    target = posixpath.normpath(path if path.startswith("/") else posixpath.join(base, path))
    inside = target.startswith(base.rstrip("/") + "/")
    if path.startswith("/") and not inside:
        return (
            f"{path!r} is outside the workdir {workdir}: config files are written inside it "
            "(give a path relative to it, or an absolute one under it)"
        )
    if not inside:
        return f"{path!r} leads outside the workdir {workdir} with '..': give a path inside it"
    return None


@dataclass(frozen=True)
class RestartPolicy:
    """`no`, `always`, `unless-stopped` (same as always here) or `on-failure[:N]` (N: most restarts)."""

    mode: Literal["no", "always", "on-failure"]
    max_retries: int | None = None

    @classmethod
    def parse(cls, text: str) -> RestartPolicy:
        m = _RESTART_RE.match(text.strip())
        if not m:
            raise ValueError(text)
        if m.group(1) in ("always", "unless-stopped"):
            return cls("always")
        if m.group(1) == "no":
            return cls("no")
        return cls("on-failure", int(m.group(2)) if m.group(2) else None)

    def __str__(self) -> str:
        if self.mode == "on-failure" and self.max_retries is not None:
            return f"on-failure:{self.max_retries}"
        return self.mode


def _restart(value: Any) -> str:
    if isinstance(value, bool) and value is False:
        return "no"  # YAML 1.1 reads a bare `no` as false
    if not isinstance(value, str):
        raise _err("restart_policy", f"{value!r} is not a restart policy: no, always or on-failure[:N]")
    try:
        RestartPolicy.parse(value)
    except ValueError:
        raise _err("restart_policy", f"{value!r} is not a restart policy: no, always or on-failure[:N]") from None
    return value.strip()
