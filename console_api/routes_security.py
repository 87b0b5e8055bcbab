"""Routes of secscan: run the host's security scan and return its findings (admin only: the findings map
the host's weak points — open ports, password logins — and each call runs commands on the host)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from console_api.api import Api, ApiRequest

if TYPE_CHECKING:  # the component's public face (see console_api/__init__.py)
    from secscan import SecscanService


class FindingOut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(description="stable for the same problem on the same subject across scans")
    category: str = Field(description="sshd | firewall | sockets | platform")
    severity: Literal["critical", "high", "medium", "low", "info"]
    title: str
    evidence: list[str] = Field(description="what shows it: file:line and value, address and pid, mode")
    fix: str = Field(description="the exact change or command")
    details: dict[str, Any] = Field(default_factory=dict)
    new: bool | None = Field(default=None, description="not in the previous scan")


class ScanReport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scanned_at: float
    failing: bool = Field(description="true when a critical or high finding exists")
    counts: dict[str, int]
    sources: dict[str, str] = Field(description="where the facts came from (sshd -T or files, live sockets)")
    findings: list[FindingOut]


def register(api: Api, secscan: SecscanService) -> None:
    """The routes over `SecscanService`'s public methods."""

    @api.route(
        "GET",
        "/api/security/scan",
        summary="Scan the host and the platform now; findings with fixes",
        role="admin",
        tag="security",
        returns=ScanReport,
    )
    async def security_scan(req: ApiRequest) -> ScanReport:
        return ScanReport.model_validate(await secscan.scan())
