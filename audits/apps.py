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
        from portfolio.impact import TRAFFIC_SOURCES

        from . import signals

        signals.connect()
        if rollup_traffic not in TRAFFIC_SOURCES:
            TRAFFIC_SOURCES.append(rollup_traffic)
