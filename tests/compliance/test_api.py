"""The compliance REST API: the check endpoint, cell actions with separation of duties, and bad input."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from compliance.models import Certification, CertificationHolding, DataClassification, MatrixCell
from registry.models import Status
from steward.roles import ENGINEERS

from ..factories import make_model, make_provider, make_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def pii_eu(db):
    classification = DataClassification.objects.create(
        slug="pii-eu", name="EU personal data", level=3, allowed_regions=["eu-*"]
    )
    classification.required_certifications.set([Certification.objects.get(slug="gdpr-dpa")])
    return classification


@pytest.fixture
def eu_version(bob, alice, pii_eu):
    provider = make_provider(name="Mistral AI", slug="mistral")
    CertificationHolding.objects.create(
        provider=provider,
        certification=Certification.objects.get(slug="gdpr-dpa"),
        valid_from=dt.date(2025, 1, 1),
        valid_until=dt.date(2030, 1, 1),
        evidence_url="https://trust.example.com/dpa.pdf",
        recorded_by=alice,
    )
    return make_version(
        bob,
        model=make_model(provider=provider, slug="mistral-large"),
        version="2411",
        status=Status.APPROVED,
        region="eu-west-1",
    )


def post(client, url: str, data: dict):
    return client.post(url, data, content_type="application/json")


def address(version, classification, **extra) -> dict:
    return {"model": version.ref, "classification": classification.slug, **extra}


def test_check_endpoint_answers_usable_and_reasons(eu_version, pii_eu, alice, bob, client_for):
    url = f"/api/v1/compliance/check?model={eu_version.ref}&classification=pii-eu"
    body = client_for(bob).get(url).json()
    assert body["usable"] is False
    assert body["reasons"] == ["not approved for this classification (not requested)"]
    post(client_for(alice), "/api/v1/matrix-cells/approve", address(eu_version, pii_eu, justification="DPA signed"))
    assert client_for(bob).get(url).json() == {"usable": True, "reasons": [], "state": "usable"}
    later = client_for(bob).get(url + "&at=2030-06-01T00:00:00Z").json()
    assert later["usable"] is False and later["reasons"] == ["GDPR DPA expired on 2030-01-01"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("model=nope/nothing@1&classification=pii-eu", "model"),
        ("model={ref}&classification=unknown", "classification"),
        ("model={ref}&classification=pii-eu&at=yesterday", "at"),
        ("model={ref}&classification=pii-eu&at=2026-11-28T12:00:00", "at"),
        ("classification=pii-eu", "model"),
    ],
)
def test_check_endpoint_bad_input(eu_version, bob, client_for, query, field):
    response = client_for(bob).get("/api/v1/compliance/check?" + query.format(ref=eu_version.ref))
    assert response.status_code == 400
    assert field in response.json()


def test_check_endpoint_needs_a_session_or_token(client):
    assert client.get("/api/v1/compliance/check?model=x&classification=y").status_code == 401


def test_request_then_another_officer_approves(eu_version, pii_eu, alice, bob, client_for):
    response = post(client_for(bob), "/api/v1/matrix-cells/request", address(eu_version, pii_eu, note="EU triage"))
    assert response.status_code == 200 and response.json()["state"] == "awaiting"
    response = post(
        client_for(alice), "/api/v1/matrix-cells/approve", address(eu_version, pii_eu, justification="DPA reviewed")
    )
    assert response.status_code == 200
    assert response.json()["usable"] is True and response.json()["decided_by"] == "alice"


def test_requester_cannot_approve_own_request_over_http(eu_version, pii_eu, alice, client_for):
    alice.groups.add(Group.objects.get(name=ENGINEERS))
    client = client_for(alice)
    post(client, "/api/v1/matrix-cells/request", address(eu_version, pii_eu, note="mine"))
    response = post(client, "/api/v1/matrix-cells/approve", address(eu_version, pii_eu, justification="self"))
    assert response.status_code == 403
    assert "cannot approve it" in response.json()["detail"]
    assert MatrixCell.objects.get().decision == "requested"


@pytest.mark.parametrize("action", ["approve", "deny", "suspend", "resume"])
@pytest.mark.parametrize("who", ["bob", "dave"])
def test_engineers_and_auditors_cannot_call_officer_actions(eu_version, pii_eu, bob, dave, client_for, action, who):
    user = {"bob": bob, "dave": dave}[who]
    body = address(eu_version, pii_eu, justification="x", reason="x")
    assert post(client_for(user), f"/api/v1/matrix-cells/{action}", body).status_code == 403
    assert not MatrixCell.objects.exists()


def test_officers_cannot_request_and_auditors_cannot_either(eu_version, pii_eu, alice, dave, client_for):
    for user in (alice, dave):
        assert post(client_for(user), "/api/v1/matrix-cells/request", address(eu_version, pii_eu)).status_code == 403


def test_suspend_resume_deny_and_expiry_over_http(eu_version, pii_eu, alice, carol, client_for):
    officer = client_for(alice)
    soon = (timezone.now() + dt.timedelta(days=1)).isoformat()
    assert post(
        officer, "/api/v1/matrix-cells/approve", address(eu_version, pii_eu, justification="ok", expires_at=soon)
    ).json()["usable"]
    response = post(client_for(carol), "/api/v1/matrix-cells/suspend", address(eu_version, pii_eu, reason="incident"))
    assert response.json()["state"] == "suspended" and not response.json()["usable"]
    again = post(client_for(carol), "/api/v1/matrix-cells/suspend", address(eu_version, pii_eu, reason="again"))
    assert again.status_code == 400 and "decision" in again.json()
    assert post(officer, "/api/v1/matrix-cells/resume", address(eu_version, pii_eu, reason="closed")).json()["usable"]
    url = f"/api/v1/compliance/check?model={eu_version.ref}&classification=pii-eu"
    after_expiry = (timezone.now() + dt.timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = officer.get(f"{url}&at={after_expiry}").json()
    assert body["usable"] is False and body["state"] == "expired"
    response = post(officer, "/api/v1/matrix-cells/deny", address(eu_version, pii_eu, justification="no longer needed"))
    assert response.json()["state"] == "denied"
    assert "denied by alice: no longer needed" in response.json()["reasons"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"justification": ""}, "justification"),
        ({"justification": "ok", "expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),
        ({"justification": "ok", "expires_at": "not a time"}, "expires_at"),
    ],
)
def test_approve_bad_input_changes_nothing(eu_version, pii_eu, alice, client_for, body, field):
    response = post(client_for(alice), "/api/v1/matrix-cells/approve", address(eu_version, pii_eu, **body))
    assert response.status_code == 400 and field in response.json()
    assert not MatrixCell.objects.exists()


def test_approving_an_ineligible_cell_is_refused_with_reasons(bob, alice, pii_eu, client_for):
    us = make_version(bob, status=Status.APPROVED, region="us-east-1")
    response = post(client_for(alice), "/api/v1/matrix-cells/approve", address(us, pii_eu, justification="please"))
    assert response.status_code == 400
    [message] = response.json()["eligibility"]
    assert "no GDPR DPA" in message and "region us-east-1 not allowed for pii-eu" in message
    assert not MatrixCell.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "nope/none@1"}, "model"),
        ({"classification": "secret"}, "classification"),
    ],
)
def test_unknown_refs_are_named(eu_version, pii_eu, alice, client_for, body, field):
    data = {**address(eu_version, pii_eu, justification="ok"), **body}
    response = post(client_for(alice), "/api/v1/matrix-cells/approve", data)
    assert response.status_code == 400 and field in response.json()


def test_matrix_read_lists_verdicts(eu_version, pii_eu, dave, client_for):
    body = client_for(dave).get("/api/v1/matrix-cells?provider=mistral").json()
    assert body["count"] == 1
    [cell] = body["results"]
    assert cell["model"] == eu_version.ref and cell["classification"] == "pii-eu" and cell["state"] == "not-requested"


def _holding(provider, **extra) -> dict:
    return {
        "certification": "iso27001",
        "provider": provider.slug,
        "valid_from": "2026-01-01",
        "valid_until": "2027-01-01",
        **extra,
    }


def test_officer_records_a_holding_with_a_pdf(alice, client_for):
    provider = make_provider(slug="acme")
    pdf = SimpleUploadedFile("iso.pdf", b"%PDF-1.4\n%...\n", content_type="application/pdf")
    response = client_for(alice).post("/api/v1/certification-holdings", {**_holding(provider), "evidence_file": pdf})
    assert response.status_code == 201, response.content
    holding = CertificationHolding.objects.get()
    assert holding.recorded_by == alice and holding.evidence_file.name.endswith(".pdf")


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"valid_until": "2025-01-01", "evidence_url": "https://x.example/r.pdf"}, "valid_until"),
        ({}, "evidence_url"),
        ({"evidence_file": ("x.exe", b"MZ\x90\x00")}, "evidence_file"),
        ({"evidence_file": ("fake.pdf", b"not a pdf at all")}, "evidence_file"),
        ({"evidence_file": ("big.pdf", b"%PDF-1.4" + b"0" * (10 * 1024 * 1024 + 1))}, "evidence_file"),
        ({"certification": "made-up", "evidence_url": "https://x.example/r.pdf"}, "certification"),
    ],
)
def test_bad_holdings_are_refused_and_nothing_saved(alice, client_for, extra, field):
    provider = make_provider(slug="acme")
    data = _holding(provider, **extra)
    if "evidence_file" in data:
        name, content = data["evidence_file"]
        data["evidence_file"] = SimpleUploadedFile(name, content)
    response = client_for(alice).post("/api/v1/certification-holdings", data)
    assert response.status_code in (400, 413)
    if response.status_code == 400:
        assert field in response.json(), response.json()
    assert not CertificationHolding.objects.exists()


def test_engineers_cannot_record_holdings(bob, client_for):
    provider = make_provider(slug="acme")
    response = client_for(bob).post(
        "/api/v1/certification-holdings", _holding(provider, evidence_url="https://x.example/r.pdf")
    )
    assert response.status_code == 403
