"""Registry pages: the list, a version's detail, proposing and lifecycle transitions."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from steward.history import history_rows
from steward.roles import PROPOSE_VERSIONS, REVIEW_VERSIONS

from .filters import ModelVersionFilter
from .forms import ProposeVersionForm, TransitionForm
from .models import ACTIONS, ModelVersion

PAGE_SIZE = 25
MAX_PAGE_SIZE = 500


def page_size(request: HttpRequest, default: int) -> int:
    """Rows per page from ``?per_page=`` (1 to MAX_PAGE_SIZE), else ``default``."""
    try:
        size = int(request.GET.get("per_page", default))
    except ValueError:
        return default
    return max(1, min(size, MAX_PAGE_SIZE))


@permission_required("registry.view_modelversion", raise_exception=True)
def version_list(request: HttpRequest) -> HttpResponse:
    filterset = ModelVersionFilter(request.GET or None, queryset=ModelVersion.objects.with_related())
    queryset = filterset.qs if filterset.is_bound else filterset.queryset
    page = Paginator(queryset, page_size(request, PAGE_SIZE)).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {"filter": filterset, "page": page, "query": query.urlencode(), "sort": request.GET.get("sort", "")}
    if request.htmx and request.htmx.target == "version-table":
        return render(request, "registry/_version_table.html", context)
    return render(request, "registry/version_list.html", context)


def _detail_context(version: ModelVersion, form: TransitionForm | None = None) -> dict:
    return {
        "version": version,
        "transitions": version.transitions.select_related("actor"),
        "history": history_rows(version),
        "actions": version.allowed_actions(),
        "form": form or TransitionForm(),
    }


@permission_required("registry.view_modelversion", raise_exception=True)
def version_detail(request: HttpRequest, pk: int) -> HttpResponse:
    version = get_object_or_404(ModelVersion.objects.with_related(), pk=pk)
    return render(request, "registry/version_detail.html", _detail_context(version))


@require_POST
@permission_required(REVIEW_VERSIONS, raise_exception=True)
def version_transition(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    version = get_object_or_404(ModelVersion.objects.with_related(), pk=pk)
    if action not in ACTIONS:
        messages.error(request, f"Unknown action {action!r}.")
        return redirect(version)
    form = TransitionForm(request.POST)
    if form.is_valid():
        try:
            version.transition(action, request.user, form.cleaned_data["comment"])
        except ValidationError as error:
            for message in error.messages:
                form.add_error(None, message)
        except PermissionDenied as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, f"{version.ref} is now {version.get_status_display().lower()}.")
            return redirect(version)
    return render(request, "registry/version_detail.html", _detail_context(version, form), status=400)


@permission_required(PROPOSE_VERSIONS, raise_exception=True)
def propose_version(request: HttpRequest) -> HttpResponse:
    form = ProposeVersionForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            version = ModelVersion.propose(request.user, **form.proposal_fields())
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, f"{version.ref} proposed; it now awaits an officer's approval.")
            return redirect(version)
    status = 400 if request.method == "POST" else 200
    return render(request, "registry/propose.html", {"form": form}, status=status)
