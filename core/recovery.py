"""TOTP recovery codes: generation, normalisation and salted hashing. Pure (randomness aside).

A code is 16 characters from a 31-letter alphabet (79 random bits), shown as `xxxx-xxxx-xxxx-xxxx`.
They are stored as SHA-256 of a per-code random salt and the code, not bcrypt: with 79 random bits a
guess costs 2^78 hashes on average even offline, so a slow hash buys nothing (the same reasoning as for
API tokens) — and a login must check up to `COUNT` codes, which bcrypt would make a CPU cost per attempt.
"""

from __future__ import annotations

import hashlib
import secrets

COUNT = 10
ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/i/l: read aloud and typed from paper
LENGTH = 16


def generate(count: int = COUNT) -> list[str]:
    """`count` new codes, each `xxxx-xxxx-xxxx-xxxx`."""
    out = []
    for _ in range(count):
        raw = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
        out.append("-".join(raw[i : i + 4] for i in range(0, LENGTH, 4)))
    return out


def normalise(text: str) -> str | None:
    """A typed code without separators and in lowercase; None when it cannot be a recovery code."""
    s = "".join(c for c in text.strip().lower() if c not in "- ")
    if len(s) != LENGTH or any(c not in ALPHABET for c in s):
        return None
    return s


def looks_like_code(text: str) -> bool:
    return normalise(text) is not None


def hash_code(code: str, salt: str | None = None) -> str:
    """`salt$sha256hex` of the normalised code (a fresh salt unless given)."""
    norm = normalise(code)
    if norm is None:
        raise ValueError("not a recovery code")
    salt = salt or secrets.token_hex(16)
    return f"{salt}${hashlib.sha256((salt + norm).encode()).hexdigest()}"


def matches(code: str, stored: str) -> bool:
    salt, sep, _digest = stored.partition("$")
    if not sep or normalise(code) is None:
        return False
    return secrets.compare_digest(hash_code(code, salt), stored)
