"""Certd: automatic HTTPS — an ACME (RFC 8555) client for HTTP-01 issuance, the certificate store,
the renewal scheduler and the self-signed fallback.

Primitives: `CertdService` (the asyncio shell the composition root starts), `CertdConfig` (the
`certd:` settings section), `schedule` (pure renewal/back-off arithmetic), `pem` (key, CSR, import
validation), `files` (atomic PEM pairs), `acme_client.AcmeIssuer` (the synchronous ACME conversation;
`ari_fetch` its bounded renewal-information GET), `renewal_info` (the ARI pass), `served` (the board).
"""

from certd.config import CertdConfig, load_config
from certd.service import AcmeOrderFailed, CertdService

__all__ = ["AcmeOrderFailed", "CertdConfig", "CertdService", "load_config"]
