"""The pages that read every app: the dashboard and the approvals inbox."""

from __future__ import annotations

import datetime as dt

from django.contrib.auth.decorators import permission_required
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from audits.models import Violation, ViolationKind
from compliance.alerts import open_alerts
from hub.charts import versions_by_provider_chart
from portfolio.feed import stale_router_count
from portfolio.models import PUBLISH_CHANGES, ChangeRequest, ChangeStatus
from portfolio.signing import expiring_releases
from registry.models import (
    REVIEW_CREDENTIALS,
    CredentialStatus,
    EndpointCredential,
    EvaluationRun,
    ModelVersion,
    Status,
    VersionTransition,
)
from steward.roles import REVIEW_VERSIONS

VIOLATION_PANEL_DAYS = 7


def recent_violations(user) -> list[tuple[str, str, int]]:
    """Violations of the last week by kind (kind, label, count), for those who may read them; one query."""
    if not user.has_perm("audits.view_violation"):
        return []
    since = timezone.now() - dt.timedelta(days=VIOLATION_PANEL_DAYS)
    recent = Violation.objects.filter(detected_at__gte=since)
    counts = dict(recent.values_list("kind").annotate(n=Count("pk")).order_by())
    return [(kind, label, counts[kind]) for kind, label in ViolationKind.choices if kind in counts]


@permission_required("registry.view_modelversion", raise_exception=True)
def dashboard(request: HttpRequest) -> HttpResponse:
    by_status = dict(ModelVersion.objects.values_list("status").annotate(n=Count("id")).order_by())
    status_counts = [(status, by_status.get(status.value, 0)) for status in Status]
    pending = []
    if request.user.has_perm(REVIEW_VERSIONS):
        pending = list(ModelVersion.objects.with_related().awaiting_review_by(request.user).order_by("proposed_at"))
    pending_changes = list(ChangeRequest.objects.awaiting_review_by(request.user))
    recent = VersionTransition.objects.select_related("version", "actor").order_by("-at", "-pk")[:12]
    context = {
        "alerts": open_alerts() if request.user.has_perm("compliance.view_compliancealert") else [],
        "status_counts": status_counts,
        "total_versions": sum(by_status.values()),
        "pending": pending,
        "pending_changes": pending_changes,
        "awaiting_count": len(pending) + len(pending_changes),
        "recent": recent,
        "chart": versions_by_provider_chart(),
        "violations": recent_violations(request.user),
        "expiring_releases": expiring_releases() if request.user.has_perm("portfolio.view_policyrelease") else [],
        "stale_routers": stale_router_count() if request.user.has_perm("portfolio.view_router") else 0,
        "violations_since": (timezone.now() - dt.timedelta(days=VIOLATION_PANEL_DAYS)).date(),
        "recent_runs": recent_evaluation_runs(request.user),
    }
    return render(request, "dashboard.html", context)


RECENT_RUNS = 8


def recent_evaluation_runs(user) -> list[EvaluationRun]:
    """The latest evaluation runs, for those who may read them; one query."""
    if not user.has_perm("registry.view_evaluationrun"):
        return []
    runs = EvaluationRun.objects.select_related("suite", "model_version").order_by("-created_at", "-pk")
    return list(runs[:RECENT_RUNS])


@permission_required(REVIEW_VERSIONS, raise_exception=True)
def approvals_inbox(request: HttpRequest) -> HttpResponse:
    """What awaits the signed-in officer: model versions and routing change requests. Their own
    proposals are listed apart, for another officer; approved change requests wait for a publisher."""
    proposed = ModelVersion.objects.with_related().filter(status=Status.PROPOSED).order_by("proposed_at")
    mine = [v for v in proposed if v.proposed_by_id == request.user.pk]
    others = [v for v in proposed if v.proposed_by_id != request.user.pk]
    ready = []
    if request.user.has_perm(PUBLISH_CHANGES):
        ready = ChangeRequest.objects.filter(status=ChangeStatus.APPROVED).select_related("policy_set", "author")
    credentials = []
    if request.user.has_perm(REVIEW_CREDENTIALS):
        credentials = (
            EndpointCredential.objects.filter(status=CredentialStatus.REQUESTED)
            .exclude(requested_by=request.user)
            .select_related("requested_by")
            .order_by("requested_at")
        )
    context = {
        "pending": others,
        "pending_credentials": credentials,
        "own": mine,
        "pending_changes": ChangeRequest.objects.awaiting_review_by(request.user),
        "ready_to_publish": ready,
    }
    return render(request, "approvals.html", context)
