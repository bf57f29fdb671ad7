"""The audit trail anchored outside the database: the triggers that guard the whole chain, signed
checkpoints kept in the database and in a log directory, and verification against them.

The attacks are made as the database superuser would make them, with triggers off
(``SET LOCAL session_replication_role = replica`` inside the test's transaction), recomputing hashes
with Steward's own ``event_hash``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from audits import tasks
from audits.checkpoints import CHECKPOINT_PAYLOAD_TYPE, CheckpointLogError, Statement, sign
from audits.events import GENESIS, event_hash, record
from audits.models import AuditChainHead, AuditCheckpoint, AuditEvent, AuditKey, AuditVerification
from audits.verification import make_checkpoint, verify_chain, verify_recent
from portfolio.publishing import publish, start_change
from portfolio.signing import resign
from steward.celery import app
from steward.models import ApiToken
from steward_client.canonical import canonical_json
from steward_client.dsse import sign_envelope
from tests.workers import celery_worker

from ..factories import ROUTED_POLICY

pytestmark = pytest.mark.django_db


def _events(n: int, start: int = 0) -> list[AuditEvent]:
    return [
        record("test.step", object_type="test", object_id=str(i), comment=f"step {i}") for i in range(start, start + n)
    ]


def refused(sql: str, params: list | None = None, match: str = "") -> None:
    """``sql`` fails in the database, and leaves the test's transaction usable."""
    with pytest.raises(DatabaseError, match=match), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)


# --- the triggers -------------------------------------------------------------------------------


def test_truncate_of_the_events_and_of_the_head_is_refused():
    _events(3)
    refused("TRUNCATE audits_auditevent", match="TRUNCATE refused on audits_auditevent")
    refused("TRUNCATE audits_auditevent CASCADE", match="TRUNCATE refused on audits_auditevent")
    refused("TRUNCATE audits_auditchainhead", match="TRUNCATE refused on audits_auditchainhead")
    assert AuditEvent.objects.count() == 3 and AuditChainHead.objects.get().last_seq == 3


def test_the_head_cannot_be_deleted_moved_back_skipped_or_pointed_elsewhere():
    events = _events(3)
    refused("DELETE FROM audits_auditchainhead", match="cannot be deleted")
    refused("UPDATE audits_auditchainhead SET last_seq = 2, last_hash = %s", [events[1].hash], match="forward")
    refused("UPDATE audits_auditchainhead SET last_seq = 5", match="forward")
    refused("UPDATE audits_auditchainhead SET last_seq = 3", match="forward")  # not moving is not forward
    refused("UPDATE audits_auditchainhead SET id = 2", match="forward")
    refused("INSERT INTO audits_auditchainhead (id, last_seq, last_hash) VALUES (2, 0, %s)", [GENESIS], match="once")
    head = AuditChainHead.objects.get()
    assert (head.pk, head.last_seq, head.last_hash) == (1, 3, events[2].hash)


def test_the_head_moves_only_to_the_next_event_that_links_to_it():
    events = _events(2)
    # An event row that follows the head but whose link is forged cannot even be written …
    refused(
        "INSERT INTO audits_auditevent (seq, at, action, object_type, object_id, object_repr, actor_name, comment, "
        "request_id, prev_hash, hash) VALUES (3, now(), 'x', '', '', '', '', '', '', %s, %s)",
        [GENESIS, "f" * 64],
        match="must follow the chain head",
    )
    # … nor one that skips ahead of the head …
    refused(
        "INSERT INTO audits_auditevent (seq, at, action, object_type, object_id, object_repr, actor_name, comment, "
        "request_id, prev_hash, hash) VALUES (9, now(), 'x', '', '', '', '', '', '', %s, %s)",
        [events[1].hash, "f" * 64],
        match="must follow the chain head",
    )
    # … and the head cannot be pointed at #3 with a made-up hash.
    refused("UPDATE audits_auditchainhead SET last_seq = 3, last_hash = %s", ["e" * 64], match="must point at event #3")
    third = record("test.step", comment="the way in")
    head = AuditChainHead.objects.get()
    assert (head.last_seq, head.last_hash) == (3, third.hash) and third.prev_hash == events[1].hash


# --- helpers --------------------------------------------------------------------------------------


@contextlib.contextmanager
def triggers_off() -> Iterator:
    """What a database superuser can do: no trigger fires inside this block (this transaction only)."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        try:
            yield cursor
        finally:
            cursor.execute("SET LOCAL session_replication_role = origin")


def reset_head(cursor, seq: int) -> None:
    """Point the head at event ``seq``, as if the chain had always ended there."""
    last_hash = AuditEvent.objects.get(seq=seq).hash if seq else GENESIS
    cursor.execute("UPDATE audits_auditchainhead SET last_seq = %s, last_hash = %s", [seq, last_hash])


def rewrite_from(seq: int, comment: str) -> None:
    """Change event ``seq``'s comment and recompute its hash and every later one with Steward's own
    ``event_hash``, then point the head at the new newest hash: a chain that links perfectly."""
    prev_hash = AuditEvent.objects.get(seq=seq - 1).hash if seq > 1 else GENESIS
    for event in AuditEvent.objects.filter(seq__gte=seq).order_by("seq"):
        if event.seq == seq:
            event.comment = comment
        event.prev_hash = prev_hash
        event.hash = event_hash(prev_hash, event)
        AuditEvent.objects.filter(pk=event.pk).update(comment=event.comment, prev_hash=prev_hash, hash=event.hash)
        prev_hash = event.hash
    AuditChainHead.objects.filter(pk=1).update(last_hash=prev_hash)


def head_seq() -> int:
    return AuditChainHead.objects.get().last_seq


def time(checkpoint: AuditCheckpoint) -> str:
    """A checkpoint's time as its statement says it (and as verification names it)."""
    return checkpoint.made_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def log_lines(directory: Path) -> list[dict]:
    return [json.loads(line) for line in (directory / "checkpoints.jsonl").read_bytes().splitlines()]


def verify_with_cryptography(envelope: dict, public_hex: str) -> dict:
    """Verify a checkpoint as someone without Steward would: Ed25519 over DSSE's PAE; the statement."""
    payload = base64.b64decode(envelope["payload"])
    payload_type = envelope["payloadType"].encode()
    message = b"DSSEv1 %d %b %d %b" % (len(payload_type), payload_type, len(payload), payload)
    [signature] = envelope["signatures"]
    public = bytes.fromhex(public_hex)
    assert signature["keyid"] == hashlib.sha256(public).hexdigest()
    Ed25519PublicKey.from_public_bytes(public).verify(base64.b64decode(signature["sig"]), message)  # raises if forged
    return json.loads(payload)


def command(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("verify_audit_chain", *args, stdout=out, stderr=err)
    except SystemExit as exited:
        return int(exited.code), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


# --- checkpoints ----------------------------------------------------------------------------------


def test_a_checkpoint_signs_count_and_head_and_is_appended_to_the_log_outside_the_database(checkpoint_dir):
    _events(3)
    first = make_checkpoint("test")
    # The first checkpoint made the audit key, and counts the event that records it.
    key = AuditKey.objects.get()
    assert AuditEvent.objects.filter(action="audit_key.create", object_id=str(key.pk)).exists()
    assert (first.number, first.count, first.head) == (1, 4, AuditChainHead.objects.get().last_hash)
    _events(2, start=3)
    second = make_checkpoint("test")
    assert (second.number, second.count) == (2, 6)

    lines = log_lines(checkpoint_dir)
    assert len(lines) == 2 and all(line["public_key"] == key.public_key for line in lines)
    statements = [verify_with_cryptography(line["envelope"], key.public_key) for line in lines]
    assert statements == [
        {"_type": "steward.audit-checkpoint", "number": c.number, "count": c.count, "head": c.head, "time": time(c)}
        for c in (first, second)
    ]
    # The file holds exactly the envelope bytes the database holds, one canonical line each.
    assert [canonical_json(line["envelope"]) for line in lines] == [bytes(first.envelope), bytes(second.envelope)]
    assert (checkpoint_dir / "checkpoints.jsonl").read_bytes().count(b"\n") == 2


def test_the_audit_key_is_stored_only_encrypted_with_the_kek(settings):
    make_checkpoint("test")
    key = AuditKey.objects.get()
    stored = bytes(key.private_key_encrypted)
    assert len(stored) > 32 and Fernet(settings.STEWARD_KEK.encode()).decrypt(stored)  # Fernet, not raw
    settings.STEWARD_KEK = Fernet.generate_key().decode()
    with pytest.raises(ValidationError, match="STEWARD_KEK does not decrypt"):
        make_checkpoint("with another KEK")
    assert AuditCheckpoint.objects.count() == 1


def test_keys_and_checkpoints_are_append_only_too():
    make_checkpoint("test")
    refused("UPDATE audits_auditcheckpoint SET count = 0", match="append-only: UPDATE refused")
    refused("DELETE FROM audits_auditcheckpoint", match="append-only: DELETE refused")
    refused("TRUNCATE audits_auditcheckpoint CASCADE", match="TRUNCATE refused")
    refused("UPDATE audits_auditkey SET public_key = ''", match="append-only: UPDATE refused")
    refused("DELETE FROM audits_auditkey", match="append-only: DELETE refused")


def test_no_checkpoint_without_its_log_line(checkpoint_dir):
    checkpoint_dir.parent.mkdir(parents=True, exist_ok=True)
    checkpoint_dir.write_text("a file where the log directory should be")
    with pytest.raises(CheckpointLogError, match="cannot write the audit checkpoint log"):
        make_checkpoint("test")
    assert not AuditCheckpoint.objects.exists()


def test_a_line_cut_short_by_a_crash_does_not_swallow_the_next(checkpoint_dir):
    make_checkpoint("test")
    with (checkpoint_dir / "checkpoints.jsonl").open("ab") as log:
        log.write(b'{"envelope": {"payl')  # a crash in the middle of a write
    make_checkpoint("test")
    lines = (checkpoint_dir / "checkpoints.jsonl").read_bytes().splitlines()
    assert len(lines) == 3 and json.loads(lines[2])["envelope"]
    code, _, err = command()
    assert code == 1 and "checkpoint (unnumbered) (log line 2) cannot be trusted: unreadable" in err


# --- the attacks --------------------------------------------------------------------------------


def test_a_cut_tail_with_a_reset_head_is_found_and_named_with_the_checkpoint():
    _events(6)
    make_checkpoint("test")
    _events(4, start=6)
    checkpoint = make_checkpoint("test")
    assert checkpoint.count == 11  # ten events and the audit key's
    assert verify_chain().ok
    with triggers_off() as cursor:
        cursor.execute("DELETE FROM audits_auditevent WHERE seq > 8")
        reset_head(cursor, 8)
    report = verify_chain()
    name = f"checkpoint #2 of {time(checkpoint)} (database, log line 2)"
    assert not report.ok and report.broken_seq == 9 and report.proof == name
    assert report.reason == f"the chain ends at #8, but {name} counted 11 events: events #9–#11 were removed"
    code, _, err = command()
    assert code == 1
    assert f"Audit chain broken at event #9: the chain ends at #8, but {name} counted 11 events" in err
    assert f"Proved by {name}." in err


def test_a_rewritten_event_with_every_later_hash_recomputed_is_found_and_named_with_the_checkpoint():
    _events(3)
    early = make_checkpoint("test")  # vouches for #1–#4
    _events(5, start=3)
    late = make_checkpoint("test")  # #9
    _events(2, start=8)  # #10, #11: after the last checkpoint
    with triggers_off():
        rewrite_from(6, "nothing happened here")
    # Every link holds: without checkpoints the rewrite could not be seen.
    assert AuditEvent.objects.get(seq=6).comment == "nothing happened here"
    report = verify_chain()
    name = f"checkpoint #2 of {time(late)} (database, log line 2)"
    assert not report.ok and report.broken_seq == 5 and report.proof == name
    assert report.reason.startswith(f"event #9 has hash {AuditEvent.objects.get(seq=9).hash[:16]}…, but {name} signed")
    assert report.reason.endswith(
        f"events #5–#9 were rewritten after it was signed (checkpoint #1 of {time(early)} (database, log line 1) "
        "still vouches for the chain up to #4)"
    )
    code, _, err = command()
    assert code == 1 and "Audit chain broken at event #5: event #9 has hash" in err and f"Proved by {name}." in err


def test_a_swapped_head_is_found_and_named_with_the_checkpoint():
    _events(4)
    checkpoint = make_checkpoint("test")  # #5
    newest = AuditEvent.objects.get(seq=5)
    with triggers_off() as cursor:
        # The newest event replaced by another that links to #4, and the head pointed at it.
        cursor.execute("DELETE FROM audits_auditevent WHERE seq = 5")
        forged = AuditEvent(
            seq=5, at=newest.at, action="test.step", comment="a different last word", prev_hash=newest.prev_hash
        )
        forged.hash = event_hash(newest.prev_hash, forged)
        forged.save()
        cursor.execute("UPDATE audits_auditchainhead SET last_hash = %s", [forged.hash])
    report = verify_chain()
    name = f"checkpoint #1 of {time(checkpoint)} (database, log line 1)"
    assert not report.ok and report.broken_seq == 1 and report.proof == name
    assert f"event #5 has hash {forged.hash[:16]}…, but {name} signed {newest.hash[:16]}…" in report.reason


def test_a_head_moved_back_or_pointed_elsewhere_is_found():
    _events(5)
    with triggers_off() as cursor:
        reset_head(cursor, 3)
    report = verify_chain()
    assert not report.ok and report.reason == "events go on to #5, past the chain head at #3"
    with triggers_off() as cursor:
        cursor.execute("UPDATE audits_auditchainhead SET last_seq = 5, last_hash = %s", ["a" * 64])
    assert verify_chain().reason == "the chain head's hash is not event #5's: the head was swapped"


def test_the_log_still_proves_it_when_the_checkpoint_table_was_rewritten_too():
    _events(3)
    checkpoint = make_checkpoint("test")
    key = AuditKey.objects.get()
    with triggers_off() as cursor:
        rewrite_from(2, "rewritten")
        # The checkpoint table rewritten as well, even re-signed with the real key (KEK stolen too).
        cursor.execute("DELETE FROM audits_auditcheckpoint")
        head = AuditChainHead.objects.get()
        statement = Statement(1, head.last_seq, head.last_hash, time(checkpoint))
        AuditCheckpoint.objects.create(
            number=1,
            count=head.last_seq,
            head=head.last_hash,
            made_at=checkpoint.made_at,
            keyid=key.keyid,
            envelope=sign(statement, key),
        )
    report = verify_chain()
    assert not report.ok and report.proof == f"checkpoint #1 of {time(checkpoint)} (log line 1)"
    assert "events #1–#4 were rewritten after it was signed" in report.reason


def test_events_deleted_after_the_last_checkpoint_before_the_next_are_not_detectable_by_checkpoints():
    """What checkpoints cannot do, stated as what happens (docs/operations.md says how the interval
    bounds it): the newest events, appended after the last checkpoint, deleted before the next one,
    with the head reset, leave a chain that links and agrees with every checkpoint."""
    _events(3)
    checkpoint = make_checkpoint("test")  # #4
    _events(3, start=3)  # #5–#7, not yet in any checkpoint
    with triggers_off() as cursor:
        cursor.execute("DELETE FROM audits_auditevent WHERE seq > 5")
        reset_head(cursor, 5)
    report = verify_chain()
    assert report.ok and report.through_seq == 5 and report.newest_checkpoint.number == checkpoint.number
    assert command()[0] == 0
    # The next checkpoint signs the shortened chain; from then on it is the truth checkpoints defend.
    after = make_checkpoint("test")
    assert after.count == 5 and verify_chain().ok


# --- checkpoints that cannot be trusted ---------------------------------------------------------


def test_a_checkpoint_whose_signature_fails_is_itself_reported(checkpoint_dir):
    _events(2)
    make_checkpoint("test")
    second = make_checkpoint("test")
    path = checkpoint_dir / "checkpoints.jsonl"
    lines = path.read_bytes().splitlines()
    line = json.loads(lines[1])
    statement = json.loads(base64.b64decode(line["envelope"]["payload"]))
    statement["count"] = 2  # claims fewer events, keeps the old signature
    line["envelope"]["payload"] = base64.b64encode(canonical_json(statement)).decode()
    path.write_bytes(lines[0] + b"\n" + canonical_json(line) + b"\n")
    keyid = AuditKey.objects.get().keyid[:12] + "…"
    report = verify_chain()
    assert not report.ok and report.broken_seq is None
    claimed = f"checkpoint #2 of {time(second)} (log line 2)"
    assert report.reason == f"{claimed} cannot be trusted: its signature does not verify with audit key {keyid}"
    assert f"checkpoint #2 of {time(second)} (database) is in the database but not in the log" in report.notes[0]
    code, _, err = command()
    assert code == 1 and f"Audit chain not verified: {claimed} cannot be trusted" in err


def test_a_checkpoint_signed_by_another_key_is_reported(checkpoint_dir):
    make_checkpoint("test")
    stranger = Ed25519PrivateKey.generate()
    head = AuditChainHead.objects.get()
    forged = sign_envelope(
        Statement(2, head.last_seq, head.last_hash, "2030-01-01T00:00:00Z").payload(),
        CHECKPOINT_PAYLOAD_TYPE,
        [stranger],
    )
    with (checkpoint_dir / "checkpoints.jsonl").open("ab") as log:
        log.write(canonical_json({"envelope": json.loads(forged), "public_key": "00" * 32}) + b"\n")
    report = verify_chain()
    assert not report.ok and "cannot be trusted: signed by" in report.reason
    assert "which is not an audit key of this Steward" in report.reason


def test_a_log_that_cannot_be_read_stops_the_verification_with_a_clear_error(checkpoint_dir):
    make_checkpoint("test")
    path = checkpoint_dir / "checkpoints.jsonl"
    path.unlink()
    path.mkdir()  # something that is not a readable file where the log should be
    code, _, err = command()
    assert code == 1 and f"Audit chain not verified: cannot read the audit checkpoint log {path}" in err


# --- incremental verification -------------------------------------------------------------------


def test_incremental_verification_starts_from_the_last_verified_checkpoint():
    _events(5)
    first = make_checkpoint("test")  # #6
    verification = verify_recent()
    assert (verification.ok, verification.from_seq, verification.through_seq) == (True, 1, 6)
    assert verification.checkpoint == first
    _events(3, start=5)
    second = make_checkpoint("test")  # #9
    _events(1, start=8)
    with CaptureQueriesContext(connection):
        verification = verify_recent()
    assert (verification.ok, verification.from_seq, verification.through_seq) == (True, 7, 10)
    assert verification.checkpoint == second and verification.checkpoints_checked == 1
    assert verification.through_hash == AuditEvent.objects.get(seq=10).hash


def test_incremental_verification_finds_a_rewrite_below_its_checkpoint():
    _events(5)
    checkpoint = make_checkpoint("test")  # #6
    assert verify_recent().ok
    with triggers_off():
        rewrite_from(2, "rewritten")
    verification = verify_recent()
    name = f"checkpoint #1 of {time(checkpoint)} (database)"
    assert not verification.ok and verification.proved_by == name and verification.broken_seq == 1
    assert f"but {name} signed {checkpoint.head[:16]}…: events #1–#6 were rewritten" in verification.reason


def test_incremental_verification_finds_a_cut_tail():
    _events(5)
    checkpoint = make_checkpoint("test")  # #6
    assert verify_recent().ok
    with triggers_off() as cursor:
        cursor.execute("DELETE FROM audits_auditevent WHERE seq > 3")
        reset_head(cursor, 3)
    verification = verify_recent()
    name = f"checkpoint #1 of {time(checkpoint)} (database)"
    assert not verification.ok and verification.broken_seq == 4
    assert verification.reason == f"the chain ends at #3, but {name} counted 6 events: events #4–#6 were removed"


# --- when checkpoints are made ------------------------------------------------------------------


def publish_again(world, bob, carol, alice):
    change = start_change(world["policy_set"], bob, "again", "", ROUTED_POLICY)
    change.submit(bob)
    change.review(carol, "approve", "ok")
    return publish(change, alice)


def test_publishing_and_re_signing_make_a_checkpoint_that_counts_them(
    world, alice, bob, carol, checkpoint_dir, django_capture_on_commit_callbacks
):
    assert not AuditCheckpoint.objects.exists()  # the world's v1 was published in a transaction never committed
    with django_capture_on_commit_callbacks(execute=True):
        version = publish_again(world, bob, carol, alice)
    published = AuditEvent.objects.get(action="policy.publish", object_id=str(version.pk))
    checkpoint = AuditCheckpoint.objects.get()
    assert checkpoint.reason == "production v2 published"
    assert checkpoint.count == head_seq() >= published.seq
    with django_capture_on_commit_callbacks(execute=True):
        resigned = resign(world["policy_set"])
    latest = AuditCheckpoint.objects.first()
    assert latest.reason == "production v3 re-signed" and resigned.number == 3
    assert AuditEvent.objects.get(action="policy.re-sign").seq <= latest.count == head_seq()
    assert [line["envelope"] for line in log_lines(checkpoint_dir)] == [
        json.loads(bytes(c.envelope)) for c in (checkpoint, latest)
    ]


def test_a_checkpoint_that_cannot_be_written_never_fails_the_publish(
    world, alice, bob, carol, checkpoint_dir, django_capture_on_commit_callbacks, caplog
):
    checkpoint_dir.parent.mkdir(parents=True, exist_ok=True)
    checkpoint_dir.write_text("not a directory")
    with django_capture_on_commit_callbacks(execute=True):
        version = publish_again(world, bob, carol, alice)
    assert version.number == 2 and world["policy_set"].current_version() == version
    assert not AuditCheckpoint.objects.exists()
    assert "cannot write the audit checkpoint log" in caplog.text


def test_the_beat_schedule_checkpoints_and_verifies(settings):
    schedule = settings.CELERY_BEAT_SCHEDULE
    assert schedule["audit-checkpoint"] == {"task": "audits.make_checkpoint", "schedule": 600}
    assert schedule["audit-verify"] == {"task": "audits.verify_recent", "schedule": 600}
    assert schedule["audit-verify-full"] == {"task": "audits.verify_full", "schedule": 24 * 3600}
    assert {tasks.checkpoint.name, tasks.verify_since_last_checkpoint.name, tasks.verify_whole_chain.name} == {
        "audits.make_checkpoint",
        "audits.verify_recent",
        "audits.verify_full",
    }


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_the_beat_tasks_checkpoint_and_verify_on_a_real_worker(checkpoint_dir):
    _events(3)
    expected = head_seq() + 1  # and the audit key's event
    with celery_worker(concurrency=1, STEWARD_AUDIT_CHECKPOINT_DIR=str(checkpoint_dir)):
        number = app.send_task("audits.make_checkpoint").get(timeout=30)
        result = app.send_task("audits.verify_recent").get(timeout=30)
    checkpoint = AuditCheckpoint.objects.get(number=number)
    assert (checkpoint.count, checkpoint.reason) == (expected, "scheduled")
    assert log_lines(checkpoint_dir)[0]["envelope"] == json.loads(bytes(checkpoint.envelope))
    assert result == {"ok": True, "through_seq": expected, "reason": ""}
    verification = AuditVerification.objects.get()
    assert (verification.kind, verification.ok, verification.checkpoint) == ("incremental", True, checkpoint)


# --- the API --------------------------------------------------------------------------------------


def test_the_api_serves_verifiable_checkpoints_to_every_role(alice, bob, dave, erin, client_for, checkpoint_dir):
    _events(2)
    made = [make_checkpoint("test"), make_checkpoint("test")]
    _, raw = ApiToken.issue(dave, "copies")
    response = Client().get("/api/v1/audit/checkpoints", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200
    body = response.json()
    [key] = body["keys"]
    assert key == {"keyid": AuditKey.objects.get().keyid, "keytype": "ed25519", "public_key": key["public_key"]}
    assert body["payload_type"] == CHECKPOINT_PAYLOAD_TYPE and body["next"] is None
    assert [c["number"] for c in body["checkpoints"]] == [1, 2]
    for item, checkpoint, line in zip(body["checkpoints"], made, log_lines(checkpoint_dir), strict=True):
        statement = verify_with_cryptography(item["envelope"], key["public_key"])
        assert json.loads(item["statement"]) == statement
        assert (
            (statement["count"], statement["head"])
            == (checkpoint.count, checkpoint.head)
            == (
                item["count"],
                item["head"],
            )
        )
        assert item["keyid"] == key["keyid"] and item["envelope"]["signatures"][0]["sig"] == item["signature"]
        assert item["envelope"] == line["envelope"]  # what the log outside the database holds
    assert [c["number"] for c in client_for(alice).get("/api/v1/audit/checkpoints?after=1").json()["checkpoints"]] == [
        2
    ]
    assert client_for(bob).get("/api/v1/audit/checkpoints").status_code == 200
    assert client_for(erin).get("/api/v1/audit/checkpoints").status_code == 403
    anonymous = Client().get("/api/v1/audit/checkpoints")
    assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"] == "Bearer"


# "²" and "٣" are digits to str.isdigit() but not to int(): schemathesis found the 500 they caused.
@pytest.mark.parametrize("after", ["x", "-1", "1.5", "9" * 30, "²", "٣", "1²"])
def test_a_bad_after_is_a_clear_400(dave, client_for, after):
    response = client_for(dave).get("/api/v1/audit/checkpoints", {"after": after})
    assert response.status_code == 400
    assert response.json() == {"after": ["Must be a checkpoint number: a whole number, 0 or more."]}


def test_checkpoints_are_only_read_through_the_api(alice, client_for):
    response = client_for(alice).post("/api/v1/audit/checkpoints", {}, content_type="application/json")
    assert response.status_code == 405 and "detail" in response.json()
    assert not AuditCheckpoint.objects.exists()


# --- the audit page -----------------------------------------------------------------------------


def test_the_audit_page_shows_the_last_verification_without_walking_the_chain(dave, client_for):
    client = client_for(dave)
    _events(3)
    make_checkpoint("test")
    verify_recent()
    client.get("/audit/")  # warm: sessions, content types
    with CaptureQueriesContext(connection) as few:
        assert client.get("/audit/").status_code == 200
    _events(120, start=3)
    checkpoint = make_checkpoint("test")
    verification = verify_recent()
    with CaptureQueriesContext(connection) as many:
        body = client.get("/audit/").content.decode()
    assert len(many) == len(few)
    # Events are read a page at a time (LIMIT); no query reads every event's hash.
    walks = [
        q for q in many.captured_queries if '"audits_auditevent"."prev_hash"' in q["sql"] and "LIMIT" not in q["sql"]
    ]
    assert not walks
    assert (
        f"<strong>Chain intact</strong> up to #{checkpoint.count}, matching signed checkpoint #2 of "
        f"{checkpoint.made_at:%Y-%m-%d %H:%M:%S} UTC." in body
    )
    assert f"Last verified {verification.finished_at:%Y-%m-%d %H:%M:%S} UTC (incremental" in body


def test_the_audit_page_names_the_checkpoint_that_proves_a_break(dave, client_for):
    _events(5)
    checkpoint = make_checkpoint("test")
    with triggers_off():
        rewrite_from(4, "rewritten")
    verify_recent()
    body = client_for(dave).get("/audit/").content.decode()
    assert 'class="chain-status chain-broken"' in body and "Chain broken at #1:</strong> event #6 has hash" in body
    assert f"Proved by checkpoint #1 of {time(checkpoint)} (database, log line 1)." in body
