"""Signed checkpoints of the audit trail, kept in the database and in a log outside it.

A checkpoint says "the chain held ``count`` events, the newest with hash ``head``, at ``time``".
Its statement is RFC 8785 canonical JSON::

    {"_type": "steward.audit-checkpoint", "number": 12, "count": 4711, "head": "<hex>", "time": "…Z"}

signed with the audit key into a DSSE envelope, exactly as the policy feed signs policies (Ed25519
over DSSE's pre-authentication encoding, keyid = hex SHA-256 of the raw public key). The envelope
bytes are stored in ``AuditCheckpoint`` and appended to the checkpoint log,
``STEWARD_AUDIT_CHECKPOINT_DIR/checkpoints.jsonl``: one canonical JSON line per checkpoint,
``{"envelope": <the DSSE envelope>, "public_key": "<hex>"}``, appended with ``O_APPEND`` and
fsynced. The log is the anchor: someone who rewrites the database, checkpoint table included,
still disagrees with it.

Nothing here records audit events; ``audits.events`` makes checkpoints and verifies the chain.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from django.conf import settings

from steward import kek
from steward_client.canonical import canonical_json
from steward_client.dsse import keyid_for, pae, raw_public_key, sign_envelope, verify_signature
from steward_client.verify import VerificationError, parse_time, strict_json

from .models import AuditCheckpoint, AuditKey

CHECKPOINT_TYPE = "steward.audit-checkpoint"
CHECKPOINT_PAYLOAD_TYPE = "application/vnd.steward.audit-checkpoint+json"
LOG_NAME = "checkpoints.jsonl"
DATABASE, LOG = "database", "log"
HEX64 = re.compile(r"[0-9a-f]{64}")


class CheckpointLogError(OSError):
    """The checkpoint log could not be written; no checkpoint is made without it."""


def statement_time(moment: dt.datetime) -> str:
    """UTC, whole seconds, with ``Z``: the time format of everything Steward signs (the feed's)."""
    return moment.astimezone(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the audit key ------------------------------------------------------------------------------


def audit_key() -> tuple[AuditKey, bool]:
    """The audit key that signs new checkpoints, and whether it was created just now.

    Call it while holding the chain head's lock (``make_checkpoint`` does), so two first
    checkpoints do not make two keys.
    """
    key = AuditKey.objects.first()
    if key is not None:
        return key, False
    private = Ed25519PrivateKey.generate()
    public_raw = raw_public_key(private.public_key())
    key = AuditKey.objects.create(
        keyid=keyid_for(public_raw),
        public_key=public_raw.hex(),
        private_key_encrypted=kek.encrypt(private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())),
    )
    return key, True


def trusted_keys() -> dict[str, bytes]:
    """keyid → raw public key of every audit key in the database whose keyid matches its key."""
    keys = {}
    for key in AuditKey.objects.all():
        try:
            public_raw = bytes.fromhex(key.public_key)
        except ValueError:
            continue
        if keyid_for(public_raw) == key.keyid:
            keys[key.keyid] = public_raw
    return keys


# --- statements and envelopes -------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    """What a checkpoint signs."""

    number: int
    count: int
    head: str
    time: str

    def payload(self) -> bytes:
        return canonical_json(
            {"_type": CHECKPOINT_TYPE, "number": self.number, "count": self.count, "head": self.head, "time": self.time}
        )


def sign(statement: Statement, key: AuditKey) -> bytes:
    """The DSSE envelope (canonical JSON bytes) of ``statement`` signed with the audit key."""
    private = Ed25519PrivateKey.from_private_bytes(kek.decrypt(key.private_key_encrypted))
    return sign_envelope(statement.payload(), CHECKPOINT_PAYLOAD_TYPE, [private])


def _integer(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise VerificationError(f"{name} must be a non-negative integer")
    return value


def open_envelope(envelope: Any, keys: dict[str, bytes]) -> tuple[Statement, str]:
    """The statement of a checkpoint envelope (parsed JSON) and the keyid that signed it.

    Raises VerificationError with a one-line reason: malformed, another payload type, a key that
    is not an audit key, or a signature that does not verify.
    """
    if not isinstance(envelope, dict) or set(envelope) != {"payloadType", "payload", "signatures"}:
        raise VerificationError("not a DSSE envelope")
    if envelope["payloadType"] != CHECKPOINT_PAYLOAD_TYPE:
        raise VerificationError(f"payload type {envelope['payloadType']!r} is not a checkpoint's")
    signatures = envelope["signatures"]
    if not isinstance(signatures, list) or len(signatures) != 1 or not isinstance(signatures[0], dict):
        raise VerificationError("a checkpoint carries exactly one signature")
    keyid, signature = signatures[0].get("keyid"), signatures[0].get("sig")
    try:
        payload = base64.b64decode(envelope["payload"], validate=True)
        signature_bytes = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise VerificationError("payload or signature is not valid base64") from None
    if keyid not in keys:
        raise VerificationError(f"signed by {str(keyid)[:12]}…, which is not an audit key of this Steward")
    if not verify_signature(keys[keyid], signature_bytes, pae(CHECKPOINT_PAYLOAD_TYPE, payload)):
        raise VerificationError(f"its signature does not verify with audit key {keyid[:12]}…")
    document = strict_json(payload, "the statement")
    if not isinstance(document, dict) or document.get("_type") != CHECKPOINT_TYPE:
        raise VerificationError(f"the statement is not a {CHECKPOINT_TYPE}")
    head = document.get("head")
    if not isinstance(head, str) or not HEX64.fullmatch(head):
        raise VerificationError("head must be 64 hex digits")
    parse_time(document.get("time"), "time")
    statement = Statement(
        _integer(document.get("number"), "number"), _integer(document.get("count"), "count"), head, document["time"]
    )
    if statement.payload() != payload:
        raise VerificationError("the statement is not canonical JSON")
    return statement, keyid


# --- the log outside the database ---------------------------------------------------------------


def log_path() -> Path:
    return Path(settings.STEWARD_AUDIT_CHECKPOINT_DIR) / LOG_NAME


def log_line(envelope: bytes, public_key: str) -> bytes:
    """One line of the checkpoint log (without its newline)."""
    return canonical_json({"envelope": strict_json(envelope, "envelope"), "public_key": public_key})


def append_to_log(envelope: bytes, public_key: str) -> Path:
    """Append one checkpoint to the log and fsync it (and the directory, when the file is new).

    One ``write`` with ``O_APPEND``: concurrent writers never interleave within a line. A line
    left without its newline by a crash is ended first, so the next line stays whole.
    """
    path = log_path()
    line = log_line(envelope, public_key) + b"\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists()
        descriptor = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            size = os.fstat(descriptor).st_size
            if size and os.pread(descriptor, 1, size - 1) != b"\n":
                line = b"\n" + line
            if os.write(descriptor, line) != len(line):
                raise OSError("short write (is the disk full?)")
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        if new:
            directory = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
    except OSError as error:
        raise CheckpointLogError(f"cannot write the audit checkpoint log {path}: {error.strerror or error}") from error
    return path


# --- checkpoints as verification sees them ------------------------------------------------------


@dataclass
class Checkpoint:
    """One checkpoint as found in the database, the log or both, with its signature checked.

    ``statement`` is None when it cannot be trusted; ``problem`` then says why.
    """

    envelope: bytes
    statement: Statement | None = None
    keyid: str = ""
    problem: str = ""
    sources: list[str] = field(default_factory=list)
    line: int | None = None
    number_hint: int | None = None  # the database row's number, for naming one whose envelope is bad
    time_hint: str = ""
    row_id: int | None = None  # its AuditCheckpoint row, when it is in the database

    @property
    def number(self) -> int | None:
        return self.statement.number if self.statement else self.number_hint

    def name(self) -> str:
        """E.g. ``checkpoint #12 of 2026-12-02T14:50:00Z (log line 12, database)``."""
        number = f"#{self.number}" if self.number is not None else "(unnumbered)"
        time = self.statement.time if self.statement else self.time_hint
        where = [f"log line {self.line}" if source == LOG and self.line else source for source in self.sources]
        return f"checkpoint {number}{f' of {time}' if time else ''} ({', '.join(where)})"


def _opened(envelope: bytes, parsed: Any, keys: dict[str, bytes]) -> Checkpoint:
    checkpoint = Checkpoint(envelope)
    try:
        checkpoint.statement, checkpoint.keyid = open_envelope(parsed, keys)
    except VerificationError as error:
        checkpoint.problem = str(error)
        checkpoint.number_hint, checkpoint.time_hint = _claimed(parsed)
    return checkpoint


def _claimed(parsed: Any) -> tuple[int | None, str]:
    """The number and time an envelope that failed verification claims: only to name it."""
    try:
        document = json.loads(base64.b64decode(parsed["payload"]))
        number, time = document.get("number"), document.get("time")
    except (TypeError, KeyError, ValueError, AttributeError):
        return None, ""
    return (number if isinstance(number, int) else None), (time if isinstance(time, str) else "")[:20]


def from_rows(rows: Iterable[AuditCheckpoint], keys: dict[str, bytes]) -> Iterable[Checkpoint]:
    """Database rows as checkpoints, each signature checked, and its row's columns against it."""
    for row in rows:
        envelope = bytes(row.envelope)
        try:
            parsed = strict_json(envelope, "envelope")
        except VerificationError as error:
            checkpoint = Checkpoint(envelope, problem=str(error))
        else:
            checkpoint = _opened(envelope, parsed, keys)
        if checkpoint.statement is not None and (
            (checkpoint.statement.number, checkpoint.statement.count, checkpoint.statement.head)
            != (row.number, row.count, row.head)
        ):
            checkpoint.problem = "its row's number, count or head differ from what its statement signs"
            checkpoint.statement = None
        checkpoint.number_hint, checkpoint.time_hint = row.number, statement_time(row.made_at)  # the row's say
        checkpoint.row_id = row.pk
        checkpoint.sources.append(DATABASE)
        yield checkpoint


def _from_log(keys: dict[str, bytes], after: int) -> list[Checkpoint]:
    path = log_path()
    try:
        with path.open("rb") as log:
            return list(_lines(log, keys, after))
    except FileNotFoundError:
        return []
    except OSError as error:
        raise CheckpointLogError(f"cannot read the audit checkpoint log {path}: {error.strerror or error}") from error


def _lines(log: Iterable[bytes], keys: dict[str, bytes], after: int) -> Iterable[Checkpoint]:
    for number, raw in enumerate(log, start=1):
        raw = raw.rstrip(b"\n")
        if not raw:
            continue
        try:
            document = strict_json(raw, f"line {number}")
            if not isinstance(document, dict) or not isinstance(document.get("envelope"), dict):
                raise VerificationError("not a checkpoint line")
            envelope = canonical_json(document["envelope"])
        except (VerificationError, ValueError) as error:
            yield Checkpoint(raw, problem=f"unreadable: {error}", sources=[LOG], line=number)
            continue
        checkpoint = _opened(envelope, document["envelope"], keys)
        checkpoint.sources.append(LOG)
        checkpoint.line = number
        if checkpoint.number is None or checkpoint.number > after:
            yield checkpoint


@dataclass
class Checkpoints:
    """Every checkpoint newer than a number, from both places, the same envelope counted once."""

    trusted: list[Checkpoint]  # signature verified
    untrusted: list[Checkpoint]  # reported: bad signature, unknown key, unreadable
    notes: list[str]  # disagreements between the two places that prove nothing by themselves


def load(keys: dict[str, bytes], after: int = 0) -> Checkpoints:
    """The checkpoints numbered above ``after`` from the database table and the log outside it."""
    by_envelope: dict[bytes, Checkpoint] = {}
    untrusted: list[Checkpoint] = []
    rows = AuditCheckpoint.objects.filter(number__gt=after).order_by("number").iterator()
    for checkpoint in [*from_rows(rows, keys), *_from_log(keys, after)]:
        if checkpoint.problem:
            untrusted.append(checkpoint)
        elif checkpoint.envelope in by_envelope:
            known = by_envelope[checkpoint.envelope]
            known.sources.extend(checkpoint.sources)
            known.line = known.line or checkpoint.line
            known.row_id = known.row_id or checkpoint.row_id
        else:
            by_envelope[checkpoint.envelope] = checkpoint
    trusted = sorted(by_envelope.values(), key=lambda c: (c.statement.number, c.statement.time))
    notes = []
    log_exists = log_path().exists()
    for checkpoint in trusted:
        if checkpoint.sources == [DATABASE] and log_exists:
            notes.append(f"{checkpoint.name()} is in the database but not in the log {log_path()}")
        elif checkpoint.sources == [LOG]:
            notes.append(f"{checkpoint.name()} is in the log but not in the database")
    if trusted and not log_exists:
        notes.append(f"there is no checkpoint log at {log_path()}: only the database's checkpoints were checked")
    return Checkpoints(trusted, untrusted, notes)
