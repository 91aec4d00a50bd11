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


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
