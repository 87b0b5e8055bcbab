"""What certd serves: each record's certificate published on (and withdrawn from) the gate's
`CertificateBoard`, and the expiry of each for the `cert_expiry_seconds` metric.
"""

from __future__ import annotations

from pathlib import Path

from certd import pem
from certd.records import CertRecord
from core.ports import CertificateBoard, CertificateRef, Sample


class Served:
    """The board side of `CertdService`: the files of record `name` and what the board holds."""

    def __init__(self, board: CertificateBoard, cert_dir: Path) -> None:
        self.board = board
        self.cert_dir = cert_dir
        self.expiry: dict[str, float] = {}  # record name → not_after of the certificate served for it

    def paths(self, name: str) -> tuple[Path, Path]:
        stem = pem.file_stem(name)
        return self.cert_dir / f"{stem}.crt", self.cert_dir / f"{stem}.key"

    def publish(self, rec: CertRecord) -> None:
        crt, key = self.paths(rec.name)
        assert rec.source is not None and rec.not_after is not None
        self.board.publish(
            CertificateRef(
                names=rec.names,
                cert_path=str(crt),
                key_path=str(key),
                not_after=rec.not_after,
                issuer=rec.issuer,
                serial=rec.serial,
                source=rec.source,
            )
        )
        self.expiry[rec.name] = rec.not_after

    def withdraw(self, rec: CertRecord) -> None:
        self.expiry.pop(rec.name, None)
        crt, _ = self.paths(rec.name)
        for n in rec.names:
            ref = self.board.all().get(n)
            if ref is not None and ref.cert_path == str(crt):
                self.board.withdraw(n)

    def samples(self, now: float) -> list[Sample]:
        """`cert_expiry_seconds{name}`: seconds until the served certificate of each record expires
        (negative once expired; the self-signed fallback's while it is what is served)."""
        return [
            Sample("cert_expiry_seconds", round(not_after - now, 3), {"name": name})
            for name, not_after in self.expiry.items()
        ]
