"""The audit trail with the last verification of its chain, its CSV export, and the changes feed."""

from __future__ import annotations

import functools
import json
import operator
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import permission_required
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from compliance.models import MatrixCell
from portfolio.models import PolicySet, PolicyVersion

from ..events import record
from ..exports import event_csv_lines
from ..filters import AuditEventFilter, ChangeFilter
from ..models import AuditEvent, AuditVerification
from .common import (
    EVENT_KEY,
    NOT_CHANGES,
    VIEW_EVENTS,
    attachment,
    bad_filter,
    filtered,
    filters_used,
    keyset_page,
    query_string,
    stamp,
    url_with,
)

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
    page = keyset_page(filtered(filterset), EVENT_KEY, request)
    query = query_string(request)
    context = {
        "filter": filterset,
        "page": page,
        "rows": _event_rows(page.rows),
        "query": query,
        "csv_url": url_with("audits:trail-csv", query),
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
    if error := bad_filter(filterset):
        return error
    record(
        "export.audit_events",
        actor=request.user,
        object_type="audits.auditevent",
        object_repr="audit events (CSV)",
        after={"format": "csv", "filters": filters_used(filterset)},
    )
    return attachment(event_csv_lines(filtered(filterset)), "text/csv; charset=utf-8", f"audit-events-{stamp()}.csv")


@permission_required(VIEW_EVENTS, raise_exception=True)
def changes(request: HttpRequest) -> HttpResponse:
    """The global changes feed: who changed which governed object, when, and how."""
    events = AuditEvent.objects.exclude(functools.reduce(operator.or_, (Q(action__startswith=p) for p in NOT_CHANGES)))
    filterset = ChangeFilter(request.GET or None, queryset=events)
    page = keyset_page(filtered(filterset), EVENT_KEY, request)
    context = {"filter": filterset, "page": page, "rows": _event_rows(page.rows), "query": query_string(request)}
    if request.htmx and request.htmx.target == "change-results":
        return render(request, "audits/_change_results.html", context)
    return render(request, "audits/changes.html", context)
