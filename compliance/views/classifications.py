"""Data classifications: their rules (certifications, residency, content storage, retention)."""

from __future__ import annotations

from collections import Counter

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from registry.models import ModelVersion, Status
from steward.history import history_rows

from ..forms import (
    ClassificationForm,
)
from ..matrix import Matrix
from ..models import (
    CellDecision,
    DataClassification,
)

# --- classifications -----------------------------------------------------------------------------


@permission_required("compliance.view_dataclassification", raise_exception=True)
def classifications_page(request: HttpRequest) -> HttpResponse:
    """Each classification, what it requires, and how many versions are usable for it now."""
    classifications = list(DataClassification.objects.prefetch_related("required_certifications"))
    # Only approved versions with an approved cell can be usable; the Matrix decides which are.
    candidates = (
        ModelVersion.objects.with_related()
        .filter(status=Status.APPROVED, matrix_cells__decision=CellDecision.APPROVED)
        .distinct()
    )
    matrix = Matrix(candidates, classifications)
    usable = Counter(c.pk for _, cells in matrix.rows() for c, verdict in cells if verdict.usable)
    rows = [{"classification": c, "usable": usable[c.pk]} for c in classifications]
    context = {
        "rows": rows,
        "can_add": request.user.has_perm("compliance.add_dataclassification"),
        "can_change": request.user.has_perm("compliance.change_dataclassification"),
    }
    return render(request, "compliance/classifications.html", context)


def _classification_form(request: HttpRequest, instance: DataClassification | None) -> HttpResponse:
    form = ClassificationForm(request.POST or None, instance=instance)
    if request.method == "POST" and form.is_valid():
        classification = form.save()
        verb = "updated" if instance else "added"
        messages.success(request, f"Classification {classification.slug} {verb}.")
        return redirect("compliance:classifications")
    status = 400 if request.method == "POST" else 200
    context = {"form": form, "instance": instance, "history": history_rows(instance) if instance else None}
    return render(request, "compliance/classification_form.html", context, status=status)


@permission_required("compliance.add_dataclassification", raise_exception=True)
def add_classification(request: HttpRequest) -> HttpResponse:
    return _classification_form(request, None)


@permission_required("compliance.change_dataclassification", raise_exception=True)
def edit_classification(request: HttpRequest, slug: str) -> HttpResponse:
    return _classification_form(request, get_object_or_404(DataClassification, slug=slug))
