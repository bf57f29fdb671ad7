"""Recommendations: routes that a cheaper, equally good, usable version could take, and the draft
change request that follows one."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from ..models import PROPOSE_CHANGES, PolicySet
from ..recommendations import DEFAULT_TOLERANCE_BP, propose_route_change, review_routes

VIEW_RUNS = "registry.view_evaluationrun"


def _tolerance_bp(request: HttpRequest) -> tuple[int, str]:
    """The tolerance from ``?tolerance=`` (points, 0 to 100), in basis points; with an error message."""
    raw = request.GET.get("tolerance") or request.POST.get("tolerance") or ""
    if not raw:
        return DEFAULT_TOLERANCE_BP, ""
    try:
        value = Decimal(raw)
    except InvalidOperation:
        return DEFAULT_TOLERANCE_BP, f"Tolerance {raw!r} is not a number of points; using the default."
    if not value.is_finite() or not 0 <= value <= 100:
        return DEFAULT_TOLERANCE_BP, "The tolerance must be from 0 to 100 points; using the default."
    return int(value * 100), ""


@permission_required(VIEW_RUNS, raise_exception=True)
def recommendations(request: HttpRequest) -> HttpResponse:
    tolerance_bp, tolerance_error = _tolerance_bp(request)
    reviews = review_routes(tolerance_bp)
    context = {
        "reviews": reviews,
        "with_recommendations": [r for r in reviews if r.recommendations],
        "tolerance_bp": tolerance_bp,
        "tolerance_points": f"{tolerance_bp / 100:g}",
        "tolerance_error": tolerance_error,
        "can_propose": request.user.has_perm(PROPOSE_CHANGES),
    }
    return render(request, "portfolio/recommendations.html", context)


@require_POST
@permission_required(PROPOSE_CHANGES, raise_exception=True)
def recommendation_apply(request: HttpRequest) -> HttpResponse:
    """Open a draft change request that follows a recommendation (engineers: they write change requests)."""
    tolerance_bp, _ = _tolerance_bp(request)
    back = f"{reverse('recommendations:list')}?tolerance={tolerance_bp / 100:g}"
    policy_set = PolicySet.objects.filter(slug=request.POST.get("policy_set", "")).first()
    if policy_set is None:
        messages.error(request, "Unknown policy set.")
        return redirect(back)
    try:
        change_request = propose_route_change(
            policy_set,
            request.POST.get("task", ""),
            request.POST.get("classification", ""),
            request.POST.get("model", ""),
            request.user,
            tolerance_bp,
        )
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return redirect(back)
    messages.success(request, f"Draft CR-{change_request.pk} opened; review it and submit it when ready.")
    return redirect(change_request)
