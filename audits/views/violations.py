"""Violations, newest first, by kind, policy set and date, each linked to its decision."""

from __future__ import annotations

from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from ..filters import ViolationFilter
from ..models import Violation
from .common import (
    VIEW_VIOLATIONS,
    VIOLATION_KEY,
    filtered,
    keyset_page,
    query_string,
)

# --- violations ------------------------------------------------------------------------------------


@permission_required(VIEW_VIOLATIONS, raise_exception=True)
def violations(request: HttpRequest) -> HttpResponse:
    """Violations newest first, by kind, policy set and date, each linked to its decision."""
    filterset = ViolationFilter(
        request.GET or None,
        queryset=Violation.objects.select_related("decision"),
    )
    page = keyset_page(filtered(filterset), VIOLATION_KEY, request)
    context = {"filter": filterset, "page": page, "query": query_string(request)}
    if request.htmx and request.htmx.target == "violation-results":
        return render(request, "audits/_violation_results.html", context)
    return render(request, "audits/violations.html", context)
