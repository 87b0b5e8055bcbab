"""Sealing of repository files and blob naming: plain SHA-256 without encryption, or AES-256-GCM with
HMAC-SHA256 ids and scrypt-wrapped keys (docs/snap-format.md, "Encryption"). Thread-safe."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from snap.errors import DamagedData, WrongPassphrase

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
_NONCE = 12


class Crypto(Protocol):
    mode: str

    def blob_id(self, plaintext: bytes | memoryview) -> bytes:
        """The 32-byte id of a chunk's plaintext."""

    def seal(self, data: bytes) -> bytes: ...

    def open(self, data: bytes, what: str) -> bytes:
        """The plaintext, or `DamagedData` naming `what` when authentication fails."""


class PlainCrypto:
    mode = "none"

    def blob_id(self, plaintext: bytes | memoryview) -> bytes:
        return hashlib.sha256(plaintext).digest()

    def seal(self, data: bytes) -> bytes:
        return data

    def open(self, data: bytes, what: str) -> bytes:
        return data


class AesGcmCrypto:
    mode = "aes-256-gcm"

    def __init__(self, data_key: bytes, id_key: bytes) -> None:
        self._aead = AESGCM(data_key)
        self._id_key = id_key

    def blob_id(self, plaintext: bytes | memoryview) -> bytes:
        return hmac.new(self._id_key, plaintext, hashlib.sha256).digest()

    def seal(self, data: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, data, None)

    def open(self, data: bytes, what: str) -> bytes:
        if len(data) < _NONCE + 16:
            raise DamagedData(f"{what}: too short to be sealed data ({len(data)} bytes)")
        try:
            return self._aead.decrypt(data[:_NONCE], data[_NONCE:], None)
        except InvalidTag:
            raise DamagedData(
                f"{what}: authentication failed (the data was changed or damaged)",
                hint="run `fsctl snap scrub --all` to list what is affected",
            ) from None


def _kek(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase)


def new_key(passphrase: bytes) -> tuple[dict[str, Any], AesGcmCrypto]:
    """A fresh data key and id key, and the key document that wraps them under `passphrase`.
    CPU-heavy (scrypt): call it off the event loop."""
    data_key, id_key, salt = os.urandom(32), os.urandom(32), os.urandom(16)
    nonce = os.urandom(_NONCE)
    wrapped = AESGCM(_kek(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)).encrypt(nonce, data_key + id_key, None)
    doc = {
        "version": 1,
        "kdf": "scrypt",
        "n": SCRYPT_N,
        "r": SCRYPT_R,
        "p": SCRYPT_P,
        "salt": base64.b64encode(salt).decode(),
        "data": base64.b64encode(nonce + wrapped).decode(),
    }
    return doc, AesGcmCrypto(data_key, id_key)


def unlock(doc: dict[str, Any], passphrase: bytes) -> AesGcmCrypto:
    """The keys in a key document, or `WrongPassphrase`. CPU-heavy (scrypt)."""
    try:
        salt = base64.b64decode(doc["salt"])
        blob = base64.b64decode(doc["data"])
        kek = _kek(passphrase, salt, int(doc["n"]), int(doc["r"]), int(doc["p"]))
    except (KeyError, ValueError, TypeError) as e:
        raise DamagedData(f"key file is malformed: {e}") from e
    try:
        keys = AESGCM(kek).decrypt(blob[:_NONCE], blob[_NONCE:], None)
    except InvalidTag:
        raise WrongPassphrase(
            "the passphrase does not open this repository's key", hint="check the passphrase or key file given for snap"
        ) from None
    return AesGcmCrypto(keys[:32], keys[32:64])
