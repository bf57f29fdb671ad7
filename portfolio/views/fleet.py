"""The fleet of routers: registering them (their token shown once), revoking them, what each runs."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from steward.forms import add_model_errors

from ..charts import fleet_chart
from ..feed import fleet_rows, register_router, revoke_router
from ..forms import (
    RouterForm,
)
from ..models import Router, TrustRoot

# --- the fleet of routers -----------------------------------------------------------------------

MANAGE_ROUTERS = "portfolio.manage_router"


@permission_required("portfolio.view_router", raise_exception=True)
def fleet(request: HttpRequest) -> HttpResponse:
    form = RouterForm(request.POST or None)
    new_token = None
    if request.method == "POST":
        if not request.user.has_perm(MANAGE_ROUTERS):
            raise PermissionDenied("Only governance officers can register routers.")
        if form.is_valid():
            try:
                router, new_token = register_router(
                    form.cleaned_data["policy_set"],
                    form.cleaned_data["name"],
                    request.user,
                    form.cleaned_data["description"],
                    form.cleaned_data["expires_in_days"],
                )
            except ValidationError as error:
                add_model_errors(form, error)
            else:
                messages.success(request, f"Router {router.name} registered for {router.policy_set.slug}.")
                form = RouterForm()
    rows = fleet_rows()
    context = {
        "rows": rows,
        "form": form,
        "new_token": new_token,
        "chart": fleet_chart(rows) if rows else "",
        "stale_after": settings.STEWARD_ROUTER_STALE_SECONDS,
        "trust_root": TrustRoot.objects.order_by("-version").first(),
    }
    response = render(request, "portfolio/fleet.html", context, status=400 if form.errors else 200)
    if new_token:
        response["Cache-Control"] = "no-store"  # the token is shown this once
    return response


@require_POST
@permission_required(MANAGE_ROUTERS, raise_exception=True)
def revoke_router_token(request: HttpRequest, pk: int) -> HttpResponse:
    router = get_object_or_404(Router, pk=pk)
    try:
        revoke_router(router, request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, f"{router.name}'s token is revoked; it can no longer pull or report.")
    return redirect("portfolio:fleet")
