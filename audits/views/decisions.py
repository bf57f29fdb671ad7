"""The decisions explorer: filters, totals, charts, streaming CSV/JSONL exports, and a decision's chain."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from django.contrib.auth.decorators import permission_required
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone

from registry.models import ModelVersion

from .. import charts
from ..chain import decision_chain
from ..events import record
from ..exports import decision_csv_lines, decision_jsonl_lines
from ..filters import DecisionFilter, rollups_for, violations_for
from ..models import DecisionRecord, Violation, ViolationKind
from .common import (
    CURSORS,
    DECISION_KEY,
    DEFAULT_DAYS,
    VIEW_DECISIONS,
    attachment,
    bad_filter,
    filtered,
    filters_used,
    keyset_page,
    query_string,
    stamp,
    url_with,
)

# --- decisions -----------------------------------------------------------------------------------


def _decision_filter(request: HttpRequest, *, default_window: bool) -> DecisionFilter:
    """The explorer's filters from the request; pages without a chosen start get the last 30 days
    (shown in the form, so clearing it shows everything), exports take exactly what they are given."""
    data = request.GET.copy()
    if default_window and "since" not in data:
        data["since"] = (timezone.now().date() - dt.timedelta(days=DEFAULT_DAYS - 1)).isoformat()
    return DecisionFilter(data or None, queryset=DecisionRecord.objects.all())


def _decision_rows(decisions: list[DecisionRecord]) -> list[dict]:
    """A page's rows with their violation kinds and model links, in two queries."""
    kinds: dict[int, list[str]] = defaultdict(list)
    flagged = [d.pk for d in decisions if d.has_violation]
    if flagged:
        for decision_id, kind in Violation.objects.filter(decision_id__in=flagged).values_list("decision_id", "kind"):
            kinds[decision_id].append(kind)
    refs = {d.model for d in decisions}
    versions = dict(ModelVersion.objects.filter(ref__in=refs).values_list("ref", "pk")) if refs else {}
    return [
        {
            "decision": d,
            "kinds": sorted(kinds.get(d.pk, [])),
            "model_url": reverse("registry:version-detail", args=[versions[d.model]]) if d.model in versions else "",
            "policy_url": ""
            if ViolationKind.UNKNOWN_POLICY in kinds.get(d.pk, [])
            else reverse("portfolio:policy-version", args=[d.policy_set, d.policy_version]),
        }
        for d in decisions
    ]


TOTALS_BOUND = 10_000  # records counted, at most, for a filter the rollups cannot answer


def _totals(filterset: DecisionFilter) -> dict:
    """The filter's totals from the rollups, one query; for a filter on what they do not carry (a
    router, a violation kind), the matching records counted up to TOTALS_BOUND and no sums, since
    summing millions of records cannot answer while the page loads."""
    rollups, unanswered = rollups_for(filterset)
    if not unanswered:
        sums = rollups.aggregate(
            decisions=Sum("requests"),
            cost=Sum("cost_micro_usd"),
            violations=Sum("violations"),
            escalated=Sum("escalations"),
        )
        return {name: value or 0 for name, value in sums.items()} | {"exact": True}
    counted = filterset.qs.order_by().values("pk")[: TOTALS_BOUND + 1].count()
    return {
        "exact": False,
        "decisions": min(counted, TOTALS_BOUND),
        "more": counted > TOTALS_BOUND,
        "unanswered": unanswered,
    }


@permission_required(VIEW_DECISIONS, raise_exception=True)
def decisions(request: HttpRequest) -> HttpResponse:
    """The decisions explorer: filters, totals for them, a keyset-paged table; charts load beside it."""
    filterset = _decision_filter(request, default_window=True)
    # The content lives in its own table: it is for the record's own page, not the list.
    listed = filterset.qs.select_related("router")
    page = keyset_page(listed, DECISION_KEY, request)
    query = query_string(request, filterset.data)
    context = {
        "filter": filterset,
        "page": page,
        "rows": _decision_rows(page.rows),
        "query": query,
        "csv_url": url_with("audits:decisions-csv", query),
        "jsonl_url": url_with("audits:decisions-jsonl", query),
        "charts_url": url_with("audits:decision-charts", query),
    }
    if request.htmx and request.htmx.target == "decision-table":
        return render(request, "audits/_decision_table.html", context)
    # Totals are one aggregate over the filter, computed when the filter changes, not per page.
    context["totals"] = _totals(filterset)
    if request.htmx and request.htmx.target == "decision-results":
        return render(request, "audits/_decision_results.html", context)
    return render(request, "audits/decisions.html", context)


@permission_required(VIEW_DECISIONS, raise_exception=True)
def decision_charts(request: HttpRequest) -> HttpResponse:
    """Decisions and cost per day (by provider, tier or model), escalation rate by task, violations
    found per day: a partial the explorer loads, or a page of its own. Drawn from the rollups; for a
    filter they do not carry (a router, a violation kind) the page says so instead of drawing them."""
    filterset = _decision_filter(request, default_window=True)
    grouping = request.GET.get("group", charts.DEFAULT_GROUPING)
    if grouping not in charts.GROUPINGS:
        grouping = charts.DEFAULT_GROUPING
    query = query_string(request, filterset.data, drop=(*CURSORS, "group"))
    rollups, unanswered = rollups_for(filterset)
    violations = violations_for(filterset)
    context = {
        "filter": filterset,
        "figures": None if unanswered else charts.decision_charts(rollups, grouping, violations),
        "unanswered": unanswered,
        "violations_figure": charts.violations_chart(violations) if unanswered and violations is not None else None,
        "grouping": grouping,
        "groupings": list(charts.GROUPINGS),
        "query": query,
    }
    if request.htmx:
        return render(request, "audits/_decision_charts.html", context)
    return render(request, "audits/decision_charts.html", context)


def _decision_export(request: HttpRequest, fmt: str) -> HttpResponse:
    filterset = _decision_filter(request, default_window=False)
    if error := bad_filter(filterset):
        return error
    record(
        "export.decisions",
        actor=request.user,
        object_type="audits.decisionrecord",
        object_repr=f"decision records ({fmt.upper()})",
        after={"format": fmt, "filters": filters_used(filterset)},
    )
    decisions = filtered(filterset)
    if fmt == "csv":
        return attachment(decision_csv_lines(decisions), "text/csv; charset=utf-8", f"decisions-{stamp()}.csv")
    return attachment(
        decision_jsonl_lines(decisions), "application/x-ndjson; charset=utf-8", f"decisions-{stamp()}.jsonl"
    )


@permission_required(VIEW_DECISIONS, raise_exception=True)
def decisions_csv(request: HttpRequest) -> HttpResponse:
    """The filtered decision records as CSV, streamed in constant memory."""
    return _decision_export(request, "csv")


@permission_required(VIEW_DECISIONS, raise_exception=True)
def decisions_jsonl(request: HttpRequest) -> HttpResponse:
    """The filtered decision records as JSON Lines, streamed in constant memory."""
    return _decision_export(request, "jsonl")


@permission_required(VIEW_DECISIONS, raise_exception=True)
def decision(request: HttpRequest, pk: int) -> HttpResponse:
    """One decision record, its kept content (or when retention removed it) and the chain behind it."""
    found = get_object_or_404(DecisionRecord.objects.select_related("router"), pk=pk)
    content = found.read_content()
    context = {
        "decision": found,
        "content": content,
        "content_removed_at": found.content_removed_at if content is None else None,
        **decision_chain(found),
    }
    return render(request, "audits/decision.html", context)
