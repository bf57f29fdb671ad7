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


def test_dashboard_alerts_link_to_the_cell_or_the_holding_they_are_about(
    setup, alice, client_for, django_assert_max_num_queries
):
    holding, cell = setup
    record_alerts(NOW + dt.timedelta(days=13))  # the holding expired, so the cell is unusable
    ComplianceAlert.objects.create(kind=AlertKind.EVALUATION_FAILED, message="acme/model@1 failed its gate")
    client = client_for(alice)
    page = client.get("/").content.decode()
    expired = ComplianceAlert.objects.get(kind=AlertKind.CERTIFICATION_EXPIRED)
    cell_url = f"/compliance/matrix/cell/{cell.model_version_id}/internal/"
    assert f'<a href="/compliance/certifications/#holding-{holding.pk}">{expired.message}</a>' in page
    assert f'<a href="{cell_url}">' in page
    assert "</span> acme/model@1 failed its gate <span" in page  # about neither: no link
    assert client.get(cell_url).status_code == 200
    assert f'id="holding-{holding.pk}"' in client.get("/compliance/certifications/").content.decode()

    # The links cost no query per alert.
    def unusable_cell_alert(slug: str) -> None:
        other = DataClassification.objects.create(slug=slug, name=slug.upper(), level=1)
        other_cell = MatrixCell.for_pair(cell.model_version, other)
        other_cell.save()
        ComplianceAlert.objects.create(kind=AlertKind.CELL_UNUSABLE, message=f"{slug} unusable", cell=other_cell)

    unusable_cell_alert("c0")
    with django_assert_max_num_queries(80) as one:
        client.get("/")
    for number in range(1, 6):
        unusable_cell_alert(f"c{number}")
    with django_assert_max_num_queries(len(one.captured_queries)):
        assert client.get("/").content.decode().count("/compliance/matrix/cell/") >= 7


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
