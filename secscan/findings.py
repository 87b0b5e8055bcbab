"""A finding: what is wrong, how bad, the evidence that shows it, and the exact fix."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["critical", "high", "medium", "low", "info"]
SEVERITIES: tuple[Severity, ...] = ("critical", "high", "medium", "low", "info")  # most severe first
FAILING: frozenset[str] = frozenset({"critical", "high"})  # these make `fsctl security scan` exit 2


@dataclass(frozen=True)
class Finding:
    """One problem. `id` is stable across scans for the same problem on the same subject (it names the
    check and what it found it on, never a pid or a time), so "new since the last scan" is a set difference.
    `evidence` are lines a person reads (`/etc/ssh/sshd_config:12: PasswordAuthentication yes`);
    `details` the same facts for scripts."""

    id: str
    category: str  # sshd | firewall | sockets | platform
    severity: Severity
    title: str
    evidence: tuple[str, ...]
    fix: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "category": self.category,
            "severity": self.severity,
            "title": self.title,
            "evidence": list(self.evidence),
            "fix": self.fix,
            "details": dict(self.details),
        }


def rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


def ordered(findings: Iterable[Finding]) -> list[Finding]:
    """Most severe first, then by category and id, one finding per id (the first kept)."""
    seen: dict[str, Finding] = {}
    for f in findings:
        seen.setdefault(f.id, f)
    return sorted(seen.values(), key=lambda f: (rank(f.severity), f.category, f.id))


def counts(findings: Iterable[Finding]) -> dict[str, int]:
    out: dict[str, int] = dict.fromkeys(SEVERITIES, 0)
    for f in findings:
        out[f.severity] += 1
    return out


def failing(findings: Iterable[Finding]) -> bool:
    return any(f.severity in FAILING for f in findings)
