"""Who is told what: making notifications for people and the deliveries that carry them."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from registry.evaluation.runs import PUBLISH_RETRY_POLICY
from steward import degraded
from steward.celery import app

from .models import Channel, Delivery, Notification, Preference, Webhook

logger = logging.getLogger(__name__)

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
    key = key[:200]
    # One line (titles and comments are people's text): a subject becomes an email header.
    subject = " ".join(subject.split())[:300]
    people = list(people)
    told = set(Notification.objects.filter(key=key, user__in=people).values_list("user_id", flat=True))
    people = [person for person in people if person.pk not in told]
    preferences = {p.user_id: p for p in Preference.objects.filter(user__in=people)}
    for person in people:
        preference = preferences.get(person.pk) or Preference(user=person)
        try:
            with transaction.atomic():
                notification = Notification.objects.create(
                    user=person, kind=kind, key=key, subject=subject, body=body, link=link
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


def enqueue(task: str, *args) -> bool:
    """Hand ``task`` to the broker. When the broker does not answer, the person's action has already
    happened: note the outage and carry on; the sweep sends what was missed (``sweep.missed``)."""
    try:
        # By name, so that the modules the tasks call need not import the tasks.
        app.send_task(task, args, ignore_result=True, retry=True, retry_policy=PUBLISH_RETRY_POLICY)
    except Exception as error:  # noqa: BLE001 - whatever the transport raises means "not now"
        degraded.noted("broker", error)
        global _last_logged
        if time.monotonic() - _last_logged >= degraded.LOG_EVERY_SECONDS:  # once a minute, not per action
            _last_logged = time.monotonic()
            logger.warning("notifications: %s not queued, the sweep will catch up: %s", task, error)
        return False
    return True


_last_logged = -float("inf")


def enqueue_after_commit(task: str, *args) -> None:
    transaction.on_commit(lambda: enqueue(task, *args), robust=True)


def send_after_commit(deliveries: list[Delivery]) -> None:
    for delivery in deliveries:
        enqueue_after_commit("notifications.deliver", delivery.pk)


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
