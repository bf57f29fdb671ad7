"""Conditions that hold rather than happen, looked for by a beat task: new violations, policy sets close
to expiry, routers that are stale or cannot report. Each condition is told once per occurrence."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from django.db import transaction
from django.db.models import Max
from django.urls import reverse
from django.utils import timezone

from audits.models import AuditEvent, Violation
from compliance.models import REVIEW_CELLS, ComplianceAlert
from portfolio.feed import fleet_rows
from portfolio.models import PUBLISH_CHANGES, PolicyVersion
from portfolio.signing import expiring_releases
from steward.roles import AUDITORS

from .models import Delivery, DeliveryStatus, Kind, Notification, SweepMark
from .planning import enqueue, notify, people_with
from .reactions import ALERT_KINDS, EVENT_REACTIONS, notify_for_alert, notify_for_event, notify_rebase_needed

MANAGE_ROUTERS = "portfolio.manage_router"
# The dashboard's warning window for signed policies close to expiry.
POLICY_EXPIRY_WARNING = dt.timedelta(hours=48)


# What the sweep sends of announcements that were never queued (the broker was down): those at least
# this old, so that the queued ones are left to their tasks.
CATCH_UP_AFTER = dt.timedelta(minutes=2)
UNSENT_AFTER = dt.timedelta(minutes=5)


def sweep(now: dt.datetime | None = None) -> dict[str, int]:
    now = now or timezone.now()
    return {
        "missed": missed(now),
        "violations": violations_found(),
        "policies": policies_close_to_expiry(now),
        "routers": routers_in_trouble(now),
    }


def missed(now: dt.datetime) -> int:
    """Tell what announcements whose task never reached a worker should have told, and queue again the
    deliveries that were never attempted. Every step is idempotent (notifications are made once per key)."""
    cutoff = now - CATCH_UP_AFTER
    told = 0
    with transaction.atomic():
        latest = AuditEvent.objects.aggregate(n=Max("pk"))["n"] or 0
        # The first sweep starts from now: what happened before notifications existed is not told.
        mark, created = SweepMark.objects.select_for_update().get_or_create(name="events", defaults={"last_id": latest})
        if not created:
            events = AuditEvent.objects.filter(pk__gt=mark.last_id, at__lte=cutoff)
            last = events.aggregate(n=Max("pk"))["n"]
            for pk in events.filter(action__in=EVENT_REACTIONS).order_by("pk").values_list("pk", flat=True):
                told += notify_for_event(pk)
            if last is not None:
                mark.last_id = last
                mark.save(update_fields=["last_id"])
    alerts = ComplianceAlert.objects.filter(kind__in=ALERT_KINDS, detected_at__gte=now - dt.timedelta(days=2))
    keys = {f"alert:{pk}": pk for pk in alerts.values_list("pk", flat=True)}
    done = set(Notification.objects.filter(key__in=keys).values_list("key", flat=True))
    for key, pk in keys.items():
        if key not in done:
            told += notify_for_alert(pk)
    for pk in PolicyVersion.objects.filter(published_at__gte=now - dt.timedelta(days=1)).values_list("pk", flat=True):
        told += notify_rebase_needed(pk)
    unsent = Delivery.objects.filter(status=DeliveryStatus.PENDING, attempts=0, created_at__lt=now - UNSENT_AFTER)
    for pk in unsent.values_list("pk", flat=True):
        enqueue("notifications.deliver", pk)
    return told


def violation_audience() -> list:
    """Officers and auditors."""
    officers = list(people_with(REVIEW_CELLS))
    auditors = (
        people_with("audits.view_violation").filter(groups__name=AUDITORS).exclude(pk__in=[o.pk for o in officers])
    )
    return officers + list(auditors)


def violations_found() -> int:
    """One notification for the violations recorded since the last sweep (by kind and policy set)."""
    with transaction.atomic():
        mark, _ = SweepMark.objects.select_for_update().get_or_create(name="violations")
        new = Violation.objects.filter(pk__gt=mark.last_id)
        last = new.aggregate(n=Max("pk"))["n"]
        if last is None:
            return 0
        counts = Counter(new.values_list("kind", "policy_set"))
        total = sum(counts.values())
        lines = [f"{n} × {kind} in {policy_set}" for (kind, policy_set), n in sorted(counts.items())]
        subject = f"{total} violation{'s' if total != 1 else ''} found in routers' decisions"
        key = f"violations:{mark.last_id + 1}-{last}"
        told = notify(
            violation_audience(), Kind.VIOLATION, key, subject, "\n".join(lines), reverse("audits:violations")
        )
        mark.last_id = last
        mark.save(update_fields=["last_id"])
    return len(told)


def policies_close_to_expiry(now: dt.datetime) -> int:
    told = 0
    for release in expiring_releases(POLICY_EXPIRY_WARNING, now):
        version = release.policy_version
        left = release.expires - now
        when = "has expired" if left.total_seconds() <= 0 else f"expires in {int(left.total_seconds() // 3600)} h"
        subject = (
            f"Signed policy {version.policy_set.slug} v{version.number} {when} ({release.expires:%Y-%m-%d %H:%M} UTC)"
        )
        body = "Re-signing runs hourly (portfolio.resign_due); check the workers and the signing keys."
        key = f"policy-expiring:{release.pk}"
        told += len(
            notify(people_with(PUBLISH_CHANGES), Kind.POLICY_EXPIRING, key, subject, body, version.get_absolute_url())
        )
    return told


def routers_in_trouble(now: dt.datetime) -> int:
    """Routers not seen for a while, whose last report was a NACK, or that dropped decision records."""
    told = 0
    link = reverse("portfolio:fleet")
    people = None
    for row in fleet_rows(now):
        router = row["router"]
        if not router.is_active:
            continue
        troubles = []
        if row["stale"]:
            seen = f"last seen {router.last_seen_at:%Y-%m-%d %H:%M} UTC" if router.last_seen_at else "never seen"
            troubles.append(
                (
                    f"stale:{router.last_seen_at.isoformat() if router.last_seen_at else 'never'}",
                    f"Router {router.name} is stale ({seen})",
                )
            )
        if router.last_status == "nack" and router.last_nack_at:
            troubles.append(
                (
                    f"nack:{router.last_nack_at.isoformat()}",
                    f"Router {router.name} cannot apply its policy: {router.last_error or 'NACK'}",
                )
            )
        if router.spool_dropped:
            troubles.append(
                (
                    f"dropped:{router.spool_dropped}",
                    f"Router {router.name} cannot report: it dropped {router.spool_dropped} decision records",
                )
            )
        for key, subject in troubles:
            people = people if people is not None else list(people_with(MANAGE_ROUTERS))
            told += len(notify(people, Kind.ROUTER_TROUBLE, f"router:{router.pk}:{key}", subject, "", link))
    return told
