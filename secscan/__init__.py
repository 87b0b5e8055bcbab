"""Secscan: the host's security baseline — sshd, firewall, exposed sockets and the platform's own
settings — as findings with severity, evidence and the exact fix.

Primitives: `Finding` (`findings`), the pure checks (`checks_sshd`, `checks_firewall`, `checks_sockets`,
`checks_platform`) over facts, the sshd_config reader (`sshd_config`), the gatherers (`gather`, the I/O),
`scanner` (one scan), and `SecscanService` (the component: scans on request and periodically, and
publishes `security.finding` for findings the previous scan did not have).
"""

from secscan.config import SecurityConfig, load_security_config
from secscan.findings import Finding
from secscan.service import SecscanService

__all__ = ["Finding", "SecscanService", "SecurityConfig", "load_security_config"]
