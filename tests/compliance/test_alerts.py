"""The daily compliance sweep: expiring certifications and approved cells that became unusable."""

from __future__ import annotations

import datetime as dt

import pytest

from compliance.alerts import record_alerts
from compliance.models import (
    AlertKind,
    Certification,
    CertificationHolding,
    ComplianceAlert,
    DataClassification,
    MatrixCell,
)
from registry.models import Status

from ..factories import make_model, make_provider, make_version

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 11, 28, 6, 0, tzinfo=dt.UTC)


@pytest.fixture
def setup(alice, carol, bob):
    provider = make_provider(name="Acme AI", slug="acme")
    iso = Certification.objects.get(slug="iso27001")
    holding = CertificationHolding.objects.create(
        provider=provider,
        certification=iso,
        valid_from=dt.date(2025, 12, 1),
        valid_until=dt.date(2026, 12, 10),
        evidence_url="https://trust.example.com/iso.pdf",
        recorded_by=alice,
    )
    internal = DataClassification.objects.create(slug="internal", name="Internal", level=1)
    internal.required_certifications.set([iso])
    version = make_version(bob, model=make_model(provider=provider), status=Status.APPROVED)
    cell = MatrixCell.for_pair(version, internal)
    cell.approve(carol, "ISO certified")
    return holding, cell


def test_expiring_certification_and_unusable_cell_are_recorded_once(setup, alice, client_for):
    holding, cell = setup
    assert record_alerts(NOW) == {"opened": 1, "resolved": 0, "open": 1}
    alert = ComplianceAlert.objects.get()
    assert alert.kind == AlertKind.CERTIFICATION_EXPIRING
    assert alert.message == "ISO/IEC 27001 of Acme AI expires on 2026-12-10 (in 12 days)"
    assert record_alerts(NOW)["opened"] == 0  # idempotent
    page = client_for(alice).get("/").content.decode()
    assert "ISO/IEC 27001 of Acme AI expires on 2026-12-10" in page

    after = NOW + dt.timedelta(days=13)
    result = record_alerts(after)
    kinds = set(ComplianceAlert.objects.filter(resolved_at__isnull=True).values_list("kind", flat=True))
    assert kinds == {AlertKind.CERTIFICATION_EXPIRED, AlertKind.CELL_UNUSABLE}
    assert result["opened"] == 2 and result["resolved"] == 1
    unusable = ComplianceAlert.objects.get(kind=AlertKind.CELL_UNUSABLE)
    assert "ISO/IEC 27001 expired on 2026-12-10" in unusable.message


def test_renewal_resolves_the_alerts(setup, alice):
    holding, cell = setup
    record_alerts(NOW + dt.timedelta(days=13))
    CertificationHolding.objects.create(
        provider=holding.provider,
        certification=holding.certification,
        valid_from=dt.date(2026, 12, 1),
        valid_until=dt.date(2027, 12, 10),
        evidence_url="https://trust.example.com/iso-2027.pdf",
        recorded_by=alice,
    )
    record_alerts(NOW + dt.timedelta(days=14))
    assert not ComplianceAlert.objects.filter(resolved_at__isnull=True).exists()


def test_the_beat_schedule_runs_the_sweep_daily(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["compliance-alerts"]
    assert entry["task"] == "compliance.record_alerts" and entry["schedule"] == 24 * 3600
    from compliance.tasks import record_compliance_alerts

    assert record_compliance_alerts.name == "compliance.record_alerts"
