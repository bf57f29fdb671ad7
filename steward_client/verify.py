"""Verification of trust roots and signed policy envelopes, as DESIGN.md's feed protocol says.

Everything here works on exact bytes and a fixed time taken once per update; any failure raises
VerificationError with a one-line reason, and nothing is trusted half-way.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from .canonical import CanonicalError, canonical_json
from .dsse import POLICY_PAYLOAD_TYPE, keyid_for, pae, verify_signature

ROOT_TYPE = "steward.root"
POLICY_TYPE = "steward.routing-policy"
SPEC_VERSION = "1"
MAX_ROOT_BYTES = 512 * 1024
MAX_ENVELOPE_BYTES = 4 * 1024 * 1024
DEFAULT_CLOCK_SLACK = dt.timedelta(minutes=5)


class VerificationError(Exception):
    """A bundle or trust root that must not be trusted; the message is a one-line reason."""


class RollbackError(VerificationError):
    """A validly signed policy older than the one in force: someone replays an old bundle."""


def _strict_object(pairs: list[tuple[str, Any]]) -> dict:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise VerificationError(f"duplicate JSON key {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> None:
    raise VerificationError(f"non-standard JSON value {name}")


def strict_json(data: bytes, what: str) -> Any:
    """Parse JSON strictly: UTF-8, no duplicate keys, no NaN/Infinity."""
    try:
        text = data.decode("utf-8")
        return json.loads(text, object_pairs_hook=_strict_object, parse_constant=_reject_constant)
    except VerificationError:
        raise
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise VerificationError(f"{what} is not valid JSON: {error}") from None


def parse_time(value: Any, field: str) -> dt.datetime:
    """An RFC 3339 UTC time written with ``Z``."""
    if not isinstance(value, str) or not value.endswith("Z"):
        raise VerificationError(f"{field} must be an RFC 3339 time ending in Z")
    try:
        parsed = dt.datetime.fromisoformat(value[:-1] + "+00:00")
    except ValueError:
        raise VerificationError(f"{field} is not an RFC 3339 time: {value!r}") from None
    return parsed


def _b64(value: Any, field: str) -> bytes:
    if not isinstance(value, str):
        raise VerificationError(f"{field} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise VerificationError(f"{field} is not valid base64") from None


def _int(value: Any, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise VerificationError(f"{field} must be an integer")
    return value


@dataclass(frozen=True)
class Role:
    keyids: frozenset[str]
    threshold: int


@dataclass(frozen=True)
class TrustRoot:
    """A verified trust root: its version, expiry, keys (keyid → raw public key) and roles."""

    version: int
    expires: dt.datetime
    keys: dict[str, bytes]
    roles: dict[str, Role]
    raw: bytes

    def role(self, name: str) -> Role:
        return self.roles[name]


def _parse_root(data: bytes) -> tuple[dict, list]:
    if len(data) > MAX_ROOT_BYTES:
        raise VerificationError(f"trust root larger than {MAX_ROOT_BYTES} bytes")
    document = strict_json(data, "trust root")
    if not isinstance(document, dict) or set(document) != {"signed", "signatures"}:
        raise VerificationError("trust root must have exactly 'signed' and 'signatures'")
    signed, signatures = document["signed"], document["signatures"]
    if not isinstance(signed, dict) or not isinstance(signatures, list):
        raise VerificationError("trust root has the wrong shape")
    if signed.get("_type") != ROOT_TYPE:
        raise VerificationError(f"trust root _type must be {ROOT_TYPE!r}")
    return signed, signatures


def _root_from_signed(signed: dict, raw: bytes) -> TrustRoot:
    version = _int(signed.get("version"), "root version")
    expires = parse_time(signed.get("expires"), "root expires")
    keys_in = signed.get("keys")
    roles_in = signed.get("roles")
    if not isinstance(keys_in, dict) or not isinstance(roles_in, dict):
        raise VerificationError("trust root needs 'keys' and 'roles'")
    keys: dict[str, bytes] = {}
    for keyid, key in keys_in.items():
        if not isinstance(key, dict) or key.get("keytype") != "ed25519":
            raise VerificationError(f"key {keyid[:12]}… is not an ed25519 key")
        try:
            public = bytes.fromhex(key.get("keyval", {}).get("public", ""))
        except ValueError:
            raise VerificationError(f"key {keyid[:12]}… has a malformed public key") from None
        if len(public) != 32:
            raise VerificationError(f"key {keyid[:12]}… is not a 32-byte ed25519 key")
        if keyid_for(public) != keyid:
            raise VerificationError(f"key id {keyid[:12]}… does not match its public key")
        keys[keyid] = public
    roles: dict[str, Role] = {}
    for name in ("root", "policy"):
        role = roles_in.get(name)
        if not isinstance(role, dict):
            raise VerificationError(f"trust root lacks the {name} role")
        keyids = role.get("keyids")
        threshold = _int(role.get("threshold"), f"{name} threshold")
        if not isinstance(keyids, list) or not all(isinstance(k, str) and k in keys for k in keyids):
            raise VerificationError(f"the {name} role names keys the root does not list")
        if threshold < 1 or threshold > len(set(keyids)):
            raise VerificationError(f"the {name} role's threshold {threshold} cannot be met")
        roles[name] = Role(frozenset(keyids), threshold)
    return TrustRoot(version=version, expires=expires, keys=keys, roles=roles, raw=raw)


def _count_valid(signatures: list, message: bytes, keys: dict[str, bytes], allowed: frozenset[str]) -> int:
    """Distinct trusted key ids whose signature over ``message`` is valid."""
    good: set[str] = set()
    for entry in signatures:
        if not isinstance(entry, dict):
            continue
        keyid, sig = entry.get("keyid"), entry.get("sig")
        if keyid not in allowed or keyid in good or not isinstance(sig, str):
            continue
        try:
            signature = base64.b64decode(sig, validate=True)
        except (binascii.Error, ValueError):
            continue
        if verify_signature(keys[keyid], signature, message):
            good.add(keyid)
    return len(good)


def load_initial_root(data: bytes) -> TrustRoot:
    """The root shipped with the router, out of band: it must be signed by its own root role."""
    signed, signatures = _parse_root(data)
    root = _root_from_signed(signed, data)
    message = _canonical(signed)
    if _count_valid(signatures, message, root.keys, root.roles["root"].keyids) < root.roles["root"].threshold:
        raise VerificationError("trust root is not signed by a threshold of its own root keys")
    return root


def verify_next_root(current: TrustRoot, data: bytes) -> TrustRoot:
    """Root N+1, accepted only when signed by a threshold of root N's root keys and of its own."""
    signed, signatures = _parse_root(data)
    candidate = _root_from_signed(signed, data)
    if candidate.version != current.version + 1:
        raise VerificationError(f"expected trust root {current.version + 1}, got {candidate.version}")
    message = _canonical(signed)
    old_role, new_role = current.roles["root"], candidate.roles["root"]
    if _count_valid(signatures, message, current.keys, old_role.keyids) < old_role.threshold:
        raise VerificationError(f"trust root {candidate.version} is not signed by root {current.version}'s keys")
    if _count_valid(signatures, message, candidate.keys, new_role.keyids) < new_role.threshold:
        raise VerificationError(f"trust root {candidate.version} is not signed by its own root keys")
    return candidate


def _canonical(signed: dict) -> bytes:
    try:
        return canonical_json(signed)
    except CanonicalError as error:
        raise VerificationError(f"trust root cannot be canonicalised: {error}") from None


@dataclass(frozen=True)
class VerifiedPolicy:
    """A policy whose envelope verified: the payload's exact bytes and its parsed fields."""

    payload_bytes: bytes
    payload: dict
    version: int
    policy_set: str
    issued_at: dt.datetime
    expires: dt.datetime
    trust_version: int


def open_envelope(
    envelope: bytes,
    root: TrustRoot,
    policy_set: str,
    now: dt.datetime,
    slack: dt.timedelta = DEFAULT_CLOCK_SLACK,
    max_bytes: int = MAX_ENVELOPE_BYTES,
    check_times: bool = True,
) -> VerifiedPolicy:
    """Verify a DSSE policy envelope against ``root`` at the fixed time ``now``; return its payload.

    Size cap, strict parse, known payloadType, a threshold of distinct trusted policy keys over
    the exact payload bytes, strict payload parse, the expected policy set, issue time and expiry
    within the clock slack (``check_times=False`` skips the two time checks: reloading the policy
    already in force, whose expiry the caller judges). Rollback is the caller's check.
    """
    if len(envelope) > max_bytes:
        raise VerificationError(f"bundle larger than {max_bytes} bytes")
    document = strict_json(envelope, "bundle")
    if not isinstance(document, dict) or set(document) != {"payloadType", "payload", "signatures"}:
        raise VerificationError("bundle is not a DSSE envelope (payloadType, payload, signatures)")
    if document["payloadType"] != POLICY_PAYLOAD_TYPE:
        raise VerificationError(f"unknown payloadType {document['payloadType']!r}")
    payload_bytes = _b64(document["payload"], "payload")
    signatures = document["signatures"]
    if not isinstance(signatures, list) or not signatures:
        raise VerificationError("bundle carries no signatures")
    policy_role = root.roles["policy"]
    valid = _count_valid(signatures, pae(POLICY_PAYLOAD_TYPE, payload_bytes), root.keys, policy_role.keyids)
    if valid < policy_role.threshold:
        raise VerificationError(
            f"signature check failed: {valid} of {policy_role.threshold} required trusted policy signatures"
        )
    payload = strict_json(payload_bytes, "policy payload")
    if not isinstance(payload, dict):
        raise VerificationError("policy payload must be a JSON object")
    if payload.get("_type") != POLICY_TYPE:
        raise VerificationError(f"policy _type must be {POLICY_TYPE!r}")
    if payload.get("spec_version") != SPEC_VERSION:
        raise VerificationError(f"unsupported spec_version {payload.get('spec_version')!r}")
    if payload.get("policy_set") != policy_set:
        raise VerificationError(f"bundle is for policy set {payload.get('policy_set')!r}, not {policy_set!r}")
    version = _int(payload.get("version"), "version")
    trust_version = _int(payload.get("trust_version"), "trust_version")
    issued_at = parse_time(payload.get("issued_at"), "issued_at")
    expires = parse_time(payload.get("expires"), "expires")
    for key in ("models", "routes", "tiers", "classifications"):
        if key not in payload:
            raise VerificationError(f"policy payload lacks {key!r}")
    if not isinstance(payload["routes"], list) or not isinstance(payload["models"], dict):
        raise VerificationError("policy payload has the wrong shape")
    if check_times and issued_at > now + slack:
        raise VerificationError(f"policy issued in the future ({payload['issued_at']}): check this clock")
    if check_times and expires < now - slack:
        raise VerificationError(f"policy version {version} expired at {payload['expires']}")
    return VerifiedPolicy(payload_bytes, payload, version, policy_set, issued_at, expires, trust_version)
