from celery import shared_task

from .decisions import check_escalation_rates, remove_expired_content
from .partitions import create_partitions
from .verification import make_checkpoint, verify_full, verify_recent


@shared_task(name="audits.check_escalation_rates", acks_late=True)
def escalation_rates() -> int:
    """Every quarter hour: routes whose escalation rate over the last hour exceeds their cap."""
    return check_escalation_rates()


@shared_task(name="audits.remove_expired_content", acks_late=True)
def retention() -> dict[str, int]:
    """Daily: remove decision content older than its classification's retention, keeping digests."""
    return remove_expired_content()


@shared_task(name="audits.create_partitions", acks_late=True)
def partitions_ahead() -> list[str]:
    """Daily: the decision and content partitions ahead of time (PostgreSQL); the names created."""
    return create_partitions()


@shared_task(name="audits.make_checkpoint", acks_late=True)
def checkpoint() -> int:
    """Every STEWARD_AUDIT_CHECKPOINT_SECONDS (10 minutes): sign the chain's count and head hash.

    A retry after a lost acknowledgement makes one more checkpoint, which is as true as the first.
    """
    return make_checkpoint("scheduled").number


@shared_task(name="audits.verify_recent", acks_late=True)
def verify_since_last_checkpoint() -> dict:
    """As often: verify the events and checkpoints since the last verified checkpoint."""
    verification = verify_recent()
    return {"ok": verification.ok, "through_seq": verification.through_seq, "reason": verification.reason}


@shared_task(name="audits.verify_full", acks_late=True)
def verify_whole_chain() -> dict:
    """Nightly: walk the whole chain against every checkpoint (what ``verify_audit_chain`` does)."""
    _, verification = verify_full()
    return {"ok": verification.ok, "through_seq": verification.through_seq, "reason": verification.reason}
