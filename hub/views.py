"""The pages that read every app: the dashboard, the approvals inbox and the global search."""

from __future__ import annotations

import datetime as dt

from django.contrib.auth.decorators import permission_required
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from audits.models import Violation, ViolationKind
from compliance.alerts import open_alerts
from hub import inbox
from hub.charts import versions_by_provider_chart
from hub.search import MAX_QUERY, search
from portfolio.feed import stale_router_count
from portfolio.models import ChangeRequest
from portfolio.signing import expiring_releases
from registry.models import EvaluationRun, ModelVersion, Status, VersionTransition
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
    pending_cells = list(inbox.cells_awaiting(request.user))
    recent = VersionTransition.objects.select_related("version", "actor").order_by("-at", "-pk")[:12]
    context = {
        "alerts": open_alerts() if request.user.has_perm("compliance.view_compliancealert") else [],
        "status_counts": status_counts,
        "total_versions": sum(by_status.values()),
        "pending": pending,
        "pending_changes": pending_changes,
        "pending_cells": pending_cells,
        "awaiting_count": len(pending) + len(pending_changes) + len(pending_cells),
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
    """What awaits the signed-in officer: model versions, matrix cells, routing change requests and
    endpoint credentials, filtered by kind and text. Their own proposals are listed apart, for another
    officer; approved change requests wait for a publisher."""
    kinds = [kind for kind in request.GET.getlist("kind") if kind in inbox.KINDS]
    found = inbox.inbox_for(request.user, kinds, request.GET.get("q", ""))
    context = {
        "inbox": found,
        "kinds": inbox.KINDS,
        "own": inbox.own_proposals(request.user),
        "filtered": bool(kinds or found.q),
    }
    if request.htmx and request.htmx.target == "inbox-results":
        return render(request, "_inbox_results.html", context)
    return render(request, "approvals.html", context)


@require_GET
def inbox_badge(request: HttpRequest) -> HttpResponse:
    """The nav badge: how many things await the signed-in person (loaded by htmx after the page, so
    that no page pays for it)."""
    return render(request, "_inbox_badge.html", {"awaiting": inbox.awaiting_count(request.user)})


@require_GET
def global_search(request: HttpRequest) -> HttpResponse:
    """The top bar's search: what the signed-in person may read that matches ``q``."""
    query = request.GET.get("q", "")
    if len(query) > MAX_QUERY:
        return render(
            request, "search.html", {"results": None, "error": f"q: at most {MAX_QUERY} characters"}, status=400
        )
    return render(request, "search.html", {"results": search(request.user, query)})
