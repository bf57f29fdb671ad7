"""The compliance sweep: certifications about to expire and approved cells that became unusable."""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.utils import timezone

from registry.evaluation.gates import failed_schedule
from registry.models import ModelVersion

from .matrix import Matrix
from .models import (
    EXPIRY_WARNING_DAYS,
    AlertKind,
    CellDecision,
    CertificationHolding,
    ComplianceAlert,
    DataClassification,
    MatrixCell,
)

# The kinds this sweep opens and resolves; others (failed evaluations) are resolved by people.
SWEPT_KINDS = (AlertKind.CERTIFICATION_EXPIRING, AlertKind.CERTIFICATION_EXPIRED, AlertKind.CELL_UNUSABLE)


def record_alerts(at: dt.datetime | None = None) -> dict[str, int]:
    """Open alerts for what needs attention at ``at`` and resolve those that no longer apply.

    Idempotent: running it twice on the same day opens nothing new.
    """
    at = at or timezone.now()
    today = at.astimezone(dt.UTC).date()
    wanted: dict[tuple[str, str, int], str] = {}

    holdings = CertificationHolding.objects.select_related("certification", "provider", "model_version").filter(
        valid_until__gte=today - dt.timedelta(days=EXPIRY_WARNING_DAYS),
        valid_until__lte=today + dt.timedelta(days=EXPIRY_WARNING_DAYS),
    )
    for holding in holdings:
        if holding.renewals().exists():
            continue
        if holding.valid_until < today:
            wanted[(AlertKind.CERTIFICATION_EXPIRED, "holding", holding.pk)] = (
                f"{holding.certification.name} of {holding.holder} expired on {holding.valid_until.isoformat()}"
            )
        else:
            days = (holding.valid_until - today).days
            wanted[(AlertKind.CERTIFICATION_EXPIRING, "holding", holding.pk)] = (
                f"{holding.certification.name} of {holding.holder} expires on {holding.valid_until.isoformat()} "
                f"(in {days} day{'s' if days != 1 else ''})"
            )

    approved = MatrixCell.objects.filter(decision=CellDecision.APPROVED, suspended_at__isnull=True)
    version_ids = set(approved.values_list("model_version_id", flat=True))
    classification_ids = set(approved.values_list("classification_id", flat=True))
    if version_ids:
        matrix = Matrix(
            ModelVersion.objects.with_related().filter(pk__in=version_ids),
            DataClassification.objects.filter(pk__in=classification_ids),
            at,
        )
        versions = {v.pk: v for v in matrix.versions}
        classifications = {c.pk: c for c in matrix.classifications}
        for cell in approved:
            verdict = matrix.verdict(versions[cell.model_version_id], classifications[cell.classification_id])
            if not verdict.usable:
                wanted[(AlertKind.CELL_UNUSABLE, "cell", cell.pk)] = (
                    f"{versions[cell.model_version_id].ref} x {classifications[cell.classification_id].slug} "
                    f"is no longer usable: {'; '.join(verdict.reasons)}"
                )

    opened = resolved = 0
    with transaction.atomic():
        open_alerts = {
            (a.kind, "holding" if a.holding_id else "cell", a.holding_id or a.cell_id): a
            for a in ComplianceAlert.objects.select_for_update().filter(resolved_at__isnull=True, kind__in=SWEPT_KINDS)
        }
        for key, message in wanted.items():
            if key in open_alerts:
                continue
            kind, target, pk = key
            ComplianceAlert.objects.create(kind=kind, message=message, detected_at=at, **{f"{target}_id": pk})
            opened += 1
        for key, alert in open_alerts.items():
            if key not in wanted:
                alert.resolved_at = at
                alert.save(update_fields=["resolved_at"])
                resolved += 1
    return {"opened": opened, "resolved": resolved, "open": len(wanted)}


def open_alerts() -> list[ComplianceAlert]:
    alerts = ComplianceAlert.objects.filter(resolved_at__isnull=True).select_related("cell__classification")
    return list(alerts.order_by("kind", "-detected_at")[:50])


def alert_on_failed_schedule(sender, run, **kwargs) -> None:
    """A scheduled evaluation that fails for an approved version raises an alert (``evaluation_run_finished``)."""
    if message := failed_schedule(run):
        ComplianceAlert.objects.create(kind=AlertKind.EVALUATION_FAILED, message=message)
