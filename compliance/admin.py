from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from .models import Certification, CertificationHolding, ComplianceAlert, DataClassification, MatrixCell


@admin.register(Certification)
class CertificationAdmin(SimpleHistoryAdmin):
    list_display = ["name", "slug"]


@admin.register(CertificationHolding)
class CertificationHoldingAdmin(SimpleHistoryAdmin):
    list_display = ["certification", "provider", "model_version", "effect", "valid_from", "valid_until"]
    list_filter = ["certification", "effect"]


@admin.register(DataClassification)
class DataClassificationAdmin(SimpleHistoryAdmin):
    list_display = ["slug", "name", "level", "storage"]


@admin.register(MatrixCell)
class MatrixCellAdmin(SimpleHistoryAdmin):
    """Decisions go through the cell's own methods (the matrix page or the API), not raw edits here."""

    list_display = ["model_version", "classification", "decision", "decided_by", "expires_at", "suspended_at"]
    list_filter = ["decision", "classification"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ComplianceAlert)
class ComplianceAlertAdmin(admin.ModelAdmin):
    list_display = ["kind", "message", "detected_at", "resolved_at"]
    list_filter = ["kind"]
