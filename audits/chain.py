"""The auditor's core question, answered for one decision record: what stands behind it.

The model version and the approval in force, the policy version with its change request and
approvers, the route and the model's place in it, the matrix cell's decision then and now, the
compliance verdict at the decision's time, and the violations found. The decision page, the API
(``GET /api/v1/decisions/<id>/chain``) and exports share it.
"""

from __future__ import annotations

from django.urls import reverse

from compliance.models import MatrixCell
from portfolio.models import PolicyVersion, ReviewDecision
from portfolio.policy import Route

from .judging import PolicyBook
from .models import DecisionRecord

PLACES = {"primary": "the route's primary model", "escalation": "the route's escalation target"}


def route_and_place(policy: PolicyVersion | None, decision: DecisionRecord) -> tuple[Route | None, str]:
    """The policy's route for the decision's task and classification, and the model's place in it."""
    if policy is None:
        return None, ""
    route = policy.route_for(decision.task, decision.classification)
    if route is None:
        return None, "no route: the policy's default (deny) applies"
    place = route.place_of(decision.model)
    if place is None:
        return route, "not allowed by this route"
    return route, PLACES.get(place, place.replace("fallback ", "fallback #"))


def decision_chain(decision: DecisionRecord) -> dict:
    """Everything that stands behind one decision: the model version and its approval, the policy
    version with its change request and approvers, the matrix cell's approval then and now, the
    compliance verdict at the decision's moment, and the violations found.

    What was in force at the decision's moment comes from ``PolicyBook.in_force``, the function
    whose violations ingest stored: the page and the violations agree by construction."""
    judged = PolicyBook.for_decision(decision).in_force(decision)
    version = judged.model
    approvals = list(version.transitions.filter(action="approve").select_related("actor")) if version else []
    # A version re-approved after a restriction has several; the one in force is the last before the decision.
    approval = next((t for t in reversed(approvals) if t.at <= judged.moment), None)
    policy = (
        PolicyVersion.objects.select_related(
            "policy_set",
            "release",
            "author",
            "published_by",
            "change_request__author",
            "source_version__change_request__author",
        )
        .filter(pk=judged.policy.pk)
        .first()
        if judged.policy
        else None
    )
    # A re-signed version repeats another's routes; the approvals are that version's.
    origin = policy.source_version if policy and policy.source_version_id else policy
    change_request = origin.change_request if origin else None
    reviews = (
        list(change_request.reviews.filter(decision=ReviewDecision.APPROVE).select_related("reviewer"))
        if change_request
        else []
    )
    route, place = route_and_place(policy, decision)
    classification, verdict = judged.classification, judged.verdict
    cell_then = verdict.cell if verdict else None
    cell = None
    cell_changed = False
    if version is not None and classification is not None:
        cell = (
            MatrixCell.objects.select_related("decided_by", "suspended_by")
            .filter(model_version=version, classification=classification)
            .first()
        )
        if cell is not None:
            now = (cell.decision, cell.decided_at, cell.expires_at, cell.suspended_at)
            then = (
                (cell_then.decision, cell_then.decided_at, cell_then.expires_at, cell_then.suspended_at)
                if cell_then
                else None
            )
            cell_changed = then is not None and then != now
    release = getattr(policy, "release", None) if policy else None
    # A version published only after Steward received the decision did not stand behind it.
    published_later = (
        None
        if policy
        else PolicyVersion.objects.filter(policy_set__slug=decision.policy_set, number=decision.policy_version)
        .values_list("published_at", flat=True)
        .first()
    )
    return {
        "judged": judged,
        "moment": judged.moment,
        "status_then": judged.status,
        "version": version,
        "approvals": approvals,
        "approval": approval,
        "policy": policy,
        "origin": origin,
        "release": release,
        "published_at_decision": judged.published,
        "published_later": published_later,
        "expired_at_decision": judged.expired,
        "superseded_by": judged.superseded_by,
        "superseded_at": judged.superseded_at,
        "change_request": change_request,
        "reviews": reviews,
        "route": route,
        "place": place,
        "classification": classification,
        "verdict": verdict,
        "cell": cell,
        "cell_then": cell_then,
        "cell_changed": cell_changed,
        "cell_url": reverse("compliance:cell", args=[version.pk, classification.slug])
        if version and classification
        else "",
        "violations": list(decision.violations.all()),
    }


def _when(moment) -> str | None:
    return moment.isoformat() if moment else None


def chain_json(decision: DecisionRecord, chain: dict | None = None) -> dict:
    """The chain of one decision as JSON: what the API answers and exports carry."""
    chain = chain or decision_chain(decision)
    version, policy, change_request = chain["version"], chain["policy"], chain["change_request"]
    approval, verdict, route = chain["approval"], chain["verdict"], chain["route"]
    cell, cell_then, release = chain["cell"], chain["cell_then"], chain["release"]
    return {
        "decision": {
            "id": decision.pk,
            "request_id": decision.request_id,
            "occurred_at": _when(decision.occurred_at),
            "judged_at": _when(chain["moment"]),
            "policy_set": decision.policy_set,
            "policy_version": decision.policy_version,
            "task": decision.task,
            "classification": decision.classification,
            "model": decision.model,
        },
        "model_version": {
            "ref": version.ref,
            "status": version.status,
            "status_at_decision": chain["status_then"],
            "approved_by": approval.actor.get_username() if approval else None,
            "approved_at": _when(approval.at) if approval else None,
            "approval_comment": approval.comment if approval else None,
            # The decision's tokens at the version's prices, beside the cost the router reported.
            "priced_micro_usd": version.price_micro_usd(decision.input_tokens, decision.output_tokens),
        }
        if version
        else None,
        "policy_version": {
            "policy_set": policy.policy_set.slug,
            "number": policy.number,
            "provenance": policy.provenance,
            "published_at": _when(policy.published_at),
            "source_version": chain["origin"].number if chain["origin"] else None,
            "expires": _when(release.expires) if release else None,
            "published_at_decision": chain["published_at_decision"],
            "expired_at_decision": chain["expired_at_decision"],
            "superseded_by": chain["superseded_by"],
            "superseded_at": _when(chain["superseded_at"]),
        }
        if policy
        else None,
        "change_request": {
            "id": change_request.pk,
            "title": change_request.title,
            "author": change_request.author.get_username(),
            "approvers": [
                {"reviewer": r.reviewer.get_username(), "at": _when(r.created_at), "comment": r.comment}
                for r in chain["reviews"]
            ],
        }
        if change_request
        else None,
        "route": route.as_spec() if route else None,
        "place": chain["place"],
        "compliance": {
            "usable": verdict.usable,
            "state": verdict.state,
            "reasons": verdict.reasons,
            "cell_decision_then": cell_then.decision if cell_then else None,
            "cell_decision_now": cell.decision if cell else None,
            "cell_changed_since": chain["cell_changed"],
        }
        if verdict
        else None,
        "violations": [{"kind": v.kind, "detail": v.detail} for v in chain["violations"]],
    }
