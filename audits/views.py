"""Audit pages: the audit trail and its chain status, the changes feed, the decisions explorer with
its charts, exports and each record's chain (decision → model version → policy version → matrix
cell), and violations.

Lists are paged by keyset (``?older=`` / ``?newer=`` cursors on the listing's order), never by
OFFSET and never with a COUNT per page, so the ten-thousandth page of millions of decision records
costs what the first does.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import operator
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.decorators import permission_required
from django.db.models import Count, Q, QuerySet, Sum
from django.http import HttpRequest, HttpResponse, QueryDict, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from compliance.matrix import check
from compliance.models import DataClassification, MatrixCell
from portfolio.models import PolicySet, PolicyVersion, ReviewDecision
from portfolio.policy import Route
from registry.models import ModelVersion

from . import charts
from .events import record
from .exports import decision_csv_lines, decision_jsonl_lines, event_csv_lines
from .filters import AuditEventFilter, ChangeFilter, DecisionFilter, ViolationFilter, violations_for
from .models import AuditEvent, AuditVerification, DecisionRecord, Violation, ViolationKind

VIEW_EVENTS = "audits.view_auditevent"
VIEW_DECISIONS = "audits.view_decisionrecord"
VIEW_VIOLATIONS = "audits.view_violation"
PAGE_SIZE = 50
DEFAULT_DAYS = 30  # the explorer's window when nobody chose one: its totals stay bounded
NOT_CHANGES = ("auth.", "export.")  # actions in the trail that change no governed object
CURSORS = ("older", "newer")


# --- keyset paging -------------------------------------------------------------------------------

Key = tuple[tuple[str, Callable[[str], Any]], ...]
EVENT_KEY: Key = (("seq", int),)
DECISION_KEY: Key = (("occurred_at", parse_datetime), ("pk", int))
VIOLATION_KEY: Key = (("detected_at", parse_datetime), ("pk", int))


@dataclass
class KeysetPage:
    rows: list
    newer: str  # the cursor of the page before this one ("" on the first page)
    older: str  # the cursor of the page after this one ("" on the last page)

    @property
    def has_other_pages(self) -> bool:
        return bool(self.newer or self.older)


def _cursor(row: Any, key: Key) -> str:
    values = [getattr(row, field) for field, _ in key]
    return "~".join(value.isoformat() if isinstance(value, dt.datetime) else str(value) for value in values)


def _parse_cursor(text: str, key: Key) -> list | None:
    parts = text.split("~")
    if len(parts) != len(key):
        return None
    try:
        values = [parse(part) for (_, parse), part in zip(key, parts, strict=True)]
    except ValueError:
        return None
    return None if any(value is None for value in values) else values


def _beyond(key: Key, values: list, lookup: str) -> Q:
    """Rows past ``values`` in the key's lexicographic order (``lt``: older, ``gt``: newer).

    The leading column's bound (``<=`` / ``>=``) is repeated outside the OR so that its index
    serves the range: without it PostgreSQL reads the index from the start for a deep page.
    """
    conditions = []
    for position, (field, _) in enumerate(key):
        equal = {name: value for (name, _), value in zip(key[:position], values, strict=False)}
        conditions.append(Q(**equal, **{f"{field}__{lookup}": values[position]}))
    beyond = functools.reduce(operator.or_, conditions)
    if len(key) > 1:
        beyond &= Q(**{f"{key[0][0]}__{lookup}e": values[0]})
    return beyond


def keyset_page(queryset: QuerySet, key: Key, request: HttpRequest, size: int = PAGE_SIZE) -> KeysetPage:
    """One page of ``queryset``, newest first by ``key`` (unique as a whole), from the request's cursor."""
    descending = [f"-{field}" for field, _ in key]
    ascending = [field for field, _ in key]
    older = _parse_cursor(request.GET.get("older", ""), key)
    newer = None if older else _parse_cursor(request.GET.get("newer", ""), key)
    if newer is not None:
        rows = list(queryset.filter(_beyond(key, newer, "gt")).order_by(*ascending)[: size + 1])
        more = len(rows) > size
        rows = rows[:size][::-1]
        return KeysetPage(rows, _cursor(rows[0], key) if more and rows else "", _cursor(rows[-1], key) if rows else "")
    if older is not None:
        queryset = queryset.filter(_beyond(key, older, "lt"))
    rows = list(queryset.order_by(*descending)[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return KeysetPage(
        rows,
        _cursor(rows[0], key) if older is not None and rows else "",
        _cursor(rows[-1], key) if more else "",
    )


def _query(request: HttpRequest, data: QueryDict | None = None, drop: Iterable[str] = CURSORS) -> str:
    """The request's filters as a query string, without cursors (and without empty values)."""
    data = data if data is not None else request.GET
    return urlencode([(k, v) for k, values in data.lists() for v in values if v != "" and k not in drop])


def _url(name: str, query: str) -> str:
    return reverse(name) + (f"?{query}" if query else "")


def _filtered(filterset) -> QuerySet:
    return filterset.qs if filterset.is_bound else filterset.queryset


def _filters_used(filterset) -> dict[str, str]:
    """The filters an export applied, as plain text for its audit event."""
    if not filterset.is_bound:
        return {}
    return {
        name: value.isoformat() if isinstance(value, dt.date) else str(value)
        for name, value in filterset.form.cleaned_data.items()
        if value not in (None, "")
    }


def _bad_filter(filterset) -> HttpResponse | None:
    """400 with the errors, for an export asked with filters that do not hold."""
    if filterset.is_bound and not filterset.is_valid():
        errors = "; ".join(f"{field}: {' '.join(messages)}" for field, messages in filterset.errors.items())
        return HttpResponse(f"Bad filter: {errors}\n", status=400, content_type="text/plain; charset=utf-8")
    return None


def _attachment(lines: Iterable[str], content_type: str, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(lines, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _stamp() -> str:
    return timezone.now().strftime("%Y%m%dT%H%M%SZ")


# --- events: diffs and links to the objects --------------------------------------------------------


def _shown(value: Any) -> str:
    if value is None:
        return "—"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 160 else f"{text[:159]}…"


def field_diff(before: Any, after: Any) -> list[dict]:
    """What an event changed, field by field: the changed fields with old and new values, or, for
    an event without a ``before`` (a creation, a sign-in), every field of ``after``."""
    before = before if isinstance(before, dict) else ({} if before is None else {"value": before})
    after = after if isinstance(after, dict) else ({} if after is None else {"value": after})
    rows = []
    for field in [*after, *(name for name in before if name not in after)]:
        if field in before and field in after and before[field] == after[field]:
            continue
        rows.append(
            {
                "field": field,
                "had_old": field in before,
                "old": _shown(before.get(field)),
                "has_new": field in after,
                "new": _shown(after.get(field)),
            }
        )
    return rows


def object_links(events: Iterable[AuditEvent]) -> dict[tuple[str, str], str]:
    """Where each event's object has a page: a fixed number of queries for any number of events."""
    ids: dict[str, set[int]] = defaultdict(set)
    for event in events:
        if event.object_id.isdigit():
            ids[event.object_type].add(int(event.object_id))
    links: dict[tuple[str, str], str] = {}
    direct = {
        "registry.modelversion": "registry:version-detail",
        "portfolio.changerequest": "portfolio:change-request",
        "audits.decisionrecord": "audits:decision",
    }
    for object_type, name in direct.items():
        for pk in ids.get(object_type, ()):
            links[(object_type, str(pk))] = reverse(name, args=[pk])
    if ids.get("compliance.matrixcell"):
        cells = MatrixCell.objects.filter(pk__in=ids["compliance.matrixcell"]).values_list(
            "pk", "model_version_id", "classification__slug"
        )
        for pk, version_id, slug in cells:
            links[("compliance.matrixcell", str(pk))] = reverse("compliance:cell", args=[version_id, slug])
    if ids.get("portfolio.policyversion"):
        versions = PolicyVersion.objects.filter(pk__in=ids["portfolio.policyversion"]).values_list(
            "pk", "policy_set__slug", "number"
        )
        for pk, slug, number in versions:
            links[("portfolio.policyversion", str(pk))] = reverse("portfolio:policy-version", args=[slug, number])
    if ids.get("portfolio.policyset"):
        for pk, slug in PolicySet.objects.filter(pk__in=ids["portfolio.policyset"]).values_list("pk", "slug"):
            links[("portfolio.policyset", str(pk))] = reverse("portfolio:policy-set", args=[slug])
    return links


def _event_rows(events: list[AuditEvent]) -> list[dict]:
    links = object_links(events)
    return [
        {
            "event": event,
            "diff": field_diff(event.before, event.after),
            "url": links.get((event.object_type, event.object_id), ""),
        }
        for event in events
    ]


# --- the audit trail -----------------------------------------------------------------------------


@permission_required(VIEW_EVENTS, raise_exception=True)
def audit_trail(request: HttpRequest) -> HttpResponse:
    """Every event, newest first, filtered and paged; above them, the last verification of the chain.

    The page never walks the chain itself: a beat task verifies it against its signed checkpoints
    (``verify_recent``), so a view costs the same with ten events or ten million.
    """
    filterset = AuditEventFilter(request.GET or None, queryset=AuditEvent.objects.all())
    page = keyset_page(_filtered(filterset), EVENT_KEY, request)
    query = _query(request)
    context = {
        "filter": filterset,
        "page": page,
        "rows": _event_rows(page.rows),
        "query": query,
        "csv_url": _url("audits:trail-csv", query),
    }
    if request.htmx and request.htmx.target == "trail-results":
        return render(request, "audits/_trail_results.html", context)
    context["verification"] = AuditVerification.objects.select_related("checkpoint").first()
    context["verify_minutes"] = settings.STEWARD_AUDIT_CHECKPOINT_SECONDS // 60
    return render(request, "audits/trail.html", context)


@permission_required(VIEW_EVENTS, raise_exception=True)
def audit_trail_csv(request: HttpRequest) -> HttpResponse:
    """The filtered events as CSV, streamed; the export itself is an audit event."""
    filterset = AuditEventFilter(request.GET or None, queryset=AuditEvent.objects.all())
    if error := _bad_filter(filterset):
        return error
    record(
        "export.audit_events",
        actor=request.user,
        object_type="audits.auditevent",
        object_repr="audit events (CSV)",
        after={"format": "csv", "filters": _filters_used(filterset)},
    )
    return _attachment(event_csv_lines(_filtered(filterset)), "text/csv; charset=utf-8", f"audit-events-{_stamp()}.csv")


@permission_required(VIEW_EVENTS, raise_exception=True)
def changes(request: HttpRequest) -> HttpResponse:
    """The global changes feed: who changed which governed object, when, and how."""
    events = AuditEvent.objects.exclude(functools.reduce(operator.or_, (Q(action__startswith=p) for p in NOT_CHANGES)))
    filterset = ChangeFilter(request.GET or None, queryset=events)
    page = keyset_page(_filtered(filterset), EVENT_KEY, request)
    context = {"filter": filterset, "page": page, "rows": _event_rows(page.rows), "query": _query(request)}
    if request.htmx and request.htmx.target == "change-results":
        return render(request, "audits/_change_results.html", context)
    return render(request, "audits/changes.html", context)


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


def _totals(decisions: QuerySet[DecisionRecord]) -> dict:
    return decisions.order_by().aggregate(
        decisions=Count("pk"),
        cost=Sum("cost_micro_usd"),
        violations=Count("pk", filter=Q(has_violation=True)),
        escalated=Count("pk", filter=Q(escalated=True)),
    )


@permission_required(VIEW_DECISIONS, raise_exception=True)
def decisions(request: HttpRequest) -> HttpResponse:
    """The decisions explorer: filters, totals for them, a keyset-paged table; charts load beside it."""
    filterset = _decision_filter(request, default_window=True)
    # The content (up to a million characters each) is for the record's own page, not the list.
    listed = filterset.qs.select_related("router").defer("input_content", "output_content")
    page = keyset_page(listed, DECISION_KEY, request)
    query = _query(request, filterset.data)
    context = {
        "filter": filterset,
        "page": page,
        "rows": _decision_rows(page.rows),
        "query": query,
        "csv_url": _url("audits:decisions-csv", query),
        "jsonl_url": _url("audits:decisions-jsonl", query),
        "charts_url": _url("audits:decision-charts", query),
    }
    if request.htmx and request.htmx.target == "decision-table":
        return render(request, "audits/_decision_table.html", context)
    # Totals are one aggregate over the filter, computed when the filter changes, not per page.
    context["totals"] = _totals(filterset.qs)
    if request.htmx and request.htmx.target == "decision-results":
        return render(request, "audits/_decision_results.html", context)
    return render(request, "audits/decisions.html", context)


@permission_required(VIEW_DECISIONS, raise_exception=True)
def decision_charts(request: HttpRequest) -> HttpResponse:
    """Decisions and cost per day (by provider, tier or model), escalation rate by task, violations
    per day: a partial the explorer loads, or a page of its own."""
    filterset = _decision_filter(request, default_window=True)
    grouping = request.GET.get("group", charts.DEFAULT_GROUPING)
    if grouping not in charts.GROUPINGS:
        grouping = charts.DEFAULT_GROUPING
    query = _query(request, filterset.data, drop=(*CURSORS, "group"))
    context = {
        "filter": filterset,
        "figures": charts.decision_charts(filterset.qs, grouping, violations_for(filterset)),
        "grouping": grouping,
        "groupings": list(charts.GROUPINGS),
        "query": query,
    }
    if request.htmx:
        return render(request, "audits/_decision_charts.html", context)
    return render(request, "audits/decision_charts.html", context)


def _decision_export(request: HttpRequest, fmt: str) -> HttpResponse:
    filterset = _decision_filter(request, default_window=False)
    if error := _bad_filter(filterset):
        return error
    record(
        "export.decisions",
        actor=request.user,
        object_type="audits.decisionrecord",
        object_repr=f"decision records ({fmt.upper()})",
        after={"format": fmt, "filters": _filters_used(filterset)},
    )
    decisions = _filtered(filterset)
    if fmt == "csv":
        return _attachment(decision_csv_lines(decisions), "text/csv; charset=utf-8", f"decisions-{_stamp()}.csv")
    return _attachment(
        decision_jsonl_lines(decisions), "application/x-ndjson; charset=utf-8", f"decisions-{_stamp()}.jsonl"
    )


@permission_required(VIEW_DECISIONS, raise_exception=True)
def decisions_csv(request: HttpRequest) -> HttpResponse:
    """The filtered decision records as CSV, streamed in constant memory."""
    return _decision_export(request, "csv")


@permission_required(VIEW_DECISIONS, raise_exception=True)
def decisions_jsonl(request: HttpRequest) -> HttpResponse:
    """The filtered decision records as JSON Lines, streamed in constant memory."""
    return _decision_export(request, "jsonl")


PLACES = {"primary": "the route's primary model", "escalation": "the route's escalation target"}


def _route(policy: PolicyVersion | None, decision: DecisionRecord) -> tuple[Route | None, str]:
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
    compliance verdict at the decision's time, and the violations found."""
    version = ModelVersion.objects.with_related().filter(ref=decision.model).first()
    approvals = list(version.transitions.filter(action="approve").select_related("actor")) if version else []
    # A version re-approved after a restriction has several; the one in force is the last before the decision.
    approval = next((t for t in reversed(approvals) if t.at <= decision.occurred_at), None)
    policy = (
        PolicyVersion.objects.select_related(
            "policy_set",
            "release",
            "author",
            "published_by",
            "change_request__author",
            "source_version__change_request__author",
        )
        .filter(policy_set__slug=decision.policy_set, number=decision.policy_version)
        .first()
    )
    # A re-signed version repeats another's routes; the approvals are that version's.
    origin = policy.source_version if policy and policy.source_version_id else policy
    change_request = origin.change_request if origin else None
    reviews = (
        list(change_request.reviews.filter(decision=ReviewDecision.APPROVE).select_related("reviewer"))
        if change_request
        else []
    )
    route, place = _route(policy, decision)
    classification = DataClassification.objects.filter(slug=decision.classification).first()
    verdict = cell = cell_then = None
    cell_changed = False
    if version is not None and classification is not None:
        verdict = check(version, classification, decision.occurred_at)
        cell = (
            MatrixCell.objects.select_related("decided_by", "suspended_by")
            .filter(model_version=version, classification=classification)
            .first()
        )
        if cell is not None:
            history = cell.history.order_by("-history_date", "-history_id")
            then = history.filter(history_date__lte=decision.occurred_at)
            cell_then = then.select_related("decided_by", "history_user").first()
            latest = history.values_list("history_id", flat=True).first()
            cell_changed = cell_then is not None and cell_then.history_id != latest
    release = getattr(policy, "release", None) if policy else None
    return {
        "version": version,
        "approvals": approvals,
        "approval": approval,
        "policy": policy,
        "origin": origin,
        "release": release,
        "expired_at_decision": bool(release and release.expires < decision.occurred_at),
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


@permission_required(VIEW_DECISIONS, raise_exception=True)
def decision(request: HttpRequest, pk: int) -> HttpResponse:
    """One decision record and the chain behind it."""
    found = get_object_or_404(DecisionRecord.objects.select_related("router"), pk=pk)
    return render(request, "audits/decision.html", {"decision": found, **decision_chain(found)})


# --- violations ------------------------------------------------------------------------------------


@permission_required(VIEW_VIOLATIONS, raise_exception=True)
def violations(request: HttpRequest) -> HttpResponse:
    """Violations newest first, by kind, policy set and date, each linked to its decision."""
    filterset = ViolationFilter(
        request.GET or None,
        queryset=Violation.objects.select_related("decision").defer(
            "decision__input_content", "decision__output_content"
        ),
    )
    page = keyset_page(_filtered(filterset), VIOLATION_KEY, request)
    context = {"filter": filterset, "page": page, "query": _query(request)}
    if request.htmx and request.htmx.target == "violation-results":
        return render(request, "audits/_violation_results.html", context)
    return render(request, "audits/violations.html", context)
