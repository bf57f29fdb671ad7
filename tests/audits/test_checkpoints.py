"""The audit trail anchored outside the database: the triggers that guard the whole chain, signed
checkpoints kept in the database and in a log directory, and verification against them.

The attacks are made as the database superuser would make them, with triggers off
(``SET LOCAL session_replication_role = replica`` inside the test's transaction), recomputing hashes
with Steward's own ``event_hash``.
"""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from audits.events import GENESIS, record
from audits.models import AuditChainHead, AuditEvent

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
