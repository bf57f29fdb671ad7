from django.apps import AppConfig, apps
from django.db.models.signals import post_migrate


def _sync_roles(sender, **kwargs) -> None:
    # Keep the groups' permissions current as apps add models (view on everything governed).
    # post_migrate is sent once per app with models; permissions exist for all of them after the last one.
    if sender is not [config for config in apps.get_app_configs() if config.models_module is not None][-1]:
        return
    from .roles import sync_role_permissions

    sync_role_permissions()


class StewardConfig(AppConfig):
    name = "steward"
    verbose_name = "Steward"

    def ready(self) -> None:
        post_migrate.connect(_sync_roles, dispatch_uid="steward-sync-roles")
