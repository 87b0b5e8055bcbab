"""Orch's settings: the `orch:` section of the platform config, validated here."""

from __future__ import annotations

from typing import Any, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, model_validator

from orch.planner import BackoffPolicy

log = structlog.get_logger("orch.config")


class OrchSettings(BaseModel):
    """Units are in the names. Every field has a default; an unknown key is an error."""

    model_config = ConfigDict(extra="forbid")

    cgroups: Literal["auto", "v2", "v1", "none"] = "auto"
    cgroup_group: str = Field(default="infracore", pattern=r"^[A-Za-z0-9_.-]+$")
    run_as_user: str | None = None  # default user for services without `user:` (when the platform is root)
    # What a platform stop does to running instances. False: they keep running (a native process writes its
    # output to files, shipped from where the last run stopped) and the next start adopts them. True: they
    # stop with the platform (supervisord-like).
    stop_services_on_exit: bool = False
    output_file_max_bytes: int = Field(default=16 * 1024 * 1024, ge=64 * 1024)  # per native instance stream
    backoff_initial_s: float = Field(default=1.0, gt=0)
    backoff_max_s: float = Field(default=60.0, gt=0)
    backoff_factor: float = Field(default=2.0, ge=1)
    stable_after_s: float = Field(default=30.0, gt=0)
    crashloop_failures: int = Field(default=5, ge=2)
    crashloop_window_s: float = Field(default=120.0, gt=0)
    health_history: int = Field(default=20, ge=1, le=1000)
    kill_grace_s: float = Field(default=5.0, gt=0)
    docker: bool = True  # the docker runtime (services with image:); off: such specs are refused at apply
    docker_host: str | None = None  # Engine API URL; default DOCKER_HOST, else unix:///var/run/docker.sock
    docker_name_prefix: str = Field(default="infracore", pattern=r"^[a-z0-9][a-z0-9_.-]{0,30}$")
    docker_pull_timeout_s: float = Field(default=600.0, gt=0)
    systemd: bool = True  # the systemd runtime (runtime: systemd); refused at apply when no systemd answers
    systemd_unit_dir: str = Field(default="/etc/systemd/system", pattern=r"^/")
    systemd_unit_prefix: str = Field(default="infracore", pattern=r"^[a-z0-9][a-z0-9_.-]{0,30}$")
    systemd_command_prefix: list[str] = Field(default_factory=list)  # e.g. [ssh, host] or [docker, exec, -i, c]
    systemd_enable: bool = False  # `systemctl enable` units (started at boot, then adopted by the platform)
    systemd_poll_s: float = Field(default=1.0, gt=0, le=10)  # how often unit states are read (one call for all)
    systemd_cgroup_root: str = ""  # where that systemd's cgroups lie in this host's tree ("" = same host)
    release_keep: int = Field(default=10, ge=2, le=1000)  # releases kept per service (+ serving and previous)
    environment: str = Field(default="production", pattern=r"^[A-Za-z0-9_.-]{1,64}$")  # ${env} in specs
    drain_before_stop_s: float = Field(default=0.5, ge=0, le=60)  # endpoints withdrawn → wait → stop signal
    # Artifacts (orch/artifacts.py): the upload size limit (413 above it), what an archive may unpack to
    # (decompression bombs), and how many unpacked release dirs a service keeps.
    artifact_max_bytes: int = Field(default=2 * 1024**3, gt=0)
    artifact_max_unpacked_bytes: int = Field(default=8 * 1024**3, gt=0)
    artifact_max_members: int = Field(default=200_000, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _deprecated_keep_count(cls, data: Any) -> Any:
        """`release_keep_count` (an earlier name for the artifact store's keep-count) is `release_keep`: one
        count prunes both the release history and the unpacked release dirs."""
        if isinstance(data, dict) and "release_keep_count" in data:
            data = dict(data)
            old = data.pop("release_keep_count")
            if "release_keep" in data:
                log.warning(
                    "deprecated setting ignored",
                    setting="orch.release_keep_count",
                    use="orch.release_keep",
                    value=old,
                    kept=data["release_keep"],
                )
            else:
                log.warning("deprecated setting", setting="orch.release_keep_count", use="orch.release_keep", value=old)
                data["release_keep"] = old
        return data

    def backoff(self) -> BackoffPolicy:
        return BackoffPolicy(
            self.backoff_initial_s,
            self.backoff_max_s,
            self.backoff_factor,
            self.stable_after_s,
            self.crashloop_failures,
            self.crashloop_window_s,
        )
