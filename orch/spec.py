"""Service specs: the YAML people write, validated by pydantic, with errors that name file, line and field.

`load_spec(text, filename)` is the one entry point for YAML; `ServiceSpec.model_validate` takes an
already-parsed mapping (the API's JSON form). Every error is a `SpecError` carrying one `SpecProblem`
per fault, each rendered as `hello.yaml:7 healthcheck.interval: '5 s' is not a duration like 5s ...`.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails

from core import yamlsafe
from core.errors import ValidationFailed
from orch.specparts import (  # the parts (and the names other modules import from here)
    ConfigFileSpec,
    DeploySpec,
    Duration,
    EnvValue,
    HealthcheckSpec,
    PortSpec,
    ResourcesSpec,
    RestartPolicy,
    _err,
    _image,
    _Model,
    _restart,
    _volume,
    config_path_problem,
)

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# A spec is a page of YAML; inline config files make it longer, never millions of nodes.
SPEC_YAML_LIMITS = yamlsafe.YamlLimits(
    max_bytes=1024 * 1024, max_nodes=50_000, max_expanded_bytes=4 * 1024 * 1024, max_depth=32
)


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
            raise _err(
                "volumes_process",
                "volumes are for containers (image:); a native process (cmd:) sees the "
                "host's files directly: remove volumes, or use workdir",
            )
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
            raise _err(
                "cmd_or_image",
                "give cmd (a native process) or image (a container; cmd then replaces the image's command)",
            )
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
        bad = (
            []
            if stored or self.image is not None
            else [
                (i, msg)
                for i, f in enumerate(self.config_files)
                if (msg := config_path_problem(f.path, self.workdir)) is not None
            ]
        )
        if bad:
            # Raised with each item's own location, so a YAML spec's error names the `path:` line.
            raise ValidationError.from_exception_data(
                "ServiceSpec",
                [
                    InitErrorDetails(
                        type=_err("config_file_path", msg),
                        loc=("config_files", i, "path"),
                        input=self.config_files[i].path,
                    )
                    for i, msg in bad
                ],
            )
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
            msg = msg[len("Value error, ") :]
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
        raise SpecError(
            [
                SpecProblem(
                    filename,
                    root.start_mark.line + 1,
                    "",
                    "a spec is a mapping of fields (name: ..., cmd: ...), not a list or a value",
                )
            ]
        )
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
