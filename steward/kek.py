"""The key-encryption key: private keys (policy signing keys, the audit key) are stored only
encrypted with it.

``settings.STEWARD_KEK`` is a Fernet key that comes from the environment and never enters the
database, so a copy of the database alone yields no private key.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.exceptions import ValidationError


def _fernet() -> Fernet:
    try:
        return Fernet(settings.STEWARD_KEK.encode())
    except (ValueError, TypeError, AttributeError) as error:
        raise ValidationError(
            "STEWARD_KEK must be a Fernet key (32 random bytes, URL-safe base64), e.g. from "
            "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`."
        ) from error


def encrypt(secret: bytes) -> bytes:
    """``secret`` encrypted (and authenticated) with the key-encryption key, for storing."""
    return _fernet().encrypt(secret)


def decrypt(stored: bytes) -> bytes:
    """The secret that ``encrypt`` stored; a clear error when STEWARD_KEK is not the key it used."""
    try:
        return _fernet().decrypt(bytes(stored))
    except InvalidToken as error:
        raise ValidationError(
            "STEWARD_KEK does not decrypt the stored private key: it is not the key-encryption key "
            "the key was encrypted with (was STEWARD_KEK changed or lost?)."
        ) from error
