"""The audit trail: hash-chained, append-only in the database, and verified end to end."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from audits.events import record
from audits.models import AuditEvent
from audits.verification import verify_chain
from registry.models import ModelVersion
from steward.models import ApiToken

from ..factories import version_fields

pytestmark = pytest.mark.django_db


def _events(n: int) -> list[AuditEvent]:
    return [
        record("test.step", object_type="test", object_id=str(i), after={"i": i}, comment=f"step {i}") for i in range(n)
    ]


def test_events_form_a_chain_that_verifies():
    events = _events(5)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert all(b.prev_hash == a.hash for a, b in zip(events, events[1:], strict=False))
    report = verify_chain()
    assert report.ok and report.checked == 5
    out = io.StringIO()
    call_command("verify_audit_chain", stdout=out)
    assert "Audit chain intact: 5 events verified." in out.getvalue()


def test_update_and_delete_through_the_orm_fail():
    [event] = _events(1)
    event.comment = "rewritten"
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        event.save()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(comment="rewritten")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()
    assert AuditEvent.objects.get(pk=event.pk).comment == "step 0"


def test_a_row_changed_behind_the_triggers_back_is_found():
    _events(4)
    with connection.cursor() as cursor:
        # A database superuser can switch the trigger off; the hash chain still tells.
        cursor.execute("ALTER TABLE audits_auditevent DISABLE TRIGGER audits_auditevent_append_only")
        cursor.execute("UPDATE audits_auditevent SET comment = 'nothing to see' WHERE seq = 3")
        cursor.execute("ALTER TABLE audits_auditevent ENABLE TRIGGER audits_auditevent_append_only")
    report = verify_chain()
    assert not report.ok and report.broken_seq == 3
    err = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("verify_audit_chain", stdout=io.StringIO(), stderr=err)
    assert exited.value.code == 1
    assert "Audit chain broken at event #3: event #3 was changed after it was written." in err.getvalue()


def test_a_deleted_row_is_found():
    _events(4)
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audits_auditevent DISABLE TRIGGER audits_auditevent_append_only")
        cursor.execute("DELETE FROM audits_auditevent WHERE seq = 2")
        cursor.execute("ALTER TABLE audits_auditevent ENABLE TRIGGER audits_auditevent_append_only")
    report = verify_chain()
    assert not report.ok and report.broken_seq == 3 and "#2 is missing" in report.reason


def test_governance_actions_are_recorded_with_actor_before_after_and_comment(alice, bob, mistral_large, client):
    version = ModelVersion.propose(bob, **version_fields(mistral_large, version="2411"))
    version.approve(alice, "Meets the bar.")
    proposed, approved = AuditEvent.objects.filter(
        object_id=str(version.pk), object_type="registry.modelversion"
    ).order_by("seq")
    assert (proposed.action, proposed.actor_name) == ("model_version.propose", "bob")
    assert proposed.after["ref"] == "mistral/mistral-large@2411"
    assert (approved.action, approved.actor_name, approved.comment) == (
        "model_version.approve",
        "alice",
        "Meets the bar.",
    )
    assert (approved.before, approved.after) == ({"status": "proposed"}, {"status": "approved"})
    ApiToken.issue(bob, "ci")
    assert AuditEvent.objects.filter(action="api_token.issue", actor_name="bob").exists()
    assert verify_chain().ok


def test_sign_ins_and_failed_sign_ins_are_recorded(bob, client):
    client.post("/login/", {"username": "bob", "password": "wrong"})
    client.post("/login/", {"username": "bob", "password": "correct-horse-battery"})
    failed = AuditEvent.objects.get(action="auth.sign_in_failed")
    assert failed.object_repr == "bob" and failed.actor_id is None
    signed_in = AuditEvent.objects.get(action="auth.sign_in")
    assert signed_in.actor_name == "bob" and signed_in.request_id


def test_request_id_is_carried_from_the_request(bob, client):
    response = client.post(
        "/login/", {"username": "bob", "password": "correct-horse-battery"}, HTTP_X_REQUEST_ID="req-1234567890"
    )
    assert response["X-Request-ID"] == "req-1234567890"
    assert AuditEvent.objects.get(action="auth.sign_in").request_id == "req-1234567890"
