from celery import shared_task

from .impact import record_outcomes
from .signing import finish_policy_rotation, resign_due


@shared_task(name="portfolio.resign_due", acks_late=True)
def resign_due_policies() -> list[str]:
    """Re-sign, as version N+1, every policy set whose release has less than half its lifetime left."""
    return [str(version) for version in resign_due()]


@shared_task(name="portfolio.finish_policy_rotation", acks_late=True)
def finish_rotation() -> int | None:
    """Retire a rotated-out policy key once every router reports the new trust version."""
    root = finish_policy_rotation()
    return root.version if root else None


@shared_task(name="portfolio.record_impact_outcomes", acks_late=True)
def record_impact_outcomes() -> list[int]:
    """Store what each change request published seven days ago really did, beside its preview."""
    return [outcome.change_request_id for outcome in record_outcomes()]
