"""PEM in and out: keys, CSRs, self-signed fallbacks, and the validation of imported cert/key pairs,
each problem reported precisely (which input, which block, what to do)."""

from __future__ import annotations

import datetime
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certd import ari
from core.errors import ValidationFailed

_CERT_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----\s.*?-----END CERTIFICATE-----", re.S)
_DNS_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


@dataclass(frozen=True)
class CertInfo:
    """What a certificate says about itself (the leaf of a chain)."""

    names: tuple[str, ...]
    serial: str  # hex
    not_before: float
    not_after: float
    issuer: str
    fingerprint_sha256: str
    chain_length: int = 1
    ari_id: str = ""  # RFC 9773 certificate id ("" without an authority key identifier)

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "serial": self.serial,
            "not_before": self.not_before,
            "not_after": self.not_after,
            "issuer": self.issuer,
            "fingerprint_sha256": self.fingerprint_sha256,
            "chain_length": self.chain_length,
        }


def normalize_name(name: str) -> str:
    """A DNS name as certd keys it (lower case, no trailing dot), or ValueError saying what is wrong.
    A leading `*.` (wildcard) is allowed."""
    n = name.strip().lower().rstrip(".")
    if not n:
        raise ValueError("the name is empty")
    if len(n) > 253:
        raise ValueError(f"{name!r} is longer than 253 characters")
    labels = n.split(".")
    if labels[0] == "*":
        labels = labels[1:]
        if len(labels) < 2:
            raise ValueError(f"{name!r}: a wildcard needs at least two labels after '*.'")
    for label in labels:
        if not _DNS_LABEL.match(label):
            raise ValueError(
                f"{name!r} is not a DNS name: label {label!r} must be 1-63 letters, digits or '-', "
                "not starting or ending with '-'"
            )
    return n


def file_stem(name: str) -> str:
    """The file name (without extension) for a certificate named `name`: `*` becomes `_wildcard_`."""
    return normalize_name(name).replace("*", "_wildcard_")


def generate_key() -> bytes:
    """A new EC P-256 private key as PKCS#8 PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_key(pem: bytes, *, field: str = "key_pem") -> Any:
    """The private key in `pem`, or ValidationFailed naming the field and the problem."""
    if b"-----BEGIN" not in pem or b"PRIVATE KEY-----" not in pem:
        raise ValidationFailed(
            f"{field}: no PEM private key found (expected a '-----BEGIN PRIVATE KEY-----' block)",
            details={"field": field},
            hint="pass the key file, not the certificate",
        )
    if b"ENCRYPTED" in pem:
        raise ValidationFailed(
            f"{field}: the private key is encrypted; certd needs it without a passphrase",
            details={"field": field},
            hint="decrypt it: openssl pkey -in key.pem -out key-plain.pem",
        )
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise ValidationFailed(f"{field}: the private key PEM does not parse: {e}", details={"field": field}) from e


def load_chain(pem: bytes, *, field: str = "cert_pem") -> list[x509.Certificate]:
    """Every certificate in `pem`, leaf first; ValidationFailed names the block that does not parse."""
    blocks = _CERT_BLOCK.findall(pem)
    if not blocks:
        raise ValidationFailed(
            f"{field}: no PEM certificate found (expected '-----BEGIN CERTIFICATE-----' blocks)",
            details={"field": field},
            hint="pass the full-chain certificate file, not the key",
        )
    chain = []
    for i, block in enumerate(blocks, 1):
        try:
            chain.append(x509.load_pem_x509_certificate(block))
        except ValueError as e:
            raise ValidationFailed(
                f"{field}: certificate block {i} of {len(blocks)} does not parse: {e}",
                details={"field": field, "block": i},
            ) from e
    return chain


def cert_names(cert: x509.Certificate) -> tuple[str, ...]:
    """The DNS names a certificate is for: its subjectAltName DNS entries, else its common name."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [n.lower() for n in san.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        names = []
    if not names:
        names = [str(a.value).lower() for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return tuple(dict.fromkeys(names))


def _issuer(cert: x509.Certificate) -> str:
    cns = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else cert.issuer.rfc4514_string()


def info(chain: list[x509.Certificate]) -> CertInfo:
    leaf = chain[0]
    return CertInfo(
        names=cert_names(leaf),
        serial=format(leaf.serial_number, "x"),
        not_before=leaf.not_valid_before_utc.timestamp(),
        not_after=leaf.not_valid_after_utc.timestamp(),
        issuer=_issuer(leaf),
        fingerprint_sha256=hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest(),
        chain_length=len(chain),
        ari_id=ari.cert_id(leaf),
    )


def read_info(cert_pem: bytes) -> CertInfo:
    return info(load_chain(cert_pem))


def _public_der(key: Any) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_matches(key: Any, cert: x509.Certificate) -> bool:
    return _public_der(key.public_key()) == _public_der(cert.public_key())


def validate_pair(cert_pem: bytes, key_pem: bytes, now: float) -> CertInfo:
    """Check an imported pair: the chain parses and is in order (each certificate signed by the next),
    the key parses and matches the leaf, the leaf is valid now and names at least one DNS name."""
    chain = load_chain(cert_pem)
    key = load_key(key_pem)
    leaf = chain[0]
    if not key_matches(key, leaf):
        raise ValidationFailed(
            "key_pem: the private key does not match the certificate (their public keys differ)",
            details={"field": "key_pem", "certificate": cert_names(leaf)},
            hint="pass the key the certificate was issued for; the first certificate must be the leaf",
        )
    for i in range(len(chain) - 1):
        try:
            chain[i].verify_directly_issued_by(chain[i + 1])
        except (ValueError, TypeError, InvalidSignature) as e:
            raise ValidationFailed(
                f"cert_pem: certificate {i + 1} ({chain[i].subject.rfc4514_string()}) is not issued by "
                f"certificate {i + 2} ({chain[i + 1].subject.rfc4514_string()}): {e or 'bad signature'}",
                details={"field": "cert_pem", "block": i + 1},
                hint="order the chain leaf first, then each issuer; leave out unrelated certificates",
            ) from e
    ci = info(chain)
    if ci.not_after <= now:
        expired = datetime.datetime.fromtimestamp(ci.not_after, datetime.UTC).isoformat()
        raise ValidationFailed(f"cert_pem: the certificate expired on {expired}", details={"field": "cert_pem"})
    if ci.not_before > now + 300:
        start = datetime.datetime.fromtimestamp(ci.not_before, datetime.UTC).isoformat()
        raise ValidationFailed(f"cert_pem: the certificate is not valid before {start}", details={"field": "cert_pem"})
    if not ci.names:
        raise ValidationFailed(
            "cert_pem: the certificate names no DNS name (no subjectAltName, no CN)", details={"field": "cert_pem"}
        )
    for n in ci.names:
        try:
            normalize_name(n)
        except ValueError as e:
            raise ValidationFailed(f"cert_pem: {e}", details={"field": "cert_pem"}) from e
    return ci


def make_csr(key_pem: bytes, names: list[str]) -> bytes:
    from acme import crypto_util

    return crypto_util.make_csr(key_pem, names)


def self_signed(names: list[str], now: float, *, days: int = 90) -> tuple[bytes, bytes]:
    """A throwaway self-signed certificate for `names` (the fallback while no real one exists):
    (cert PEM, key PEM)."""
    key_pem = generate_key()
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    start = datetime.datetime.fromtimestamp(now - 3600, datetime.UTC)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Infra-Core self-signed fallback"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem
