"""Certifications: the catalogue, holdings with their evidence and expiry."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.db.models import Count, F, Q
from django.db.models.functions import Coalesce
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from steward.forms import add_model_errors

from ..forms import HOLDING_SORTS, CertificationForm, HoldingFilterForm, HoldingForm, RenewHoldingForm
from ..models import ADD_HOLDINGS, EXPIRY_WARNING_DAYS, Certification, CertificationHolding, HoldingStanding

# --- certifications and their evidence -----------------------------------------------------------

DEFAULT_HOLDING_SORT = "certification"


def _holding_rows(filters: HoldingFilterForm, today: dt.date) -> list[dict]:
    """The holdings the filters ask for, in their order, each with its days left and standing."""
    holdings = (
        CertificationHolding.objects.select_related(
            "certification", "provider", "model_version__model__provider", "recorded_by"
        )
        .with_renewed()
        .annotate(holder_provider=Coalesce(F("provider__name"), F("model_version__model__provider__name")))
    )
    values = filters.cleaned_data if filters.is_valid() else {}
    if provider := values.get("provider"):
        holdings = holdings.filter(Q(provider=provider) | Q(model_version__model__provider=provider))
    if state := values.get("state"):
        holdings = holdings.in_standing(state, today)
    sort = values.get("sort") or DEFAULT_HOLDING_SORT
    descending = sort.startswith("-")
    order = HOLDING_SORTS[sort.lstrip("-")]
    holdings = holdings.order_by(*(f"-{field}" if descending else field for field in order), "pk")
    rows = []
    for holding in holdings:
        days = (holding.valid_until - today).days
        standing = holding.standing_on(today)
        rows.append(
            {
                "holding": holding,
                "days": days,
                "days_ago": -days,
                "standing": standing,
                "renewable": not holding.renewed and standing in (HoldingStanding.EXPIRED, HoldingStanding.EXPIRING),
            }
        )
    return rows


def _certifications_page(
    request: HttpRequest,
    certification_form: CertificationForm | None = None,
    holding_form: HoldingForm | None = None,
    status: int = 200,
) -> HttpResponse:
    today = timezone.localdate()
    filters = HoldingFilterForm(request.GET)
    if filters.errors and status == 200:
        status = 400
    query = request.GET.copy()
    query.pop("sort", None)
    context = {
        "catalogue": Certification.objects.annotate(holding_count=Count("holdings"))
        .prefetch_related("classifications")
        .order_by("name"),
        "holdings": _holding_rows(filters, today),
        "filters": filters,
        "sort": (filters.cleaned_data.get("sort") if not filters.errors else "") or DEFAULT_HOLDING_SORT,
        "query": query.urlencode(),
        "today": today,
        "warning_days": EXPIRY_WARNING_DAYS,
        "certification_form": certification_form or CertificationForm(),
        "holding_form": holding_form or HoldingForm(),
        "can_add_certification": request.user.has_perm("compliance.add_certification"),
        "can_add_holding": request.user.has_perm(ADD_HOLDINGS),
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
@permission_required(ADD_HOLDINGS, raise_exception=True)
def add_holding(request: HttpRequest) -> HttpResponse:
    """Record a holding; its evidence file is stored only when everything is valid."""
    form = HoldingForm(request.POST, request.FILES)
    form.instance.recorded_by = request.user
    if form.is_valid():
        holding = form.save()
        messages.success(request, f"Recorded: {holding}.")
        return redirect("compliance:certifications")
    return _certifications_page(request, holding_form=form, status=400)


@permission_required(ADD_HOLDINGS, raise_exception=True)
def renew_holding(request: HttpRequest, holding_pk: int) -> HttpResponse:
    """An officer renews an expired or expiring holding: a new holding with its own evidence."""
    holding = get_object_or_404(
        CertificationHolding.objects.select_related("certification", "provider", "model_version"), pk=holding_pk
    )
    today = timezone.localdate()
    form = RenewHoldingForm(request.POST or None, request.FILES or None, initial=_renewal_initial(holding, today))
    refusal = ""
    try:
        holding.check_renewable(today)
    except ValidationError as error:
        refusal = " ".join(error.messages)
    if request.method == "POST" and not refusal and form.is_valid():
        try:
            renewal = holding.renew(request.user, **form.renewal_fields())
        except ValidationError as error:
            add_model_errors(form, error)
        else:
            messages.success(request, f"Renewed: {renewal}. The earlier holding stays as history.")
            return redirect(f"{reverse('compliance:certifications')}#holding-{renewal.pk}")
    status = 400 if refusal or form.errors else 200
    context = {"holding": holding, "form": form, "refusal": refusal, "today": today}
    return render(request, "compliance/renew_holding.html", context, status=status)


def _renewal_initial(holding: CertificationHolding, today: dt.date) -> dict:
    """A renewal starts today and lasts as long as the holding it renews, unless the officer says otherwise."""
    start = max(today, holding.valid_from)
    return {"valid_from": start, "valid_until": start + (holding.valid_until - holding.valid_from)}


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
