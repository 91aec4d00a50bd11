"""Webhook signing secrets: made in the Standard Webhooks format, kept sealed at rest.

A secret is ``whsec_`` + base64 of 32 random bytes (the spec's format; its reference ``Webhook``
takes it as is). It is shown once, when made, and stored only sealed with Fernet (AES-128-CBC +
HMAC-SHA256) under a key derived by HKDF-SHA256 from ``SLOTWISE_SECRET_KEY``. Several keys may be
configured, comma-separated: the first seals, any of them opens (so the key itself can be rotated).

Without ``SLOTWISE_SECRET_KEY`` nothing is sealed under a key made up from something else: making a
secret is refused with ``secret_key_missing``, and the worker sends nothing (it could not sign).
"""

from __future__ import annotations

import base64
import secrets

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from slotwise.errors import SlotwiseError

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # the spec allows 24 to 64
_INFO = b"slotwise webhook signing secrets v1"


class SecretKeyMissing(SlotwiseError):
    code, status = "secret_key_missing", 409
    default_message = ("Webhook endpoints need SLOTWISE_SECRET_KEY (at least 32 characters) to keep their "
                       "signing secrets sealed; set it and restart.")


class SecretUnreadable(Exception):
    """A sealed secret that none of the configured keys opens (the key was changed, not rotated)."""


def new_signing_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _fernet(key: str) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(key.strip().encode())
    return Fernet(base64.urlsafe_b64encode(derived))


class Sealer:
    """Seals and opens signing secrets under ``SLOTWISE_SECRET_KEY``. Never logs or repeats one."""

    def __init__(self, secret_key: str) -> None:
        self._keys = MultiFernet([_fernet(key) for key in secret_key.split(",") if key.strip()])

    def __repr__(self) -> str:
        return "Sealer(…)"

    def seal(self, secret: str) -> str:
        return self._keys.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._keys.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise SecretUnreadable("a webhook signing secret could not be opened with SLOTWISE_SECRET_KEY") from None


def sealer_for(secret_key: str | None) -> Sealer:
    """The sealer of the configured key, or the refusal to make secrets without one."""
    if not secret_key:
        raise SecretKeyMissing()
    return Sealer(secret_key)
