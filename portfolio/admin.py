from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from steward.admin import AuditedAdmin, ReadOnlyAdmin

from .models import ChangeRequest, CostTier, PolicySet, PolicyVersion, Review, Revision, Task


@admin.register(CostTier)
class CostTierAdmin(AuditedAdmin, SimpleHistoryAdmin):
    list_display = ["slug", "rank", "price_ceiling_micro_usd"]
    governed_fields = ("slug", "rank", "price_ceiling_micro_usd")  # in every signed policy


@admin.register(Task)
class TaskAdmin(AuditedAdmin, SimpleHistoryAdmin):
    list_display = ["slug", "default_classification", "tier"]
    governed_fields = ("slug", "default_classification", "tier")


@admin.register(PolicySet)
class PolicySetAdmin(AuditedAdmin, SimpleHistoryAdmin):
    list_display = ["slug", "required_approvals", "require_provider_diversity", "auto_publish"]
    # The review rules themselves: loosening them here would bypass review.
    governed_fields = (
        "slug",
        "required_approvals",
        "require_provider_diversity",
        "auto_publish",
        "suspend_cells_on_failed_evaluation",
        "policy_lifetime_days",
    )


@admin.register(PolicyVersion)
class PolicyVersionAdmin(ReadOnlyAdmin):
    """Read-only: versions are published through change requests and never edited."""

    list_display = ["policy_set", "number", "provenance", "published_by", "published_at"]


class RevisionInline(admin.TabularInline):
    model = Revision
    extra = 0
    can_delete = False
    readonly_fields = ["number", "created_by", "created_at", "errors"]
    fields = readonly_fields


class ReviewInline(admin.TabularInline):
    model = Review
    extra = 0
    can_delete = False
    readonly_fields = ["reviewer", "decision", "comment", "created_at", "dismissed_at"]
    fields = readonly_fields


@admin.register(ChangeRequest)
class ChangeRequestAdmin(ReadOnlyAdmin, SimpleHistoryAdmin):
    """Reviews and publishing go through the change request's own methods, not raw edits here."""

    list_display = ["__str__", "policy_set", "author", "status", "updated_at"]
    list_filter = ["policy_set", "status"]
    inlines = [RevisionInline, ReviewInline]
