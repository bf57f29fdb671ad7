from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from steward.admin import AuditedAdmin, ReadOnlyAdmin

from .models import SIGNED_FIELDS, EndpointCredential, Model, ModelVersion, Provider, VersionTransition

# What goes into a signed policy (the ref, endpoint, key variable, region, prices, tier) and what an
# officer decided (the status) changes only through proposals and lifecycle decisions.
VERSION_FIELDS = (
    "model",
    "version",
    "ref",
    *SIGNED_FIELDS,
    "status",
    "status_changed_at",
    "proposed_by",
    "proposed_at",
)


@admin.register(Provider)
class ProviderAdmin(AuditedAdmin, SimpleHistoryAdmin):
    list_display = ["name", "slug", "website"]
    search_fields = ["name", "slug"]
    governed_fields = ("slug",)


@admin.register(Model)
class ModelAdmin(AuditedAdmin, SimpleHistoryAdmin):
    list_display = ["name", "provider", "family", "modality", "context_window"]
    list_filter = ["provider", "modality"]
    search_fields = ["name", "slug", "family"]
    governed_fields = ("provider", "slug", "context_window")


class TransitionInline(admin.TabularInline):
    model = VersionTransition
    extra = 0
    can_delete = False
    readonly_fields = ["action", "from_status", "to_status", "actor", "comment", "at"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ModelVersion)
class ModelVersionAdmin(AuditedAdmin, SimpleHistoryAdmin):
    """Lifecycle moves go through the version's own methods (the site's pages), never raw edits here."""

    list_display = ["ref", "status", "cost_tier", "region", "proposed_by"]
    list_filter = ["status", "cost_tier", "region"]
    search_fields = ["ref"]
    governed_fields = VERSION_FIELDS
    inlines = [TransitionInline]

    def has_add_permission(self, request) -> bool:
        return False  # proposals go through ModelVersion.propose (the Propose page or the API)


@admin.register(EndpointCredential)
class EndpointCredentialAdmin(ReadOnlyAdmin, SimpleHistoryAdmin):
    """Requested by engineers and decided by officers on the Credentials page, never edited here."""

    list_display = ["env_var", "status", "requested_by", "decided_by"]
    list_filter = ["status"]
