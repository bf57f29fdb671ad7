"""Audit pages: the audit trail and its chain status, the changes feed, decisions, violations."""

from __future__ import annotations

from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from .models import DecisionRecord


@permission_required("audits.view_auditevent", raise_exception=True)
def audit_trail(request: HttpRequest) -> HttpResponse:
    return render(request, "audits/trail.html", {})


@permission_required("audits.view_decisionrecord", raise_exception=True)
def decisions(request: HttpRequest) -> HttpResponse:
    return render(request, "audits/decisions.html", {})


@permission_required("audits.view_decisionrecord", raise_exception=True)
def decision(request: HttpRequest, pk: int) -> HttpResponse:
    return render(request, "audits/decision.html", {"decision": get_object_or_404(DecisionRecord, pk=pk)})
