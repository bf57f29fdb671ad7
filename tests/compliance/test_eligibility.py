"""Eligibility and usability of matrix cells: certifications, overrides, residency and time."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from compliance.matrix import CellState, Matrix, check
from compliance.models import Certification, CertificationHolding, DataClassification, HoldingEffect, MatrixCell
from registry.models import Status

from ..factories import make_model, make_provider, make_version

pytestmark = pytest.mark.django_db

TODAY = dt.date(2026, 11, 28)
NOON = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def cert(slug: str) -> Certification:
    return Certification.objects.get(slug=slug)


def hold(
    holder,
    slug: str,
    valid_from=TODAY - dt.timedelta(days=300),
    valid_until=TODAY + dt.timedelta(days=60),
    effect=HoldingEffect.GRANTS,
    by=None,
) -> CertificationHolding:
    field = "provider" if holder.__class__.__name__ == "Provider" else "model_version"
    return CertificationHolding.objects.create(
        certification=cert(slug),
        effect=effect,
        valid_from=valid_from,
        valid_until=valid_until,
        evidence_url="https://trust.example.com/report.pdf",
        recorded_by=by,
        **{field: holder},
    )


@pytest.fixture
def phi(db) -> DataClassification:
    classification = DataClassification.objects.create(slug="phi", name="Protected health information", level=4)
    classification.required_certifications.set([cert("hipaa-baa"), cert("iso27001")])
    return classification


@pytest.fixture
def pii_eu(db) -> DataClassification:
    classification = DataClassification.objects.create(
        slug="pii-eu", name="Personal data (EU residency)", level=3, allowed_regions=["eu-*"]
    )
    classification.required_certifications.set([cert("gdpr-dpa")])
    return classification


@pytest.fixture
def provider(db):
    return make_provider(name="Acme AI", slug="acme")


@pytest.fixture
def version(provider, bob):
    return make_version(
        bob,
        model=make_model(provider=provider, slug="acme-large"),
        version="1",
        status=Status.APPROVED,
        region="us-east-1",
    )


def _reasons(version, classification, at=NOON):
    return Matrix([version], [classification], at).eligibility_reasons(version, classification)


@pytest.mark.parametrize(
    ("provider_holds", "override", "expected"),
    [
        # certification missing
        ([("iso27001", None)], None, ["no HIPAA BAA"]),
        ([], None, ["no HIPAA BAA", "no ISO/IEC 27001"]),
        # expired and not yet valid
        (
            [("hipaa-baa", None), ("iso27001", (dt.date(2025, 10, 1), dt.date(2026, 10, 1)))],
            None,
            ["ISO/IEC 27001 expired on 2026-10-01"],
        ),
        (
            [("hipaa-baa", None), ("iso27001", (dt.date(2027, 1, 1), dt.date(2028, 1, 1)))],
            None,
            ["ISO/IEC 27001 valid only from 2027-01-01"],
        ),
        # all held
        ([("hipaa-baa", None), ("iso27001", None)], None, []),
        # overridden: the version's deployment is outside the provider's BAA
        (
            [("hipaa-baa", None), ("iso27001", None)],
            ("hipaa-baa", HoldingEffect.REVOKES),
            ["HIPAA BAA does not cover this deployment (version override)"],
        ),
        # overridden: a dedicated deployment holds a BAA the provider lacks
        ([("iso27001", None)], ("hipaa-baa", HoldingEffect.GRANTS), []),
    ],
)
def test_certification_eligibility(provider, version, phi, alice, provider_holds, override, expected):
    for slug, dates in provider_holds:
        kwargs = {"valid_from": dates[0], "valid_until": dates[1]} if dates else {}
        hold(provider, slug, by=alice, **kwargs)
    if override:
        hold(version, override[0], effect=override[1], by=alice)
    assert _reasons(version, phi) == expected


@pytest.mark.parametrize(
    ("region", "expected"),
    [
        ("us-east-1", ["region us-east-1 not allowed for pii-eu"]),
        ("eu-west-1", []),
        ("eu-central-1", []),
    ],
)
def test_region_residency(provider, bob, pii_eu, alice, region, expected):
    hold(provider, "gdpr-dpa", by=alice)
    version = make_version(bob, model=make_model(provider=provider), status=Status.APPROVED, region=region)
    assert _reasons(version, pii_eu) == expected


def test_cell_usable_today_is_unusable_the_day_after_the_certification_expires(provider, version, phi, alice, carol):
    hold(provider, "hipaa-baa", valid_until=TODAY + dt.timedelta(days=10), by=alice)
    hold(provider, "iso27001", by=alice)
    cell = MatrixCell.for_pair(version, phi)
    cell.approve(carol, "BAA signed, reviewed by legal.")
    today = check(version, phi, NOON)
    assert today.usable and today.state == CellState.USABLE and today.reasons == []
    day_after = NOON + dt.timedelta(days=11)
    later = check(version, phi, day_after)
    assert not later.usable
    assert later.state == CellState.INELIGIBLE
    assert later.reasons == [f"HIPAA BAA expired on {(TODAY + dt.timedelta(days=10)).isoformat()}"]
    # Nobody edited the cell.
    assert MatrixCell.objects.get(pk=cell.pk).decision == "approved"


def test_usable_needs_every_condition(provider, version, pii_eu, alice, carol, bob):
    hold(provider, "gdpr-dpa", by=alice)
    version.region = "eu-west-1"
    version.save()
    assert check(version, pii_eu).state == CellState.NOT_REQUESTED
    cell = MatrixCell.for_pair(version, pii_eu)
    cell.request(bob, "needed for ticket triage in the EU")
    assert check(version, pii_eu).state == CellState.AWAITING
    cell.approve(alice, "DPA in place", expires_at=timezone.now() + dt.timedelta(days=30))
    assert check(version, pii_eu).usable
    # expiry of the approval
    assert check(version, pii_eu, timezone.now() + dt.timedelta(days=31)).state == CellState.EXPIRED
    # suspension and resumption
    cell.suspend(carol, "incident under investigation")
    verdict = check(version, pii_eu)
    assert verdict.state == CellState.SUSPENDED and not verdict.usable
    assert any(r.startswith("suspended by carol") for r in verdict.reasons)
    cell.resume(carol, "incident closed")
    assert check(version, pii_eu).usable
    # the version leaves "approved"
    version.deprecate(alice, "superseded")
    verdict = check(version, pii_eu)
    assert verdict.state == CellState.VERSION_NOT_APPROVED
    assert "model version is deprecated, not approved" in verdict.reasons


def test_approving_an_ineligible_cell_is_refused_with_reasons(version, phi, alice):
    cell = MatrixCell.for_pair(version, phi)
    with pytest.raises(ValidationError) as caught:
        cell.approve(alice, "please")
    [message] = caught.value.message_dict["eligibility"]
    assert "no HIPAA BAA" in message and "no ISO/IEC 27001" in message
    assert not MatrixCell.objects.exists()


def test_requester_cannot_approve_own_request(provider, version, pii_eu, alice, bob):
    from django.contrib.auth.models import Group
    from django.core.exceptions import PermissionDenied

    from steward.roles import ENGINEERS

    hold(provider, "gdpr-dpa", by=alice)
    version.region = "eu-west-1"
    version.save()
    alice.groups.add(Group.objects.get(name=ENGINEERS))
    cell = MatrixCell.for_pair(version, pii_eu)
    cell.request(alice, "mine")
    with pytest.raises(PermissionDenied):
        cell.approve(alice, "approving my own")
    assert MatrixCell.objects.get(pk=cell.pk).decision == "requested"


def test_expiry_in_the_past_is_refused(provider, version, pii_eu, alice):
    hold(provider, "gdpr-dpa", by=alice)
    version.region = "eu-west-1"
    version.save()
    cell = MatrixCell.for_pair(version, pii_eu)
    with pytest.raises(ValidationError) as caught:
        cell.approve(alice, "ok", expires_at=timezone.now() - dt.timedelta(hours=1))
    assert "expires_at" in caught.value.message_dict
    assert not MatrixCell.objects.exists()


@pytest.mark.parametrize("status", [Status.PROPOSED, Status.DEPRECATED])
def test_a_version_not_approved_shows_so_before_anyone_requests_a_cell(provider, version, pii_eu, alice, status):
    hold(provider, "gdpr-dpa", by=alice)
    version.region = "eu-west-1"
    version.status = status
    version.save()
    verdict = check(version, pii_eu)
    assert verdict.state == CellState.VERSION_NOT_APPROVED and not verdict.usable
    assert f"model version is {status}, not approved" in verdict.reasons
    version.status = Status.APPROVED
    version.save()
    assert check(version, pii_eu).state == CellState.NOT_REQUESTED
