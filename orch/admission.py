"""Checks made when a spec is applied that depend on this host, not on the text: is its runtime usable
here, does its user exist, do its bind mounts exist and stay clear of the platform's own data. Each fault
is a `Fault`: the field's location, its name and what is wrong. Their lines in a YAML spec are found by the
caller (`orch.spec.lines_of`, off the loop: it composes the document again)."""

from __future__ import annotations

import os
from pathlib import Path

from orch._files import system_dir_problem
from orch.process import user_problem
from orch.runtimes import RuntimeSet
from orch.spec import ServiceSpec
from orch.volumes import SENSITIVE, host_mount_problem, parse_volume

Loc = tuple[int | str, ...]
Fault = tuple[Loc, str, str]  # (location in the spec, field name, message)


async def admit(
    spec: ServiceSpec, *, runtimes: RuntimeSet, default_user: str | None, data_dir: Path
) -> tuple[list[Fault], list[str]]:
    """(faults that refuse the spec, host mounts it is allowed to make only by `allow_host_mounts`)."""
    problems: list[Fault] = []
    why = await runtimes.problem(spec.runtime_name)
    if why is not None:
        field = "runtime" if spec.runtime else "image"
        problems.append(
            (
                (field,),
                field,
                f"{why}; use cmd: (the process runtime)" if spec.runtime_name not in runtimes.runtimes else why,
            )
        )
    user = spec.user or (default_user if spec.runtime_name == "process" else None)
    if user is not None and spec.runtime_name == "process":
        problem = user_problem(user)
        if problem:
            problems.append((("user",), "user", problem))
    risky: list[str] = []
    data = os.path.realpath(data_dir)
    for i, text in enumerate(spec.volumes):
        vol = parse_volume(text)  # the syntax was checked by the spec
        if vol.kind != "bind":
            continue
        where = f"volumes[{i}]"
        real = os.path.realpath(vol.source)  # a symlink to / is /
        if not os.path.exists(real):
            problems.append(
                (
                    ("volumes", i),
                    where,
                    f"bind mount source {vol.source} does not exist on this host; create it "
                    "first (or use a named volume like data:/var/lib/app)",
                )
            )
            continue
        problem = host_mount_problem(real, (*SENSITIVE, data))
        if problem is None:
            continue
        if spec.allow_host_mounts:
            risky.append(f"{text} ({problem})")
        else:
            shown = f"{vol.source} (a link to {real})" if real != vol.source else vol.source
            problems.append(
                (
                    ("volumes", i),
                    where,
                    f"{shown!s} is refused: {problem}; if you really mean it, add "
                    "allow_host_mounts: true (recorded in the audit log)",
                )
            )
    if spec.config_files and spec.runtime_name == "process" and spec.workdir and "${" not in spec.workdir:
        # Where config files land on this host (links resolved): never a system directory or the data dir,
        # unless the spec says so. A workdir with ${...} is checked when the files are written.
        real = os.path.realpath(spec.workdir)
        problem = system_dir_problem(real, data, os.path.join(data, "releases"))
        if problem and spec.allow_system_paths:
            risky.append(f"config files in {spec.workdir} ({problem})")
        elif problem:
            problems.append(
                (
                    ("workdir",),
                    "workdir",
                    f"config files cannot be written here: {problem}; give the "
                    "service its own directory (allow_system_paths: true overrides this, audited)",
                )
            )
    return problems, risky
