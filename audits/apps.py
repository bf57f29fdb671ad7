from django.apps import AppConfig


class AuditsConfig(AppConfig):
    name = "audits"
    verbose_name = "Audit trail and decisions"

    def ready(self) -> None:
        from . import signals

        signals.connect()
