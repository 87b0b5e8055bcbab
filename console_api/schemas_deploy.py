"""Response models of the deploy routes: releases and their diffs, deployments, and the packager/CI routes
(client credentials, client tokens, artifacts)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from console_api.schemas import JSON, Out, Timestamp


class Client(Out):
    client_id: str
    name: str
    services: list[str] = Field(description="the services its tokens may upload for, deploy and poll")
    ip_allowlist: list[str] = Field(description="CIDRs its tokens may be used from")
    created_at: Timestamp
    created_by: str | None
    revoked_at: Timestamp | None
    last_used_at: Timestamp | None
    state: Literal["active", "revoked"]


class ClientCreated(Client):
    client_secret: str = Field(description="shown here once; only a hash is kept")


class ClientToken(Out):
    token: str = Field(description="send as 'Authorization: Bearer TOKEN'")
    token_type: Literal["Bearer"]
    expires_at: Timestamp
    expires_in_s: int
    client_id: str
    name: str
    services: list[str]


class Artifact(Out):
    id: str = Field(description="the SHA-256 of its bytes (hex)")
    sha256: str
    kind: Literal["tar.gz", "tar", "file"] = Field(description="by content: archives are unpacked at install")
    size: int
    filename: str
    members: int
    unpacked_bytes: int
    created_at: Timestamp
    created_by: str | None
    services: list[str] = Field(description="services it was uploaded for")


class ArtifactUploaded(Artifact):
    deduplicated: bool = Field(description="the same bytes were stored already: nothing new was kept")


class ArtifactInstall(Out):
    version: str
    artifact_id: str
    installed_at: Timestamp
    path: str = Field(description="the release dir (${installPath})")


class Release(Out):
    release: int
    version: str = Field(description="the release's ${version} label")
    created_at: Timestamp
    created_by: str | None
    current: bool
    changes: str = Field(description="the fields it changed against the release before it")
    artifact: JSON | None
    image: str | None


class ReleaseChange(Out):
    field: str
    from_: Any = Field(alias="from")
    to: Any
    diff: str | None = None


class ReleaseDiff(Out):
    service: str
    from_: int | None = Field(alias="from")
    to: int
    changes: list[ReleaseChange]
    release: JSON = Field(description="the `to` release's document (secrets shown as markers)")


class DeployStep(Out):
    at: Timestamp
    step: str
    outcome: str
    detail: str


class Deployment(Out):
    id: int
    service: str
    release: int
    from_release: int | None
    kind: Literal["deploy", "rollback", "apply"]
    strategy: Literal["rolling", "recreate"]
    status: Literal["pending", "running", "succeeded", "failed", "rolled_back"]
    actor: str | None
    created_at: Timestamp
    finished_at: Timestamp | None
    phases: dict[str, Timestamp]
    log: list[DeployStep]
    error: str | None


class DeploymentStarted(Out):
    deployment_id: int
    release_id: int
    status: Literal["pending"]
