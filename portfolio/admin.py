from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from .models import ChangeRequest, CostTier, PolicySet, PolicyVersion, Review, Revision, Task


@admin.register(CostTier)
class CostTierAdmin(SimpleHistoryAdmin):
    list_display = ["slug", "rank", "price_ceiling_micro_usd"]


@admin.register(Task)
class TaskAdmin(SimpleHistoryAdmin):
    list_display = ["slug", "default_classification", "tier"]


@admin.register(PolicySet)
class PolicySetAdmin(SimpleHistoryAdmin):
    list_display = ["slug", "required_approvals", "require_provider_diversity", "auto_publish"]


@admin.register(PolicyVersion)
class PolicyVersionAdmin(admin.ModelAdmin):
    """Read-only: versions are published through change requests and never edited."""

    list_display = ["policy_set", "number", "provenance", "published_by", "published_at"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


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
class ChangeRequestAdmin(SimpleHistoryAdmin):
    """Reviews and publishing go through the change request's own methods, not raw edits here."""

    list_display = ["__str__", "policy_set", "author", "status", "updated_at"]
    list_filter = ["policy_set", "status"]
    inlines = [RevisionInline, ReviewInline]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
