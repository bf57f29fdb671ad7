"""POST /api/v1/decisions: validation per record, idempotence, storage rules, violations, retention."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest
from django.utils import timezone

from audits.decisions import check_escalation_rates, remove_expired_content
from audits.models import AuditEvent, DecisionContent, DecisionRecord, Violation, ViolationKind

from .conftest import decision

pytestmark = pytest.mark.django_db


def post(client, token: str, records, raw: bytes | None = None):
    body = raw if raw is not None else json.dumps({"records": records})
    return client.post("/api/v1/decisions", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")


def test_batch_is_stored_and_ingest_is_idempotent(world, client):
    records = [decision(i) for i in range(5)]
    first = post(client, world["token"], records)
    assert first.status_code == 200, first.content
    assert first.json() | {"errors": []} == {
        "accepted": 5,
        "duplicates": 0,
        "rejected": 0,
        "violations": 0,
        "errors": [],
    }
    again = post(client, world["token"], records + [decision(2)])
    assert again.json()["accepted"] == 0 and again.json()["duplicates"] == 6
    assert DecisionRecord.objects.count() == 5
    stored = DecisionRecord.objects.get(request_id="req-3")
    assert stored.provider == "acme" and stored.policy_set == "production"
    assert stored.read_content().input_content.startswith("Ticket")


def test_wrong_types_get_per_record_errors_and_the_rest_is_accepted(world, client):
    records = [
        decision(1),
        decision(2, latency_ms="fast"),
        decision(3, occurred_at="yesterday"),
        decision(4, escalated="no", request_id=""),
        "not an object",
        decision(5),
    ]
    body = post(client, world["token"], records).json()
    assert body["accepted"] == 2 and body["rejected"] == 4
    errors = {e["index"]: e["errors"] for e in body["errors"]}
    assert list(errors[1]) == ["latency_ms"]
    assert list(errors[2]) == ["occurred_at"]
    assert set(errors[3]) == {"request_id", "escalated"}
    assert "non_field_errors" in errors[4]
    assert set(DecisionRecord.objects.values_list("request_id", flat=True)) == {"req-1", "req-5"}


def test_oversized_batches_and_bodies_answer_413(world, client, monkeypatch):
    response = post(client, world["token"], [decision(i) for i in range(1001)])
    assert response.status_code == 413 and "at most 1000" in response.json()["records"][0]
    monkeypatch.setattr("audits.api.MAX_BODY_BYTES", 2000)
    response = post(client, world["token"], [decision(i) for i in range(20)])
    assert response.status_code == 413
    assert not DecisionRecord.objects.exists()


@pytest.mark.parametrize("raw", [b"not json", b"[]", b'{"records": "x"}', b"{}"])
def test_malformed_bodies_answer_400(world, client, raw):
    assert post(client, world["token"], None, raw=raw).status_code == 400


def test_tokens(world, client):
    assert post(client, "swr_nope", [decision(1)]).status_code == 401
    assert client.post("/api/v1/decisions", "{}", content_type="application/json").status_code == 401
    response = post(client, world["token"], [decision(1, policy_set="staging")])
    assert response.status_code == 403
    assert not DecisionRecord.objects.exists()


def test_digest_only_classifications_keep_no_content(world, client):
    post(client, world["token"], [decision(1, classification="secret", input="patient 42", output="ok")])
    stored = DecisionRecord.objects.get()
    assert not DecisionContent.objects.filter(decision_id=stored.pk).exists() and not stored.content_stored
    assert stored.input_sha256 == hashlib.sha256(b"patient 42").hexdigest()
    assert stored.output_sha256 == hashlib.sha256(b"ok").hexdigest()


def _kinds(request_id: str) -> set[str]:
    return set(Violation.objects.filter(decision__request_id=request_id).values_list("kind", flat=True))


def test_each_violation_kind_is_found_on_ingest(world, client):
    from portfolio.models import PolicyRelease

    release = PolicyRelease.objects.get()
    after_expiry = (release.expires + dt.timedelta(hours=1)).isoformat()
    records = [
        decision(1),  # fine: the primary
        decision(2, model="beta/small-b@1", fallback_used=True),  # fine: a fallback
        decision(3, model="acme/large-a@1", escalated=True),  # fine: the escalation target
        decision(4, model="beta/other@1"),  # approved and usable, but not in the route
        decision(5, task="contract-review"),  # no route: default deny
        decision(6, policy_version=7),  # never published
        decision(7, occurred_at=after_expiry),  # after the policy expired
        decision(8, model="nobody/ghost@1"),  # not in the registry
        decision(9, classification="secret", model="acme/small-a@1"),  # no cell for secret
    ]
    body = post(client, world["token"], records).json()
    assert body["accepted"] == 9
    assert _kinds("req-1") == _kinds("req-2") == _kinds("req-3") == set()
    assert _kinds("req-4") == {ViolationKind.MODEL_NOT_ALLOWED}
    assert _kinds("req-5") == {ViolationKind.MODEL_NOT_ALLOWED}
    assert _kinds("req-6") == {ViolationKind.UNKNOWN_POLICY}
    assert ViolationKind.EXPIRED_POLICY in _kinds("req-7")
    assert _kinds("req-8") == {ViolationKind.MODEL_NOT_ALLOWED, ViolationKind.NOT_USABLE}
    assert ViolationKind.NOT_USABLE in _kinds("req-9")
    detail = Violation.objects.get(decision__request_id="req-4").detail
    assert "not beta/other@1" in detail
    assert DecisionRecord.objects.filter(has_violation=True).count() == 6


def test_a_suspended_cell_makes_decisions_violations(world, client, carol):
    from compliance.models import MatrixCell

    MatrixCell.objects.get(model_version=world["versions"]["a"], classification__slug="internal").suspend(
        carol, "incident"
    )
    post(client, world["token"], [decision(1)])
    assert _kinds("req-1") == {ViolationKind.NOT_USABLE}
    assert "suspended by carol" in Violation.objects.get().detail


def test_escalation_rate_above_the_cap_is_found_by_the_scheduled_check(world, client):
    now = timezone.now()
    records = [
        decision(
            i,
            occurred_at=(now - dt.timedelta(minutes=5)).isoformat(),
            escalated=i % 5 == 0,
            model="acme/large-a@1" if i % 5 == 0 else "acme/small-a@1",
        )
        for i in range(40)
    ]
    post(client, world["token"], records)
    assert check_escalation_rates(now) == 1  # 8 of 40 = 2000 bp > 1000 bp
    violation = Violation.objects.get(kind=ViolationKind.ESCALATION_RATE)
    assert "8 of 40 decisions (2000 bp)" in violation.detail and "cap of 1000 bp" in violation.detail
    assert check_escalation_rates(now) == 0  # once per window


def test_retention_removes_content_but_keeps_digests_and_records_it(world, client):
    old = (timezone.now() - dt.timedelta(days=45)).isoformat()
    from compliance.models import DataClassification

    DataClassification.objects.filter(slug="internal").update(retention_days=30)
    post(client, world["token"], [decision(1, occurred_at=old), decision(2)])
    assert remove_expired_content() == {"internal": 1}
    old_record, new_record = (
        DecisionRecord.objects.get(request_id="req-1"),
        DecisionRecord.objects.get(request_id="req-2"),
    )
    assert not DecisionContent.objects.filter(decision_id=old_record.pk).exists()
    assert old_record.input_sha256 and old_record.content_removed_at
    assert new_record.read_content().input_content
    event = AuditEvent.objects.filter(action="decisions.retention").latest("seq")
    assert event.after["removed"] == {"internal": 1}
