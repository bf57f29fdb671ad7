"""The admin site cannot bypass governance.

Fields that go into a signed policy or a governance decision are read-only in every admin page
(they change only through the reviewed paths: proposals, approvals, change requests, matrix
decisions), and whatever the admin can still change writes an audit event with before and after.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.db import models

from audits import events as audit

from .models import ApiToken


def _shown(value: object) -> object:
    """A form value as an audit event shows it: objects by name, lists of objects as sorted names."""
    if isinstance(value, models.Model):
        return str(value)
    if isinstance(value, models.QuerySet | list | tuple | set) and all(isinstance(v, models.Model) for v in value):
        return sorted(str(v) for v in value)
    return value


class AuditedAdmin(admin.ModelAdmin):
    """An admin whose governed fields are read-only and whose every change is in the audit trail.

    ``governed_fields`` lists what only the reviewed paths may change; ``deletable`` says whether
    rows may be deleted here at all (governed records are never deleted).
    """

    governed_fields: tuple[str, ...] = ()
    deletable = False
    # As in every form of the site: a URL typed without a scheme is https://.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def get_readonly_fields(self, request, obj=None) -> list[str]:
        return [*super().get_readonly_fields(request, obj), *self.governed_fields]

    def has_delete_permission(self, request, obj=None) -> bool:
        return self.deletable and super().has_delete_permission(request, obj)

    def save_model(self, request, obj, form, change: bool) -> None:
        changed = [name for name in form.changed_data if name not in self.governed_fields]
        before = {name: _shown(form.initial.get(name)) for name in changed} if change else None
        super().save_model(request, obj, form, change)
        self._changed = (before, changed)

    def save_related(self, request, form, formsets, change: bool) -> None:
        # Many-to-many values (a user's groups) are saved here, after save_model: record them now.
        super().save_related(request, form, formsets, change)
        before, changed = getattr(self, "_changed", (None, []))
        if not changed and change:
            return
        audit.record(
            f"admin.{'change' if change else 'add'}",
            actor=request.user,
            obj=form.instance,
            before=before,
            after={name: _shown(form.cleaned_data.get(name)) for name in changed},
            comment="changed in the admin site",
        )

    def delete_model(self, request, obj) -> None:
        audit.record("admin.delete", actor=request.user, obj=obj, comment="deleted in the admin site")
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset) -> None:
        for obj in queryset:
            audit.record("admin.delete", actor=request.user, obj=obj, comment="deleted in the admin site")
        super().delete_queryset(request, queryset)


class ReadOnlyAdmin(AuditedAdmin):
    """Shown for reference; every change goes through the object's own reviewed actions."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class AuditedUserAdmin(AuditedAdmin, UserAdmin):
    """Users and their roles: who holds which role is a governance fact, so every change is audited.

    Passwords are changed through Django's own password form, which records nothing of the password.
    """

    deletable = False


class AuditedGroupAdmin(AuditedAdmin, GroupAdmin):
    """The role groups' permissions come from ``steward.roles`` and are synchronised after migrating."""

    governed_fields = ("name", "permissions")


admin.site.unregister(User)
admin.site.register(User, AuditedUserAdmin)
admin.site.unregister(Group)
admin.site.register(Group, AuditedGroupAdmin)


@admin.register(ApiToken)
class ApiTokenAdmin(AuditedAdmin):
    """Tokens are issued on the profile page (shown once); here they can only be looked at or revoked."""

    list_display = ["name", "user", "prefix", "created_at", "expires_at", "last_used_at", "revoked_at"]
    governed_fields = ("user", "name", "prefix", "token_hash", "created_at", "expires_at", "last_used_at")
    search_fields = ["name", "user__username"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False
