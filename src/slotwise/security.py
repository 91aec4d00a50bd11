"""Secrets: API tokens and invitation tokens are stored as SHA-256, passwords as argon2id."""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()


def new_secret(prefix: str) -> tuple[str, str]:
    """A fresh high-entropy token and the hash under which it is stored."""
    token = f"{prefix}_{secrets.token_urlsafe(32)}"
    return token, hash_secret(token)


def hash_secret(token: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is enough; it only has to be one-way.
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


# Verified in place of a missing hash (an unknown email, an account without a password), so every
# refused sign-in costs one argon2 verification and its time tells nothing about the account.
_DUMMY_HASH = hash_password("not-a-real-password")


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches; always one full argon2 verification, even with no hash."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False
