from django.apps import AppConfig


def rollup_traffic(policy_set: str, since, until) -> list:
    """A policy set's traffic over [since, until) per task, classification, model and provider, from the
    hourly rollups: what portfolio's change-impact preview replays (``portfolio.impact.TRAFFIC_SOURCES``)."""
    from .rollups import traffic

    return traffic(policy_set, since, until, by=("task", "classification", "model", "provider"))


class AuditsConfig(AppConfig):
    name = "audits"
    verbose_name = "Audit trail and decisions"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from portfolio.impact import TRAFFIC_SOURCES

        from . import signals

        signals.connect()
        if rollup_traffic not in TRAFFIC_SOURCES:
            TRAFFIC_SOURCES.append(rollup_traffic)
        post_migrate.connect(_partitions_ahead, sender=self)


def _partitions_ahead(sender, using, **kwargs) -> None:
    """After every ``migrate``: a fresh database accepts today's decisions into their partitions."""
    from .partitions import create_partitions

    create_partitions(using=using)
