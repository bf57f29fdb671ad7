from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from .models import Model, ModelVersion, Provider, VersionTransition


@admin.register(Provider)
class ProviderAdmin(SimpleHistoryAdmin):
    list_display = ["name", "slug", "website"]
    search_fields = ["name", "slug"]


@admin.register(Model)
class ModelAdmin(SimpleHistoryAdmin):
    list_display = ["name", "provider", "family", "modality", "context_window"]
    list_filter = ["provider", "modality"]
    search_fields = ["name", "slug", "family"]


class TransitionInline(admin.TabularInline):
    model = VersionTransition
    extra = 0
    can_delete = False
    readonly_fields = ["action", "from_status", "to_status", "actor", "comment", "at"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ModelVersion)
class ModelVersionAdmin(SimpleHistoryAdmin):
    """Lifecycle moves go through the version's own methods (the site's pages), never raw edits here."""

    list_display = ["ref", "status", "cost_tier", "region", "proposed_by"]
    list_filter = ["status", "cost_tier", "region"]
    search_fields = ["ref"]
    readonly_fields = ["ref", "status", "status_changed_at", "proposed_by", "proposed_at"]
    inlines = [TransitionInline]

    def has_add_permission(self, request) -> bool:
        return False  # proposals go through ModelVersion.propose (the Propose page or the API)
