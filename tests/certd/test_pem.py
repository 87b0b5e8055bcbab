"""Validation of imported cert/key pairs: each bad input gets a precise error naming what is wrong."""

from __future__ import annotations

import datetime
import time

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from certd import pem
from core.errors import ValidationFailed

NOW = time.time()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def leaf(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("shop.example.com", "www.shop.example.com")


def _chain(leaf: trustme.LeafCert) -> bytes:
    return b"".join(blob.bytes() for blob in leaf.cert_chain_pems)


def test_valid_pair_lists_names_serial_and_expiry(ca: trustme.CA, leaf: trustme.LeafCert) -> None:
    chain = _chain(leaf) + ca.cert_pem.bytes()
    info = pem.validate_pair(chain, leaf.private_key_pem.bytes(), NOW)
    assert info.names == ("shop.example.com", "www.shop.example.com")
    assert info.not_after > NOW and info.chain_length == 2 and info.serial


def _error(cert: bytes, key: bytes, now: float = NOW) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as exc:
        pem.validate_pair(cert, key, now)
    return exc.value


def test_key_mismatch(ca: trustme.CA, leaf: trustme.LeafCert) -> None:
    other = ca.issue_cert("other.example.com")
    e = _error(_chain(leaf), other.private_key_pem.bytes())
    assert e.message == "key_pem: the private key does not match the certificate (their public keys differ)"
    assert e.details["field"] == "key_pem"


@pytest.mark.parametrize(
    ("cert", "key", "message"),
    [
        (b"hello", None, "cert_pem: no PEM certificate found"),
        (b"", None, "cert_pem: no PEM certificate found"),
        (None, b"garbage", "key_pem: no PEM private key found"),
        (
            b"-----BEGIN CERTIFICATE-----\nAAAAnotbase64!!\n-----END CERTIFICATE-----\n",
            None,
            "cert_pem: certificate block 1 of 1 does not parse",
        ),
        (
            None,
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "key_pem: the private key PEM does not parse",
        ),
    ],
)
def test_garbage_pem(leaf: trustme.LeafCert, cert: bytes | None, key: bytes | None, message: str) -> None:
    e = _error(cert if cert is not None else _chain(leaf), key if key is not None else leaf.private_key_pem.bytes())
    assert e.message.startswith(message), e.message


def test_certificate_given_as_key_and_key_as_certificate(leaf: trustme.LeafCert) -> None:
    assert _error(leaf.private_key_pem.bytes(), leaf.private_key_pem.bytes()).message.startswith(
        "cert_pem: no PEM certificate found"
    )
    e = _error(_chain(leaf), _chain(leaf))
    assert e.message.startswith("key_pem: no PEM private key found")
    assert e.hint == "pass the key file, not the certificate"


def test_second_block_garbage_names_the_block(leaf: trustme.LeafCert) -> None:
    bad = _chain(leaf) + b"-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\n"
    e = _error(bad, leaf.private_key_pem.bytes())
    assert e.message.startswith("cert_pem: certificate block 2 of 2 does not parse") and e.details["block"] == 2


def test_chain_out_of_order(ca: trustme.CA, leaf: trustme.LeafCert) -> None:
    unrelated = trustme.CA().cert_pem.bytes()
    e = _error(_chain(leaf) + unrelated, leaf.private_key_pem.bytes())
    assert "certificate 1 (" in e.message and "is not issued by certificate 2" in e.message
    assert (e.hint or "").startswith("order the chain leaf first")


def test_encrypted_key(leaf: trustme.LeafCert) -> None:
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"secret")
    )
    e = _error(_chain(leaf), encrypted)
    assert e.message == "key_pem: the private key is encrypted; certd needs it without a passphrase"
    assert "openssl pkey" in (e.hint or "")


def test_expired_and_not_yet_valid(ca: trustme.CA, leaf: trustme.LeafCert) -> None:
    later = leaf_not_after = pem.read_info(_chain(leaf)).not_after
    e = _error(_chain(leaf), leaf.private_key_pem.bytes(), now=later + 1)
    expired = datetime.datetime.fromtimestamp(leaf_not_after, datetime.UTC).isoformat()
    assert e.message == f"cert_pem: the certificate expired on {expired}"
    future = ca.issue_cert(
        "future.example.com", not_before=datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=3)
    )
    e = _error(_chain(future), future.private_key_pem.bytes())
    assert e.message.startswith("cert_pem: the certificate is not valid before")


@pytest.mark.parametrize(
    ("name", "ok"),
    [("Example.COM.", "example.com"), ("*.example.com", "*.example.com"), ("a-b.c", "a-b.c")],
)
def test_normalize_name(name: str, ok: str) -> None:
    assert pem.normalize_name(name) == ok


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "empty"),
        ("bad..name", "label ''"),
        ("-x.test", "label '-x'"),
        ("*.com", "wildcard"),
        ("a" * 64 + ".test", "1-63"),
        ("sp ace.test", "label 'sp ace'"),
        ("x" * 254, "longer than 253"),
    ],
)
def test_normalize_name_errors(name: str, problem: str) -> None:
    with pytest.raises(ValueError) as exc:
        pem.normalize_name(name)
    assert problem in str(exc.value)


def test_self_signed_fallback_names_and_key() -> None:
    cert_pem, key_pem = pem.self_signed(["a.test", "b.test"], NOW)
    info = pem.validate_pair(cert_pem, key_pem, NOW)
    assert info.names == ("a.test", "b.test") and info.issuer == "a.test"
    assert pem.file_stem("*.example.com") == "_wildcard_.example.com"
