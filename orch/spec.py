"""Service specs: the YAML people write, validated by pydantic, with errors that name file, line and field.

`load_spec(text, filename)` is the one entry point for YAML; `ServiceSpec.model_validate` takes an
already-parsed mapping (the API's JSON form). Every error is a `SpecError` carrying one `SpecProblem`
per fault, each rendered as `hello.yaml:7 healthcheck.interval: '5 s' is not a duration like 5s ...`.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from core import yamlsafe
from core.errors import ValidationFailed
from core.units import parse_duration, parse_size
from orch.volumes import host_mount_problem, parse_volume

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_RESTART_RE = re.compile(r"^(no|always|unless-stopped|on-failure(?::(\d+))?)$")
# A spec is a page of YAML; inline config files make it longer, never millions of nodes.
SPEC_YAML_LIMITS = yamlsafe.YamlLimits(max_bytes=1024 * 1024, max_nodes=50_000, max_expanded_bytes=4 * 1024 * 1024,
                                       max_depth=32)


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
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$")


def _image(value: Any) -> Any:
    if isinstance(value, str) and not _IMAGE_RE.match(value):
        raise _err("image", f"{value!r} is not an image reference like nginx:1.27, ghcr.io/owner/app:2 or "
                   "name@sha256:<digest> (lowercase path)")
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
            raise _err("volume_host_mount", f"{value!r} is refused: {problem}; if you really mean it, add "
                       "allow_host_mounts: true (recorded in the audit log)")
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
            raise _err("config_file_source", "give exactly one of content (the text) or template (a file inside "
                       "the workdir whose text is expanded)")
        if self.template is not None and ((self.template.startswith("/") and "${" not in self.template)
                                          or ".." in self.template.split("/")):
            raise _err("config_file_template", f"{self.template!r}: a template is a path relative to the workdir "
                       "(or under ${installPath}), without '..'")
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
        return (f"{path!r} is outside the workdir {workdir}: config files are written inside it "
                "(give a path relative to it, or an absolute one under it)")
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


class ServiceSpec(_Model):
    """One service as applied: what to run, how to check it, how to restart it, what it may use."""

    name: str
    runtime: Literal["process", "docker", "systemd"] | None = None
    cmd: list[str] | str | None = None
    image: Annotated[str, BeforeValidator(_image)] | None = None
    entrypoint: list[str] | str | None = None  # docker: replaces the image's ENTRYPOINT ([] clears it)
    workdir: str | None = None
    env: dict[str, EnvValue] = Field(default_factory=dict)
    ports: list[PortSpec] = Field(default_factory=list)
    healthcheck: HealthcheckSpec | None = None
    restart_policy: Annotated[str, BeforeValidator(_restart)] = "on-failure"
    depends_on: list[str] = Field(default_factory=list)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    replicas: int = Field(default=1, ge=0, le=64)
    user: str | None = None
    stop_timeout: Duration = 10.0
    stop_signal: Literal["SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2"] = "SIGTERM"
    allow_host_mounts: bool = False  # bind mounts of /, /etc, the Docker socket, ... (before `volumes`)
    volumes: list[Annotated[str, AfterValidator(_volume)]] = Field(default_factory=list)
    config_files: list[ConfigFileSpec] = Field(default_factory=list)
    # Config files in a system directory (/etc, /usr, ...) or the platform's data dir: refused without it.
    allow_system_paths: bool = False
    deploy: DeploySpec = Field(default_factory=DeploySpec)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise _err(
                "service_name",
                f"{v!r} is not a service name: lowercase letters, digits and '-', 1-63 long, like hello-api",
            )
        return v

    @field_validator("cmd")
    @classmethod
    def _cmd(cls, v: list[str] | str | None) -> list[str] | str | None:
        if v is None:
            return v
        argv = shlex.split(v) if isinstance(v, str) else v
        if not argv or not argv[0]:
            raise _err("cmd_empty", "the command is empty; give a program and its arguments")
        return v

    @field_validator("workdir")
    @classmethod
    def _workdir(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("/", "${installPath}")):
            raise _err("workdir", f"{v!r} is not an absolute path (start it with / or ${{installPath}})")
        return v

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                raise _err("env_name", f"{key!r} is not an environment variable name (letters, digits, _)")
        return v

    @field_validator("volumes")
    @classmethod
    def _volumes(cls, v: list[str], info: ValidationInfo) -> list[str]:
        if v and info.data.get("image") is None and info.data.get("runtime") in (None, "process"):
            raise _err("volumes_process", "volumes are for containers (image:); a native process (cmd:) sees the "
                       "host's files directly: remove volumes, or use workdir")
        return v

    @field_validator("depends_on")
    @classmethod
    def _deps(cls, v: list[str]) -> list[str]:
        for d in v:
            if not NAME_RE.match(d):
                raise _err("depends_on", f"{d!r} is not a service name")
        if len(set(v)) != len(v):
            raise _err("depends_on_dup", "a dependency is listed twice")
        return v

    @model_validator(mode="after")
    def _whole(self, info: ValidationInfo) -> ServiceSpec:
        if self.cmd is None and self.image is None:
            raise _err("cmd_or_image", "give cmd (a native process) or image (a container; cmd then "
                       "replaces the image's command)")
        if self.runtime == "docker" and self.image is None:
            raise _err("runtime_image", "runtime docker needs image:")
        if self.image is not None and self.runtime not in (None, "docker"):
            raise _err("runtime_image", f"image: runs in a container; runtime {self.runtime} needs cmd:")
        if self.entrypoint is not None and self.image is None:
            raise _err("entrypoint_process", "entrypoint is for containers (image:); put the program in cmd:")
        if self.name in self.depends_on:
            raise _err("depends_on_self", "a service cannot depend on itself")
        names = [p.name for p in self.ports]
        if len(set(names)) != len(names):
            raise _err("ports_dup", "two ports have the same name; name them (http, admin, ...)")
        # Specs stored by an older release are loaded as they are (the writer refuses a bad path when
        # it writes, failing that service only, not the platform's start).
        # A container's files go into its own file system (orch.containers.config_files_tar), not the host's.
        stored = bool(info.context and info.context.get("stored"))
        bad = [] if stored or self.image is not None else [(i, msg) for i, f in enumerate(self.config_files)
                                 if (msg := config_path_problem(f.path, self.workdir)) is not None]
        if bad:
            # Raised with each item's own location, so a YAML spec's error names the `path:` line.
            raise ValidationError.from_exception_data("ServiceSpec", [
                InitErrorDetails(type=_err("config_file_path", msg), loc=("config_files", i, "path"),
                                 input=self.config_files[i].path)
                for i, msg in bad
            ])
        return self

    @property
    def argv(self) -> list[str]:
        if self.cmd is None:
            return []
        return shlex.split(self.cmd) if isinstance(self.cmd, str) else list(self.cmd)

    @property
    def entrypoint_argv(self) -> list[str] | None:
        if self.entrypoint is None:
            return None
        return shlex.split(self.entrypoint) if isinstance(self.entrypoint, str) else list(self.entrypoint)

    @property
    def restart(self) -> RestartPolicy:
        return RestartPolicy.parse(self.restart_policy)

    @property
    def runtime_name(self) -> str:
        return self.runtime or ("docker" if self.image else "process")


@dataclass(frozen=True)
class SpecProblem:
    """One fault in a spec: where (file, 1-based line or None) and which field, and what is wrong."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where} {self.field}: {self.message}" if self.field else f"{where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "field": self.field, "message": self.message}


class SpecError(ValidationFailed):
    """The spec cannot be used; `problems` lists each fault with its line."""

    code = "invalid_spec"

    def __reduce__(self) -> tuple[Any, ...]:  # crosses the parse worker process intact
        return (SpecError, (self.problems,))

    def __init__(self, problems: list[SpecProblem]) -> None:
        self.problems = problems
        head = "; ".join(str(p) for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(
            f"invalid service spec: {head}{more}",
            hint="fix the lines named and apply again",
            details={"problems": [p.to_dict() for p in problems]},
        )


# --- YAML with line numbers --------------------------------------------------------------------


def _find_node(root: yaml.Node | None, loc: tuple[int | str, ...]) -> tuple[yaml.Node | None, bool]:
    """The node at `loc` (or the deepest ancestor found); the flag says whether `loc` was reached whole.

    For a key that should not be there (extra field) the key node itself is returned.
    """
    node = root
    for i, part in enumerate(loc):
        if isinstance(node, yaml.MappingNode):
            found = None
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                    found = v if i < len(loc) - 1 else k  # the key's line reads best
                    break
            if found is None:
                return node, False
            node = found
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return node, False
            node = node.value[part]
        else:
            return node, False
    return node, True


def _duplicate_keys(node: yaml.Node | None, path: str, out: list[tuple[int, str, str]]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else "?"
            sub = f"{path}.{key}" if path else key
            if key in seen:
                out.append((k.start_mark.line + 1, sub, "is given twice; keep one"))
            seen.add(key)
            _duplicate_keys(v, sub, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _duplicate_keys(v, f"{path}[{i}]", out)


def _field_name(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _clean_loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """Drop pydantic's union-branch and validator tags (`str`, `list[str]`, `function-after[...]`)."""
    keep: list[int | str] = []
    for part in loc:
        if isinstance(part, str) and (
            "[" in part or part in ("str", "int", "float", "list", "literal['auto']", "bool", "dict")
        ):
            continue
        keep.append(part)
    return tuple(keep)


def problems_from(e: ValidationError, filename: str, root: yaml.Node | None) -> list[SpecProblem]:
    """Turn pydantic's errors into problems with YAML lines (the first error per field)."""
    out: list[SpecProblem] = []
    seen: set[str] = set()
    for err in e.errors():
        loc = _clean_loc(tuple(err["loc"]))
        field = _field_name(loc)
        if field in seen:
            continue  # a union reports each branch; the first says enough
        seen.add(field)
        node, _ = _find_node(root, loc)
        line = node.start_mark.line + 1 if node is not None else None
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = f"unknown field; allowed here: {', '.join(_allowed(loc[:-1]))}"
        elif err["type"] == "missing":
            msg = "is required"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        out.append(SpecProblem(filename, line, field, msg))
    return sorted(out, key=lambda p: (p.line or 0, p.field))


def _allowed(loc: tuple[int | str, ...]) -> list[str]:
    model: type[BaseModel] = ServiceSpec
    for part in loc:
        if isinstance(part, int):
            continue
        f = model.model_fields.get(str(part))
        if f is None:
            return []
        inner = _model_of(f.annotation)
        if inner is None:
            return []
        model = inner
    return list(model.model_fields)


def _model_of(tp: Any) -> type[BaseModel] | None:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    for arg in getattr(tp, "__args__", ()) or ():
        m = _model_of(arg)
        if m is not None:
            return m
    return None


def _compose(text: str, filename: str) -> yaml.Node:
    try:
        root = yamlsafe.compose(text, SPEC_YAML_LIMITS)
    except yamlsafe.YamlRefused as e:
        raise SpecError([SpecProblem(filename, e.line, "", e.problem)]) from None
    if root is None:
        raise SpecError([SpecProblem(filename, 1, "", "the file is empty; a spec needs at least name and cmd")])
    if not isinstance(root, yaml.MappingNode):
        raise SpecError([SpecProblem(filename, root.start_mark.line + 1, "",
                                     "a spec is a mapping of fields (name: ..., cmd: ...), not a list or a value")])
    return root


def load_spec(text: str, filename: str = "spec.yaml") -> ServiceSpec:
    """Parse and validate one spec document. Raises `SpecError` naming file, line and field.

    CPU-bound (YAML, pydantic): the server runs it in its parse worker pool (`parse_spec`), never on
    the event loop. Size, nesting and alias expansion are bounded by `SPEC_YAML_LIMITS`."""
    return parse_spec(text, filename).spec


@dataclass(frozen=True)
class ParsedSpec:
    """A validated spec and the 1-based line of each top-level field (for checks made afterwards)."""

    spec: ServiceSpec
    lines: dict[str, int]


def parse_spec(text: str, filename: str = "spec.yaml") -> ParsedSpec:
    """`load_spec` plus the lines of the top-level fields; a plain function of picklable values, so it
    can run in a worker process."""
    root = _compose(text, filename)
    dups: list[tuple[int, str, str]] = []
    _duplicate_keys(root, "", dups)
    if dups:
        raise SpecError([SpecProblem(filename, line, field, msg) for line, field, msg in dups])
    try:
        data = yamlsafe.construct(root)
    except yamlsafe.YamlRefused as e:  # composed but not constructible (e.g. a bad !!tag)
        raise SpecError([SpecProblem(filename, e.line, "", e.problem)]) from None
    try:
        spec = ServiceSpec.model_validate(data)
    except ValidationError as e:
        raise SpecError(problems_from(e, filename, root)) from e
    lines = {k.value: k.start_mark.line + 1 for k, _ in root.value if isinstance(k, yaml.ScalarNode)}
    return ParsedSpec(spec, lines)


def lines_of(text: str, locs: list[tuple[int | str, ...]]) -> list[int | None]:
    """The 1-based line of the field at each of `locs` in YAML `text` (for checks made after validation),
    from one composition of the document; a plain function of picklable values, so it runs in a pool."""
    try:
        root = yamlsafe.compose(text, SPEC_YAML_LIMITS)
    except yamlsafe.YamlRefused:
        return [None] * len(locs)
    nodes = [_find_node(root, loc)[0] for loc in locs]
    return [node.start_mark.line + 1 if node is not None else None for node in nodes]


def validate_mapping(data: Any, filename: str = "(request)") -> ServiceSpec:
    """Validate an already-parsed spec (JSON); problems carry field names but no lines."""
    if not isinstance(data, dict):
        raise SpecError([SpecProblem(filename, None, "", "a spec is an object of fields")])
    try:
        return ServiceSpec.model_validate(data)
    except ValidationError as e:
        raise SpecError(problems_from(e, filename, None)) from e


def dump_spec(spec: ServiceSpec) -> str:
    """The spec as YAML, fields in declaration order, defaults left out."""
    data = spec.model_dump(mode="json", exclude_defaults=True)
    return yaml.safe_dump(data, sort_keys=False)
