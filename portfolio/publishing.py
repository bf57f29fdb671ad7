"""Publishing: an approved change request becomes the next, immutable version of its policy set."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from audits import events as audit

from .models import PUBLISH_CHANGES, ChangeRequest, ChangeStatus, PolicySet, PolicyVersion
from .policy import normalise
from .signals import announce_published
from .signing import sign_release
from .validation import validate_document


class StaleBaseError(ValidationError):
    """The change request starts from a version that is no longer current: rebase it first."""


def publish(change_request: ChangeRequest, by) -> PolicyVersion:
    """Publish ``change_request`` as version N+1 of its set, on behalf of officer ``by``.

    Atomic: the policy set's row is locked, so of two requests from the same base published at
    the same moment exactly one wins; the other gets StaleBaseError. Validation runs again.
    """
    if not by.has_perm(PUBLISH_CHANGES):
        raise PermissionDenied("Only governance officers can publish change requests.")
    with transaction.atomic():
        policy_set = PolicySet.objects.select_for_update().get(pk=change_request.policy_set_id)
        locked = ChangeRequest.objects.select_for_update().get(pk=change_request.pk)
        if locked.status == ChangeStatus.PUBLISHED:
            raise ValidationError({"status": [f"{locked} is already published."]})
        if locked.status != ChangeStatus.APPROVED:
            approvals = locked.active_approvals().count()
            raise ValidationError(
                {
                    "status": [
                        f"{locked} is {locked.get_status_display().lower()}; publishing needs "
                        f"{policy_set.required_approvals} approval(s) of the latest revision (it has {approvals})."
                    ]
                }
            )
        current = policy_set.versions.select_related("source_version").order_by("-number").first()
        base = locked.base_version
        # A re-signed version repeats its source's routes: a change based on either is current.
        if (current.content_origin_id if current else None) != (base.content_origin_id if base else None):
            base_name = f"v{base.number}" if base else "no version"
            raise StaleBaseError(
                {
                    "base_version": [
                        f"{locked} starts from {base_name}, but {policy_set.slug} is now at v{current.number}. "
                        "Rebase it into a new revision on the current version (its approvals will be dismissed)."
                    ]
                }
            )
        revision = locked.latest_revision()
        result = validate_document(revision.document, policy_set)
        if not result.ok:
            raise ValidationError({"policy": [str(error) for error in result.errors]})
        version = PolicyVersion.objects.create(
            policy_set=policy_set,
            number=(current.number if current else 0) + 1,
            document=revision.document,
            spec=normalise(result.document),
            change_request=locked,
            provenance="change-request",
            author=locked.author,
            approvers=locked.approver_names(),
            published_by=by,
            published_at=timezone.now(),
        )
        release = sign_release(version)
        audit.record(
            "policy.publish",
            actor=by,
            obj=version,
            after={
                "policy_set": policy_set.slug,
                "version": version.number,
                "change_request": locked.pk,
                "approvers": version.approvers,
                "sha256": release.sha256,
            },
        )
        locked.status = ChangeStatus.PUBLISHED
        locked.updated_at = timezone.now()
        locked._history_user = by
        locked._change_reason = f"published as {policy_set.slug} v{version.number}"
        locked.save()
        announce_published(version)
    change_request.refresh_from_db()
    return version


def rebase(change_request: ChangeRequest, by) -> None:
    """Move an open change request onto its set's current version, as a new revision of the same text."""
    current = change_request.policy_set.current_version()
    revision = change_request.latest_revision()
    if revision is None:
        raise ValidationError({"policy": ["There is nothing to rebase yet."]})
    change_request.add_revision(by, revision.document, base_version=current)


def start_change(policy_set: PolicySet, by, title: str, rationale: str, document: str | None = None) -> ChangeRequest:
    """A new change request on the set's current version; its first revision is ``document`` or the current text."""
    from .models import PROPOSE_CHANGES

    if not by.has_perm(PROPOSE_CHANGES):
        raise PermissionDenied("Only engineers can write change requests.")
    errors = {}
    if not (title or "").strip():
        errors["title"] = ["A title is required."]
    if errors:
        raise ValidationError(errors)
    current = policy_set.current_version()
    with transaction.atomic():
        change_request = ChangeRequest(
            policy_set=policy_set,
            title=title.strip(),
            rationale=(rationale or "").strip(),
            author=by,
            base_version=current,
        )
        change_request._history_user = by
        change_request.save()
        audit.record(
            "change_request.create",
            actor=by,
            obj=change_request,
            after={"policy_set": policy_set.slug, "title": change_request.title},
        )
        text = document if document is not None else (current.document if current else "default: deny\nroutes: []\n")
        change_request.add_revision(by, text)
    return change_request
