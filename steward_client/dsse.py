"""DSSE envelopes signed with Ed25519: the pre-authentication encoding, signing and key ids."""

from __future__ import annotations

import base64
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .canonical import canonical_json

POLICY_PAYLOAD_TYPE = "application/vnd.steward.routing-policy+json"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what is actually signed."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def keyid_for(public_raw: bytes) -> str:
    """A key's id: the hex SHA-256 of its raw 32-byte public key."""
    return hashlib.sha256(public_raw).hexdigest()


def sign_envelope(payload: bytes, payload_type: str, keys: list[Ed25519PrivateKey]) -> bytes:
    """A DSSE envelope over the exact ``payload`` bytes, one signature per key, as canonical JSON."""
    message = pae(payload_type, payload)
    signatures = [
        {
            "keyid": keyid_for(raw_public_key(key.public_key())),
            "sig": base64.b64encode(key.sign(message)).decode("ascii"),
        }
        for key in keys
    ]
    envelope = {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": signatures,
    }
    return canonical_json(envelope)


def verify_signature(public_raw: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
