"""What the floors below announce, turned into notifications.

The announcements (docs/architecture.md): every recorded audit event (``post_save`` of
``audits.AuditEvent``: proposals, requests, submissions and decisions), every new compliance alert
(``post_save`` of ``compliance.ComplianceAlert``: certifications expiring or expired, a scheduled
evaluation that failed a gate) and ``portfolio.signals.policy_published`` (open change requests on
an older version need a rebase). The receivers only enqueue a task once the transaction commits;
the tasks load what they need and call the functions here.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth import get_user_model
from django.urls import reverse

from audits.models import AuditEvent
from compliance.models import REVIEW_CELLS, AlertKind, ComplianceAlert, MatrixCell
from portfolio.models import OPEN_STATUSES, REVIEW_CHANGES, ChangeRequest, ChangeStatus, PolicyVersion
from registry.models import REVIEW_CREDENTIALS, EndpointCredential, ModelVersion
from steward.roles import REVIEW_VERSIONS

from .models import Kind
from .planning import enqueue, enqueue_after_commit, notify, people_with

CERTIFICATION_OFFICERS = "compliance.change_certificationholding"


# --- audit events: something awaits a decision, or was decided ----------------------------------


def _ask(event: AuditEvent, permission: str, author_id: int | None, subject: str, body: str, link: str) -> int:
    """Tell everyone who may decide (``permission``), the author aside, that something awaits them."""
    people = people_with(permission, besides=author_id)
    return len(notify(people, Kind.AWAITING_DECISION, f"event:{event.pk}", subject, body, link))


def _version_proposed(event: AuditEvent) -> int:
    version = ModelVersion.objects.filter(pk=event.object_id).first()
    if version is None:
        return 0
    subject = f"{version.ref} awaits your decision (proposed by {event.actor_name or 'someone'})"
    return _ask(event, REVIEW_VERSIONS, version.proposed_by_id, subject, event.comment, version.get_absolute_url())


def _cell_requested(event: AuditEvent) -> int:
    cell = MatrixCell.objects.select_related("model_version", "classification").filter(pk=event.object_id).first()
    if cell is None:
        return 0
    subject = f"Matrix cell {cell} awaits your decision (requested by {event.actor_name or 'someone'})"
    return _ask(event, REVIEW_CELLS, cell.requested_by_id, subject, cell.request_note, cell.get_absolute_url())


def _change_in_review(event: AuditEvent) -> int:
    change = ChangeRequest.objects.select_related("policy_set").filter(pk=event.object_id).first()
    if change is None or change.status != ChangeStatus.IN_REVIEW:
        return 0
    revision = (event.after or {}).get("revision")
    what = f"revision {revision} of CR-{change.pk}" if event.action == "change_request.revise" else f"CR-{change.pk}"
    subject = f"{what} ({change.policy_set.slug}): {change.title} awaits your review"
    return _ask(event, REVIEW_CHANGES, change.author_id, subject, change.rationale, change.get_absolute_url())


def _credential_requested(event: AuditEvent) -> int:
    credential = EndpointCredential.objects.filter(pk=event.object_id).first()
    if credential is None:
        return 0
    subject = f"Endpoint credential {credential.env_var} for {', '.join(credential.hosts)} awaits your decision"
    link = credential.get_absolute_url()
    return _ask(event, REVIEW_CREDENTIALS, credential.requested_by_id, subject, credential.description, link)


def _decided(owner_of: Callable[[AuditEvent], tuple[int | None, str, str]]) -> Callable[[AuditEvent], int]:
    """A reaction that tells the owner (proposer, requester, author) of what ``event`` decided."""

    def react(event: AuditEvent) -> int:
        owner_id, what, link = owner_of(event)
        if owner_id is None or owner_id == event.actor_id:
            return 0
        owner = get_user_model().objects.filter(pk=owner_id, is_active=True)
        verb = event.action.rsplit(".", 1)[1]
        verb = {"approve": "approved", "reject": "rejected", "deny": "denied"}.get(verb, verb)
        subject = f"{what} was {verb} by {event.actor_name or 'Steward'}"
        return len(notify(owner, Kind.DECIDED, f"event:{event.pk}", subject, event.comment, link))

    return react


def _version_owner(event: AuditEvent) -> tuple[int | None, str, str]:
    version = ModelVersion.objects.filter(pk=event.object_id).first()
    if version is None:
        return None, "", ""
    return version.proposed_by_id, f"Your proposal {version.ref}", version.get_absolute_url()


def _cell_owner(event: AuditEvent) -> tuple[int | None, str, str]:
    cell = MatrixCell.objects.select_related("model_version", "classification").filter(pk=event.object_id).first()
    if cell is None:
        return None, "", ""
    return cell.requested_by_id, f"Your request for matrix cell {cell}", cell.get_absolute_url()


def _change_owner(event: AuditEvent) -> tuple[int | None, str, str]:
    change = ChangeRequest.objects.filter(pk=event.object_id).first()
    if change is None:
        return None, "", ""
    return change.author_id, f"Your change request CR-{change.pk}: {change.title}", change.get_absolute_url()


def _credential_owner(event: AuditEvent) -> tuple[int | None, str, str]:
    credential = EndpointCredential.objects.filter(pk=event.object_id).first()
    if credential is None:
        return None, "", ""
    return credential.requested_by_id, f"Your request for {credential.env_var}", credential.get_absolute_url()


EVENT_REACTIONS: dict[str, Callable[[AuditEvent], int]] = {
    "model_version.propose": _version_proposed,
    "matrix_cell.request": _cell_requested,
    "change_request.in_review": _change_in_review,
    "change_request.revise": _change_in_review,
    "endpoint_credential.request": _credential_requested,
    "model_version.approve": _decided(_version_owner),
    "model_version.reject": _decided(_version_owner),
    "matrix_cell.approve": _decided(_cell_owner),
    "matrix_cell.deny": _decided(_cell_owner),
    "change_request.approved": _decided(_change_owner),
    "change_request.rejected": _decided(_change_owner),
    "endpoint_credential.approve": _decided(_credential_owner),
    "endpoint_credential.reject": _decided(_credential_owner),
}


def on_audit_event(sender, instance: AuditEvent, created: bool, **kwargs) -> None:
    """``post_save`` of an audit event: enqueue its notifications once the action commits."""
    if created and instance.action in EVENT_REACTIONS:
        enqueue_after_commit("notifications.notify_event", instance.pk)


def notify_for_event(event_id: int) -> int:
    event = AuditEvent.objects.filter(pk=event_id).first()
    if event is None or event.action not in EVENT_REACTIONS:
        return 0
    return EVENT_REACTIONS[event.action](event)


# --- compliance alerts ---------------------------------------------------------------------------

ALERT_KINDS = {
    AlertKind.CERTIFICATION_EXPIRING: (Kind.CERTIFICATION_EXPIRING, CERTIFICATION_OFFICERS),
    AlertKind.CERTIFICATION_EXPIRED: (Kind.CERTIFICATION_EXPIRED, CERTIFICATION_OFFICERS),
    AlertKind.EVALUATION_FAILED: (Kind.EVALUATION_FAILED, REVIEW_VERSIONS),
}


def on_compliance_alert(sender, instance: ComplianceAlert, created: bool, **kwargs) -> None:
    if created and instance.kind in ALERT_KINDS:
        enqueue_after_commit("notifications.notify_alert", instance.pk)


def notify_for_alert(alert_id: int) -> int:
    alert = ComplianceAlert.objects.filter(pk=alert_id).first()
    if alert is None or alert.kind not in ALERT_KINDS:
        return 0
    kind, permission = ALERT_KINDS[alert.kind]
    link = reverse("compliance:certifications") if alert.holding_id else reverse("dashboard")
    return len(notify(people_with(permission), kind, f"alert:{alert.pk}", alert.message, "", link))


# --- a new policy version: open change requests on older ones need a rebase -------------------


def on_policy_published(sender, version: PolicyVersion, **kwargs) -> None:
    enqueue("notifications.notify_rebase", version.pk)


def notify_rebase_needed(version_id: int) -> int:
    version = PolicyVersion.objects.select_related("policy_set").filter(pk=version_id).first()
    # A re-signed version repeats its source's routes: publishing takes the same bases as before, and
    # those it refuses were told at the source's publish. An older version is no longer what counts.
    if version is None or version.source_version_id is not None or version != version.policy_set.current_version():
        return 0
    # As publishing sees it: a base is current when it carries the current version's routes.
    open_changes = ChangeRequest.objects.filter(policy_set=version.policy_set, status__in=OPEN_STATUSES)
    stale = [
        change
        for change in open_changes.select_related("base_version")
        if (change.base_version.content_origin_id if change.base_version else None) != version.content_origin_id
    ]
    told = 0
    for change in stale:
        subject = (
            f"CR-{change.pk}: {change.title} needs a rebase: {version.policy_set.slug} is now at v{version.number}"
        )
        body = "Publishing refuses a change request whose base version is no longer current; rebase it first."
        key = f"rebase:{change.pk}:{version.number}"
        people = get_user_model().objects.filter(pk=change.author_id, is_active=True)
        told += len(notify(people, Kind.NEEDS_REBASE, key, subject, body, change.get_absolute_url()))
    return told
