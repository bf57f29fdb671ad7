"""Thin tasks: deliver one message (retried with backoff), react to an announcement, sweep, send digests."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import reactions, sweep
from .delivery import DeliveryFailed, send
from .models import Delivery, DeliveryStatus
from .planning import send_digests


@shared_task(
    bind=True,
    name="notifications.deliver",
    acks_late=True,
    autoretry_for=(DeliveryFailed,),
    retry_backoff=settings.STEWARD_NOTIFICATION_RETRY_BACKOFF,
    retry_backoff_max=3600,
    retry_jitter=False,
    max_retries=settings.STEWARD_NOTIFICATION_MAX_RETRIES,
)
def deliver(self, delivery_id: int) -> str:
    """Send one delivery; sent ones are skipped, so a redelivered message sends nothing twice."""
    with transaction.atomic():
        delivery = (
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("user", "webhook")
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None or delivery.status != DeliveryStatus.PENDING:
            return "skipped"
        delivery.attempts += 1
        try:
            send(delivery)
        except Exception as error:  # noqa: BLE001 - any failure is an attempt, kept with its reason
            reason = str(error) if isinstance(error, DeliveryFailed) else f"{type(error).__name__}: {error}"
            delivery.last_error = reason[:2000]
            if self.request.retries >= self.max_retries:
                delivery.status = DeliveryStatus.FAILED
            delivery.save(update_fields=["attempts", "last_error", "status"])
        else:
            delivery.status, delivery.sent_at, delivery.last_error = DeliveryStatus.SENT, timezone.now(), ""
            delivery.save(update_fields=["attempts", "status", "sent_at", "last_error"])
            return "sent"
    # Raised after the attempt is committed; Celery retries it with backoff until max_retries.
    raise DeliveryFailed(delivery.last_error)


@shared_task(name="notifications.notify_event", acks_late=True)
def notify_event(event_id: int) -> int:
    """An audit event worth telling someone about (a proposal, a request, a decision)."""
    return reactions.notify_for_event(event_id)


@shared_task(name="notifications.notify_alert", acks_late=True)
def notify_alert(alert_id: int) -> int:
    """A compliance alert (certification expiring or expired, a scheduled evaluation failed)."""
    return reactions.notify_for_alert(alert_id)


@shared_task(name="notifications.notify_rebase", acks_late=True)
def notify_rebase(version_id: int) -> int:
    """A new policy version: the open change requests on older versions need a rebase."""
    return reactions.notify_rebase_needed(version_id)


@shared_task(name="notifications.sweep", acks_late=True)
def run_sweep() -> dict[str, int]:
    """Conditions that hold rather than happen: violations, policies close to expiry, routers in trouble."""
    return sweep.sweep()


@shared_task(name="notifications.send_digests", acks_late=True)
def run_digests() -> int:
    return send_digests()
