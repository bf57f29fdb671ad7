"""The key-encryption key: what it encrypts only it decrypts, and a wrong or malformed KEK says so."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ValidationError

from steward import kek


def test_what_is_encrypted_decrypts_with_the_same_key_and_is_not_stored_plain(settings):
    settings.STEWARD_KEK = Fernet.generate_key().decode()
    stored = kek.encrypt(b"private key bytes")
    assert b"private key bytes" not in stored
    assert kek.decrypt(memoryview(stored)) == b"private key bytes"  # BinaryField hands back memoryview


def test_another_kek_cannot_decrypt_and_says_why(settings):
    settings.STEWARD_KEK = Fernet.generate_key().decode()
    stored = kek.encrypt(b"private key bytes")
    settings.STEWARD_KEK = Fernet.generate_key().decode()
    with pytest.raises(ValidationError, match="STEWARD_KEK does not decrypt the stored private key"):
        kek.decrypt(stored)


def test_a_kek_that_is_not_a_fernet_key_is_a_clear_error(settings):
    settings.STEWARD_KEK = "not-a-key"
    with pytest.raises(ValidationError, match="STEWARD_KEK must be a Fernet key"):
        kek.encrypt(b"x")
