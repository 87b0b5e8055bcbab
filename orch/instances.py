"""From a spec and a replica slot to a concrete `InstanceConfig`: ports chosen on 127.0.0.1 and
`${PORT}`, `${PORT_<NAME>}`, `${SERVICE}`, `${INSTANCE}`, `${INDEX}`, the release's `${version}`,
`${installPath}`, `${env}` and the spec's own env expanded."""

from __future__ import annotations

import re
import signal
import socket
from collections.abc import Mapping

from orch.runtime import InstanceConfig
from orch.spec import PortSpec, ServiceSpec

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand(text: str, variables: Mapping[str, str]) -> str:
    """Replace `${NAME}` by its value; unknown names are left as written (the program may want them)."""
    return _VAR.sub(lambda m: variables.get(m.group(1), m.group(0)), text)


def variables(
    spec: ServiceSpec, index: int, ports: Mapping[str, int], release: Mapping[str, str] | None = None
) -> dict[str, str]:
    out = {k: v for k, v in spec.env.items()}
    out |= dict(release or {})  # version, installPath, env: the release's, over a same-named env entry
    out |= {"SERVICE": spec.name, "INSTANCE": f"{spec.name}-{index}", "INDEX": str(index)}
    for name, port in ports.items():
        out[f"PORT_{name.upper().replace('-', '_')}"] = str(port)
    if spec.ports and spec.ports[0].name in ports:
        out["PORT"] = str(ports[spec.ports[0].name])
    return out


def container_ports(spec: ServiceSpec, ports: Mapping[str, int]) -> dict[str, int]:
    """For a container, the port each named port listens on inside it: `internal` when a number, else
    the same number as its published host port (the program reads it from `${PORT}`)."""
    return {p.name: p.internal if isinstance(p.internal, int) else ports[p.name] for p in spec.ports if p.name in ports}


def port_requests(spec: ServiceSpec) -> list[PortSpec]:
    """What to allocate on 127.0.0.1. A process listens on the host itself (a fixed `internal` is its
    port); a container's `internal` is inside it, and its published host port is always orch's choice."""
    if spec.runtime_name != "docker":
        return list(spec.ports)
    return [PortSpec(name=p.name, internal="auto") for p in spec.ports]


def build_config(
    spec: ServiceSpec,
    index: int,
    ports: Mapping[str, int],
    version: int,
    release: Mapping[str, str] | None = None,
    templates: Mapping[int, str] | None = None,
) -> InstanceConfig:
    """The instance config for replica `index` of `spec` with `ports` (on the host) already chosen. In a
    container's env, `${PORT}` and `${PORT_<NAME>}` are the ports inside it. `release` holds the release's
    variables; `templates` the text of each `template:` config file (by its position), read by the caller."""
    inside = container_ports(spec, ports) if spec.runtime_name == "docker" else {}
    v = variables(spec, index, inside or ports, release)
    env = {k: expand(val, v) for k, val in spec.env.items()}
    env |= {k: val for k, val in v.items() if k.startswith("PORT") or k in ("SERVICE", "INSTANCE")}
    return InstanceConfig(
        service=spec.name,
        index=index,
        argv=tuple(expand(a, v) for a in spec.argv),
        image=spec.image,
        env=env,
        workdir=expand(spec.workdir, v) if spec.workdir else None,
        user=spec.user,
        ports=dict(ports),
        memory_bytes=spec.resources.memory,
        cpu=spec.resources.cpu,
        stop_timeout_s=spec.stop_timeout,
        stop_signal=int(getattr(signal, spec.stop_signal)),
        version=version,
        config_files=tuple(
            (expand(f.path, v), expand(f.content if f.content is not None else (templates or {}).get(i, ""), v), f.mode)
            for i, f in enumerate(spec.config_files)
        ),
        runtime=spec.runtime_name,
        container_ports=inside,
        volumes=tuple(spec.volumes),
        entrypoint=tuple(expand(a, v) for a in ep) if (ep := spec.entrypoint_argv) is not None else None,
    )


def health_target(spec: ServiceSpec, index: int, ports: Mapping[str, int]) -> str | list[str] | None:
    hc = spec.healthcheck
    if hc is None:
        return None
    v = variables(spec, index, ports)
    if hc.http is not None:
        return expand(hc.http, v)
    if hc.tcp is not None:
        return expand(hc.tcp, v)
    assert hc.exec is not None
    return expand(hc.exec, v) if isinstance(hc.exec, str) else [expand(a, v) for a in hc.exec]


class PortAllocator:
    """Free 127.0.0.1 ports for instances, never handing out one already given (until released)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._taken: set[int] = set()

    def _free(self, port: int) -> int | None:
        with socket.socket() as s:
            try:
                s.bind((self.host, port))
            except OSError:
                return None
            return int(s.getsockname()[1])

    def allocate(self, specs: list[PortSpec], previous: Mapping[str, int] | None = None) -> dict[str, int]:
        """A port per spec: the fixed one, else the previous one if still free, else a new free one.
        Raises OSError when a fixed port is taken."""
        out: dict[str, int] = {}
        try:
            for p in specs:
                if p.internal != "auto":
                    port = int(p.internal)
                    if port in self._taken or self._free(port) is None:
                        raise OSError(f"port {port} ({p.name}) is already in use on {self.host}")
                else:
                    prev = (previous or {}).get(p.name)
                    port = prev if prev and prev not in self._taken and self._free(prev) else 0
                    while not port:
                        got = self._free(0)
                        port = got if got and got not in self._taken else 0
                self._taken.add(port)
                out[p.name] = port
        except OSError:
            self.release(out)
            raise
        return out

    def reserve(self, ports: Mapping[str, int]) -> None:
        self._taken.update(ports.values())

    def release(self, ports: Mapping[str, int]) -> None:
        self._taken.difference_update(ports.values())
