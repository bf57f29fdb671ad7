from celery import shared_task

from .decisions import check_escalation_rates, remove_expired_content


@shared_task(name="audits.check_escalation_rates", acks_late=True)
def escalation_rates() -> int:
    """Every quarter hour: routes whose escalation rate over the last hour exceeds their cap."""
    return check_escalation_rates()


@shared_task(name="audits.remove_expired_content", acks_late=True)
def retention() -> dict[str, int]:
    """Daily: remove decision content older than its classification's retention, keeping digests."""
    return remove_expired_content()
