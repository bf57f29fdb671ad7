from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _ensure_catalogue(sender, **kwargs) -> None:
    # Also after a database flush (tests): the catalogue is reference data, not demo data.
    from .catalogue import ensure_catalogue
    from .models import Certification

    ensure_catalogue(Certification)


class ComplianceConfig(AppConfig):
    name = "compliance"

    def ready(self) -> None:
        from registry.signals import evaluation_run_finished

        from .alerts import alert_on_failed_schedule

        post_migrate.connect(_ensure_catalogue, sender=self, dispatch_uid="compliance-catalogue")
        evaluation_run_finished.connect(alert_on_failed_schedule, dispatch_uid="compliance-failed-schedule")
