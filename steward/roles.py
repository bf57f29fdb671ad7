"""People and their roles.

Roles are Django groups with permissions, so every check is an ordinary ``user.has_perm`` and
superusers (the admins) pass all of them. Officers approve; engineers propose; auditors read
everything and change nothing.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import HttpRequest
from rest_framework.permissions import DjangoModelPermissions

OFFICERS = "Governance officers"
ENGINEERS = "Engineers"
AUDITORS = "Auditors"
ROLES = (OFFICERS, ENGINEERS, AUDITORS)

# Every role reads everything that Steward governs.
GOVERNED_APPS = ("registry", "compliance", "portfolio", "audits")

ROLE_PERMISSIONS: dict[str, list[str]] = {
    OFFICERS: [
        "registry.review_modelversion",
        "registry.add_provider",
        "registry.change_provider",
        "registry.add_model",
        "registry.change_model",
        "compliance.review_matrixcell",
        "compliance.add_certification",
        "compliance.change_certification",
        "compliance.add_certificationholding",
        "compliance.change_certificationholding",
        "compliance.add_dataclassification",
        "compliance.change_dataclassification",
        "portfolio.review_changerequest",
        "portfolio.publish_changerequest",
        "portfolio.add_costtier",
        "portfolio.change_costtier",
        "portfolio.add_task",
        "portfolio.change_task",
        "portfolio.add_policyset",
        "portfolio.change_policyset",
        "portfolio.manage_router",
        "registry.run_evaluationsuite",
        "registry.add_endpointcredential",
        "registry.review_endpointcredential",
        "axes.view_accessattempt",
        "axes.delete_accessattempt",
    ],
    ENGINEERS: [
        "registry.add_modelversion",
        "registry.add_provider",
        "registry.add_model",
        "compliance.request_matrixcell",
        "portfolio.add_changerequest",
        "registry.run_evaluationsuite",
        "registry.add_evaluationsuite",
        "registry.change_evaluationsuite",
        "registry.add_endpointcredential",
    ],
    AUDITORS: ["axes.view_accessattempt"],
}

REVIEW_VERSIONS = "registry.review_modelversion"
PROPOSE_VERSIONS = "registry.add_modelversion"


def sync_role_permissions(apps=None) -> None:
    """Create the three groups and give each its permissions (view on every governed model).

    Called by data migrations with the historical ``apps`` registry; safe to call again whenever
    an app adds models.
    """
    if apps is None:
        from django.apps import apps as global_apps

        apps = global_apps
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    view_permissions = list(
        Permission.objects.filter(content_type__app_label__in=GOVERNED_APPS, codename__startswith="view_")
    )
    for role in ROLES:
        group, _ = Group.objects.get_or_create(name=role)
        wanted = list(view_permissions)
        for dotted in ROLE_PERMISSIONS[role]:
            app_label, codename = dotted.split(".", 1)
            permission = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
            if permission is not None:
                wanted.append(permission)
        group.permissions.add(*wanted)


def sync_roles_migration(apps, schema_editor) -> None:
    """A data migration step: create pending permissions now, then sync the groups.

    Django creates permissions after all migrations have run; a migration that hands new
    permissions to groups must create them first.
    """
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    sync_role_permissions(apps)


def role_names(user: AbstractBaseUser | AnonymousUser) -> list[str]:
    if not user.is_authenticated:
        return []
    names = [g.name for g in user.groups.all() if g.name in ROLES]
    if user.is_superuser:
        names.insert(0, "Admin")
    return names


def can_review_versions(user) -> bool:
    return user.is_authenticated and user.has_perm(REVIEW_VERSIONS)


def can_propose_versions(user) -> bool:
    return user.is_authenticated and user.has_perm(PROPOSE_VERSIONS)


def role_context(request: HttpRequest) -> dict:
    """Template context: what the signed-in person may do, for showing the right buttons."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "user_roles": role_names(user),
        "can_review_versions": can_review_versions(user),
        "can_propose_versions": can_propose_versions(user),
    }


class ReadForStaffRoles(DjangoModelPermissions):
    """API default: reading needs the model's ``view`` permission, writing its add/change perms.

    A signed-in person with no role sees nothing.
    """

    perms_map = {
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": [],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
        "POST": ["%(app_label)s.add_%(model_name)s"],
        "PUT": ["%(app_label)s.change_%(model_name)s"],
        "PATCH": ["%(app_label)s.change_%(model_name)s"],
        "DELETE": ["%(app_label)s.delete_%(model_name)s"],
    }

    def has_permission(self, request, view) -> bool:
        if getattr(view, "queryset", None) is None and not hasattr(view, "get_queryset"):
            # A function view checks its own permission; never fail with a 500 here.
            return bool(request.user and request.user.is_authenticated)
        return super().has_permission(request, view)
