from celery import shared_task

from .alerts import record_alerts


@shared_task(name="compliance.record_alerts", acks_late=True)
def record_compliance_alerts() -> dict[str, int]:
    """Daily: record expiring certifications and approved cells that became unusable."""
    return record_alerts()
