"""What awaits an officer, from every app: the approvals inbox, its filters and the nav badge's count."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Q, QuerySet

from compliance.models import REVIEW_CELLS, ComplianceAlert, MatrixCell
from portfolio.models import PUBLISH_CHANGES, ChangeRequest, ChangeStatus
from registry.models import REVIEW_CREDENTIALS, CredentialStatus, EndpointCredential, ModelVersion, Status
from steward.roles import REVIEW_VERSIONS

# The inbox's sections, in the order the page shows them; the ``kind`` filter takes these keys.
KINDS = {
    "versions": "Model versions",
    "cells": "Matrix cells",
    "changes": "Change requests",
    "credentials": "Endpoint credentials",
    "publish": "Ready to publish",
    "alerts": "Compliance alerts",
}
# Sections of things that await a decision (the badge and the inbox's total); alerts ask for attention.
DECISIONS = ("versions", "cells", "changes", "credentials", "publish")


def versions_awaiting(user, q: str = "") -> QuerySet[ModelVersion]:
    if not user.has_perm(REVIEW_VERSIONS):
        return ModelVersion.objects.none()
    versions = ModelVersion.objects.with_related().awaiting_review_by(user).order_by("proposed_at", "pk")
    return versions.filter(ref__icontains=q) if q else versions


def cells_awaiting(user, q: str = "") -> QuerySet[MatrixCell]:
    cells = MatrixCell.objects.awaiting_review_by(user)
    if q:
        cells = cells.filter(Q(model_version__ref__icontains=q) | Q(classification__slug__icontains=q))
    return cells


def changes_awaiting(user, q: str = "") -> QuerySet[ChangeRequest]:
    changes = ChangeRequest.objects.awaiting_review_by(user)
    return changes.filter(Q(title__icontains=q) | Q(policy_set__slug__icontains=q)) if q else changes


def credentials_awaiting(user, q: str = "") -> QuerySet[EndpointCredential]:
    if not user.has_perm(REVIEW_CREDENTIALS):
        return EndpointCredential.objects.none()
    credentials = (
        EndpointCredential.objects.filter(status=CredentialStatus.REQUESTED)
        .exclude(requested_by=user)
        .select_related("requested_by")
        .order_by("requested_at", "pk")
    )
    return credentials.filter(env_var__icontains=q) if q else credentials


def ready_to_publish(user, q: str = "") -> QuerySet[ChangeRequest]:
    if not user.has_perm(PUBLISH_CHANGES):
        return ChangeRequest.objects.none()
    ready = ChangeRequest.objects.filter(status=ChangeStatus.APPROVED).select_related("policy_set", "author")
    ready = ready.order_by("updated_at", "pk")
    return ready.filter(Q(title__icontains=q) | Q(policy_set__slug__icontains=q)) if q else ready


def open_alerts(user, q: str = "") -> QuerySet[ComplianceAlert]:
    """Open compliance alerts (certifications expiring or expired, cells no longer usable, failed
    scheduled evaluations), for officers; newest first."""
    if not user.has_perm(REVIEW_CELLS):
        return ComplianceAlert.objects.none()
    alerts = ComplianceAlert.objects.filter(resolved_at__isnull=True).select_related(
        "cell__model_version", "cell__classification"
    )
    alerts = alerts.order_by("-detected_at", "-pk")
    return alerts.filter(message__icontains=q) if q else alerts


SECTIONS = {
    "versions": versions_awaiting,
    "cells": cells_awaiting,
    "changes": changes_awaiting,
    "credentials": credentials_awaiting,
    "publish": ready_to_publish,
    "alerts": open_alerts,
}


@dataclass
class Inbox:
    """The sections of one officer's inbox (each a list), with the filters that chose them."""

    sections: dict[str, list] = field(default_factory=dict)
    kinds: list[str] = field(default_factory=list)
    q: str = ""

    @property
    def count(self) -> int:
        """How many things await a decision (alerts aside)."""
        return sum(len(items) for kind, items in self.sections.items() if kind in DECISIONS)

    def section(self, kind: str) -> list:
        """One section's items; empty when the filters left it out."""
        return self.sections.get(kind, [])

    versions = property(lambda self: self.section("versions"))
    cells = property(lambda self: self.section("cells"))
    changes = property(lambda self: self.section("changes"))
    credentials = property(lambda self: self.section("credentials"))
    publish = property(lambda self: self.section("publish"))
    alerts = property(lambda self: self.section("alerts"))


def inbox_for(user, kinds: list[str] | None = None, q: str = "") -> Inbox:
    """What awaits ``user``: the sections in ``kinds`` (all when empty), matching ``q`` where given."""
    chosen = [kind for kind in KINDS if not kinds or kind in kinds]
    q = q.strip()
    return Inbox({kind: list(SECTIONS[kind](user, q)) for kind in chosen}, chosen, q)


def awaiting_count(user) -> int:
    """How many things await ``user``'s decision or publishing (the nav badge): one count per section."""
    if not user.is_authenticated:
        return 0
    return sum(SECTIONS[kind](user).count() for kind in DECISIONS)


def own_proposals(user) -> list[ModelVersion]:
    """The officer's own proposed versions, which another officer must decide."""
    return list(
        ModelVersion.objects.with_related().filter(status=Status.PROPOSED, proposed_by=user).order_by("proposed_at")
    )
