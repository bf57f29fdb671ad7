"""Who is told what: making notifications for people and the deliveries that carry them."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from .models import Channel, Delivery, Notification, Preference, Webhook

MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


def people_with(permission: str, *, besides=None) -> QuerySet:
    """Active people who hold ``permission`` (through a role or directly, admins included), without ``besides``."""
    people = get_user_model().objects.with_perm(permission, backend=MODEL_BACKEND)
    if besides is not None:
        people = people.exclude(pk=getattr(besides, "pk", besides))
    return people


def notify(people: Iterable, kind: str, key: str, subject: str, body: str = "", link: str = "") -> list[Notification]:
    """Tell each of ``people`` once per ``key``; sent at once (after the transaction commits) unless
    they chose a digest. Returns the notifications made now (none for a key already told)."""
    made: list[Notification] = []
    deliveries: list[Delivery] = []
    people = list(people)
    preferences = {p.user_id: p for p in Preference.objects.filter(user__in=people)}
    for person in people:
        preference = preferences.get(person.pk) or Preference(user=person)
        try:
            with transaction.atomic():
                notification = Notification.objects.create(
                    user=person, kind=kind, key=key[:200], subject=subject[:300], body=body, link=link
                )
        except IntegrityError:
            continue  # told already (a retried task, a sweep that runs again)
        made.append(notification)
        if preference.digest:
            continue
        deliveries += plan_deliveries(person, preference, [notification])
        notification.dispatched_at = timezone.now()
        notification.save(update_fields=["dispatched_at"])
    send_after_commit(deliveries)
    return made


def plan_deliveries(person, preference: Preference, notifications: list[Notification], digest: bool = False):
    """The deliveries that carry ``notifications`` to ``person`` on the channels they chose for each kind."""
    deliveries = []
    by_email = [n for n in notifications if preference.wants(Channel.EMAIL, n.kind)]
    if by_email and person.email:
        deliveries.append(_delivery(person, Channel.EMAIL, None, by_email, digest))
    by_webhook = [n for n in notifications if preference.wants(Channel.WEBHOOK, n.kind)]
    if by_webhook:
        for webhook in Webhook.objects.filter(user=person, removed_at__isnull=True):
            deliveries.append(_delivery(person, Channel.WEBHOOK, webhook, by_webhook, digest))
    return deliveries


def _delivery(person, channel: str, webhook, notifications: list[Notification], digest: bool) -> Delivery:
    delivery = Delivery.objects.create(user=person, channel=channel, webhook=webhook, is_digest=digest)
    delivery.notifications.set(notifications)
    return delivery


def send_after_commit(deliveries: list[Delivery]) -> None:
    if not deliveries:
        return
    from .tasks import deliver

    ids = [d.pk for d in deliveries]
    transaction.on_commit(lambda: [deliver.delay(pk) for pk in ids])


def send_digests() -> int:
    """One message per channel to each person who chose a digest, with what was not sent yet; how many went."""
    pending = Notification.objects.filter(dispatched_at__isnull=True).select_related("user").order_by("created_at")
    by_person: dict[int, list[Notification]] = {}
    for notification in pending:
        by_person.setdefault(notification.user_id, []).append(notification)
    deliveries: list[Delivery] = []
    with transaction.atomic():
        for notifications in by_person.values():
            person = notifications[0].user
            deliveries += plan_deliveries(person, Preference.for_user(person), notifications, digest=True)
            Notification.objects.filter(pk__in=[n.pk for n in notifications]).update(dispatched_at=timezone.now())
        send_after_commit(deliveries)
    return len(deliveries)
