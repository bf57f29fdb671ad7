from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from steward.admin import AuditedAdmin, ReadOnlyAdmin

from .models import Certification, CertificationHolding, ComplianceAlert, DataClassification, MatrixCell


@admin.register(Certification)
class CertificationAdmin(AuditedAdmin, SimpleHistoryAdmin):
    list_display = ["name", "slug"]
    governed_fields = ("slug",)


@admin.register(CertificationHolding)
class CertificationHoldingAdmin(ReadOnlyAdmin, SimpleHistoryAdmin):
    """Holdings decide eligibility; officers record them on the Certifications page, with evidence."""

    list_display = ["certification", "provider", "model_version", "effect", "valid_from", "valid_until"]
    list_filter = ["certification", "effect"]


@admin.register(DataClassification)
class DataClassificationAdmin(AuditedAdmin, SimpleHistoryAdmin):
    list_display = ["slug", "name", "level", "storage"]
    governed_fields = (
        "slug",
        "level",
        "required_certifications",
        "allowed_regions",
        "storage",
        "required_evaluation_categories",
        "retention_days",
    )


@admin.register(MatrixCell)
class MatrixCellAdmin(ReadOnlyAdmin, SimpleHistoryAdmin):
    """Decisions go through the cell's own methods (the matrix page or the API), not raw edits here."""

    list_display = ["model_version", "classification", "decision", "decided_by", "expires_at", "suspended_at"]
    list_filter = ["decision", "classification"]


@admin.register(ComplianceAlert)
class ComplianceAlertAdmin(AuditedAdmin):
    list_display = ["kind", "message", "detected_at", "resolved_at"]
    list_filter = ["kind"]
    governed_fields = ("kind", "message", "holding", "cell", "detected_at")
