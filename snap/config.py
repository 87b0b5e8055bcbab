"""Snap's settings (the `snap:` section of the config) and the plan model at the API edge."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.errors import StartupError
from core.settings import load_section
from snap.schedule import validate_cron

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class SnapConfig(BaseModel):
    """The `snap:` section. Paths default under the data dir; see docs/snap-format.md for the repository."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    repository: Path | None = None  # default <data>/snap/repo
    restore_root: Path | None = None  # default /srv/restore as root, else <data>/restore
    encryption: Literal["none", "aes-256-gcm"] = "none"
    passphrase_file: Path | None = None  # required with aes-256-gcm: its contents are the passphrase
    workers: int = Field(default=2, ge=1, le=16)  # hashing/compression threads per backup
    check_every_s: float = Field(default=30.0, ge=1.0, le=3600.0)  # how often the scheduler looks for due plans
    hook_timeout_s: float = Field(default=600.0, gt=0)
    auto_prune: bool = False  # prune after a run's retention removed snapshots
    shadow_timeout_s: float = Field(default=60.0, gt=0, le=3600)  # for a shadow instance to become healthy
    nice: int = Field(default=10, ge=0, le=19)  # CPU priority of the job processes (higher: gentler)
    # CPUs a job may use; default all but one (so the event loop and the gate always have one), 0 = all
    job_cpus: int | None = Field(default=None, ge=0, le=4096)

    def job_cpu_count(self) -> int:
        if self.job_cpus is not None:
            return self.job_cpus
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(1, n - 1) if n >= 2 else 0

    def repo_path(self, data_dir: Path) -> Path:
        return self.repository or data_dir / "snap" / "repo"

    def restore_dir(self, data_dir: Path) -> Path:
        if self.restore_root:
            return self.restore_root
        return Path("/srv/restore") if os.geteuid() == 0 else data_dir / "restore"

    def passphrase(self) -> bytes | None:
        if self.passphrase_file is None:
            return None
        try:
            return self.passphrase_file.read_bytes().rstrip(b"\n")
        except OSError as e:
            raise StartupError(
                f"snap.passphrase_file {self.passphrase_file}: {e.strerror}",
                hint="create it (mode 0600) with a long random string",
            ) from e


def load_snap_config(section: dict[str, Any]) -> SnapConfig:
    cfg = load_section(SnapConfig, section, key="snap", hint="e.g. snap: {repository: /backup/repo}")
    if cfg.encryption != "none" and cfg.passphrase_file is None:
        raise StartupError(
            "snap.encryption is aes-256-gcm but snap.passphrase_file is not set",
            hint="point snap.passphrase_file at a 0600 file holding a long random string",
        )
    return cfg


class PlanBody(BaseModel):
    """A backup plan as the API takes it. Retention defaults are the seed's: 7 daily, 4 weekly, 3 monthly."""

    model_config = ConfigDict(extra="forbid")

    name: str
    paths: list[str] = Field(min_length=1, max_length=64)
    excludes: list[str] = Field(default_factory=list, max_length=256)
    cron: str | None = None  # None: run only on demand
    keep_last: int = Field(default=0, ge=0, le=10_000)
    keep_daily: int = Field(default=7, ge=0, le=10_000)
    keep_weekly: int = Field(default=4, ge=0, le=10_000)
    keep_monthly: int = Field(default=3, ge=0, le=10_000)
    pre_hook: str | None = Field(default=None, max_length=4096)
    post_hook: str | None = Field(default=None, max_length=4096)
    rate_limit_mb_s: float | None = Field(default=None, gt=0, le=100_000)
    service: str | None = Field(default=None, max_length=64)
    enabled: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("must be 1-64 of a-z 0-9 . _ - starting with a letter or digit (e.g. app-daily)")
        return v

    @field_validator("paths")
    @classmethod
    def _paths(cls, v: list[str]) -> list[str]:
        out = []
        for p in v:
            if not p.startswith("/") or "\0" in p:
                raise ValueError(f"{p!r} must be an absolute path (e.g. /srv/data/app)")
            norm = os.path.normpath(p)
            if norm == "/":
                raise ValueError("backing up / as a whole is refused: list the directories to keep")
            out.append(norm)
        return sorted(set(out))

    @field_validator("excludes")
    @classmethod
    def _excludes(cls, v: list[str]) -> list[str]:
        for p in v:
            if not p or "\0" in p or len(p) > 1024:
                raise ValueError(f"exclude pattern {p!r} must be a non-empty glob (e.g. *.tmp or cache/*)")
        return v

    @field_validator("pre_hook", "post_hook")
    @classmethod
    def _hook(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        try:
            argv = shlex.split(v)
        except ValueError as e:
            raise ValueError(f"cannot be split into a command and its arguments ({e}); quote like a shell") from e
        if not argv:
            raise ValueError("is empty")
        return v

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        return None if v is None or not v.strip() else validate_cron(v)


class RestoreBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    snapshot: str = Field(min_length=4, max_length=64)
    target: str | None = None  # default <restore_root>/<plan>-<timestamp>
    path: str | None = None  # restore only this sub-path (absolute, as backed up)
    force: bool = False
    shadow: bool = False

    @field_validator("target", "path")
    @classmethod
    def _abs(cls, v: str | None) -> str | None:
        if v is not None and (not v.startswith("/") or "\0" in v):
            raise ValueError("must be an absolute path")
        return v


class ForgetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dry_run: bool = False


class ScrubBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    all: bool = False
    fraction: float = Field(default=0.1, gt=0, le=1)
