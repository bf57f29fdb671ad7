"""Certifications: the catalogue, holdings with their evidence and expiry."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.db.models import Count
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from ..alerts import EXPIRY_WARNING_DAYS
from ..forms import (
    CertificationForm,
    HoldingForm,
)
from ..models import (
    Certification,
    CertificationHolding,
)

# --- certifications and their evidence -----------------------------------------------------------


def _holding_rows(today: dt.date) -> list[dict]:
    holdings = CertificationHolding.objects.select_related("certification", "provider", "model_version", "recorded_by")
    rows = []
    for holding in holdings:
        days = (holding.valid_until - today).days
        if days < 0:
            standing = "expired"
        elif holding.valid_from > today:
            standing = "not-yet"
        elif days <= EXPIRY_WARNING_DAYS:
            standing = "expiring"
        else:
            standing = "valid"
        rows.append({"holding": holding, "days": days, "days_ago": -days, "standing": standing})
    return rows


def _certifications_page(
    request: HttpRequest,
    certification_form: CertificationForm | None = None,
    holding_form: HoldingForm | None = None,
    status: int = 200,
) -> HttpResponse:
    today = timezone.localdate()
    context = {
        "catalogue": Certification.objects.annotate(holding_count=Count("holdings"))
        .prefetch_related("classifications")
        .order_by("name"),
        "holdings": _holding_rows(today),
        "today": today,
        "warning_days": EXPIRY_WARNING_DAYS,
        "certification_form": certification_form or CertificationForm(),
        "holding_form": holding_form or HoldingForm(),
        "can_add_certification": request.user.has_perm("compliance.add_certification"),
        "can_add_holding": request.user.has_perm("compliance.add_certificationholding"),
    }
    return render(request, "compliance/certifications.html", context, status=status)


@permission_required("compliance.view_certificationholding", raise_exception=True)
def certifications_page(request: HttpRequest) -> HttpResponse:
    return _certifications_page(request)


@require_POST
@permission_required("compliance.add_certification", raise_exception=True)
def add_certification(request: HttpRequest) -> HttpResponse:
    form = CertificationForm(request.POST)
    if form.is_valid():
        certification = form.save()
        messages.success(request, f"{certification.name} added to the catalogue.")
        return redirect("compliance:certifications")
    return _certifications_page(request, certification_form=form, status=400)


@require_POST
@permission_required("compliance.add_certificationholding", raise_exception=True)
def add_holding(request: HttpRequest) -> HttpResponse:
    """Record a holding; its evidence file is stored only when everything is valid."""
    form = HoldingForm(request.POST, request.FILES)
    form.instance.recorded_by = request.user
    if form.is_valid():
        holding = form.save()
        messages.success(request, f"Recorded: {holding}.")
        return redirect("compliance:certifications")
    return _certifications_page(request, holding_form=form, status=400)


@permission_required("compliance.view_certificationholding", raise_exception=True)
def evidence_file(request: HttpRequest, holding_pk: int) -> FileResponse:
    """A holding's evidence file, as a download for signed-in roles (never a public media URL)."""
    holding = get_object_or_404(CertificationHolding, pk=holding_pk)
    if not holding.evidence_file:
        raise Http404("This holding has no evidence file.")
    try:
        handle = holding.evidence_file.open("rb")
    except FileNotFoundError as error:
        raise Http404("The evidence file is missing from storage.") from error
    return FileResponse(handle, as_attachment=True, filename=Path(holding.evidence_file.name).name)
