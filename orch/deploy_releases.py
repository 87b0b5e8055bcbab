"""What a release is made of (`orch.deployer`): a spec version recorded with its variables, template texts,
image digest and unit, and read back as a `Target` — the one a deployment brings up, or the one a replica on
an older release is supervised with (`release_of`). Mixed into `Deployer`."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import posixpath
import shutil
from typing import TYPE_CHECKING, Any

import structlog

from core.errors import NotFound
from orch._files import ConfigFileRefused, read_inside
from orch.deploy_slots import Target
from orch.docker import DockerRuntime
from orch.instances import build_config, expand, variables
from orch.release import build_release, release_vars, templates_of
from orch.spec import ServiceSpec, SpecError, SpecProblem
from orch.units import render_unit

if TYPE_CHECKING:
    from orch.deployrepo import DeployRepo
    from orch.service import OrchService

log = structlog.get_logger("orch.deploy")


class Releases:
    """Mixed into `Deployer`: needs `o` (the `OrchService`), `repo`, `env_name` and the serving releases'
    `vars` / `templates`."""

    if TYPE_CHECKING:  # what `Deployer` provides
        o: OrchService
        repo: DeployRepo
        env_name: str
        vars: dict[str, dict[str, str]]
        templates: dict[str, dict[int, str]]
        _releases: dict[tuple[str, int], Target]

    async def record(self, spec: ServiceSpec, number: int, actor: str | None) -> None:
        """The release of a spec applied directly (a new or stopped service): no instance to replace."""
        row = self.o.services.get(spec.name)
        prev = await self.repo.release(spec.name, row.version) if row is not None else None
        rv = release_vars(
            prev["label"] if prev else str(number), prev["doc"].get("install_path") if prev else None, self.env_name
        )
        templates = await self._read_templates(spec, rv, number)
        doc = build_release(
            spec,
            number,
            rv,
            templates,
            previous_spec=row.spec if row else None,
            previous_doc=prev["doc"] if prev else None,
        )
        await self._extras(spec, number, rv, templates, doc)
        await self.repo.add_release(spec.name, number, rv["version"], doc, actor)
        self.vars[spec.name], self.templates[spec.name] = rv, templates

    async def _extras(
        self, spec: ServiceSpec, number: int, rv: dict[str, str], templates: dict[int, str], doc: dict[str, Any]
    ) -> None:
        """What only this host can say about a release: the image's digest when dockerd has the image,
        the systemd unit's text (rendered with the document's env: no secret in clear)."""
        if spec.image is not None and self.o.runtime is not None:
            docker = self.o.runtime.runtimes.get("docker")
            if isinstance(docker, DockerRuntime):
                with contextlib.suppress(Exception):
                    info = await asyncio.wait_for(docker.docker.images.inspect(spec.image), 5)
                    doc["image_digest"] = (info.get("RepoDigests") or [None])[0] or info.get("Id")
        if spec.runtime_name == "systemd":
            shown = spec.model_copy(update={"env": doc["env"]})
            config = build_config(shown, 1, {}, number, rv, templates)
            if config.argv and not config.argv[0].startswith("/"):
                found = shutil.which(config.argv[0])
                config = dataclasses.replace(config, argv=(found or f"/{config.argv[0]}", *config.argv[1:]))
            with contextlib.suppress(ValueError):
                doc["unit"] = render_unit(config)

    async def _target(self, name: str, number: int, *, strict: bool = True) -> Target:
        rel = await self.repo.release(name, number)
        spec = await self.o.repo.spec_version(name, number)
        if spec is None or (strict and rel is None and await self.repo.releases(name)):
            # A spec version without its release was pruned (or failed before it was recorded).
            raise NotFound(f"service {name} has no release {number}", hint=f"see fsctl service releases {name}")
        doc = rel["doc"] if rel else {}
        rv = release_vars(doc.get("version") or str(number), doc.get("install_path"), self.env_name)
        return Target(spec, number, rv, templates_of(doc, spec))

    async def release_of(self, name: str, number: int) -> Target:
        """What an instance of release `number` runs under (its spec, variables and templates), for the
        supervision of a replica on another release than the service's (adopted mid-rollout, or held after
        a failed one): its probes, its stop and its crash restart follow its own release. The serving
        release, or that one with a warning when release `number` is gone (pruned)."""
        row = self.o._row(name)
        if number != row.version:
            got = self._releases.get((name, number))
            if got is not None:
                return got
            try:
                got = await self._target(name, number, strict=False)
            except NotFound:
                log.warning("release of a replica is gone; supervised as the serving one", service=name, release=number)
            else:
                self._releases[(name, number)] = got  # releases are immutable: kept for the next restart
                return got
        return Target(row.spec, row.version, self.vars.get(name, {}), self.templates.get(name, {}))

    async def _read_templates(self, spec: ServiceSpec, rv: dict[str, str], number: int) -> dict[int, str]:
        out: dict[int, str] = {}
        v = variables(spec, 0, {}, rv)
        for i, f in enumerate(spec.config_files):
            if f.template is None:
                continue
            if not spec.workdir:
                raise SpecError(
                    [
                        SpecProblem(
                            "deploy",
                            None,
                            f"config_files[{i}].template",
                            "a template is read inside the workdir: set workdir",
                        )
                    ]
                )
            try:
                # The workdir as its real path (links an admin laid out resolved once): `read_inside` then
                # opens every component without following a link, so one swapped in afterwards is refused.
                given = posixpath.normpath(expand(spec.workdir, v))
                template = posixpath.normpath(expand(f.template, v))
                if template.startswith(given.rstrip("/") + "/"):  # absolute under the workdir as given
                    template = template[len(given.rstrip("/")) + 1 :]
                workdir = await asyncio.to_thread(os.path.realpath, given)
                out[i] = await asyncio.to_thread(read_inside, workdir, template)
            except ConfigFileRefused as e:
                raise SpecError([SpecProblem("deploy", None, f"config_files[{i}].template", str(e))]) from None
        return out
