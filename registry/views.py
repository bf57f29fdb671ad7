"""Registry pages: the list, a version's detail, proposing and lifecycle transitions, endpoint
credentials. Evaluation pages are in ``registry.evaluation.views``."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from steward.forms import add_model_errors, refusals_on
from steward.history import history_rows
from steward.paging import page_size
from steward.roles import PROPOSE_VERSIONS, REVIEW_VERSIONS

from .charts import version_figures
from .evaluation.endpoints import BoundKey, CredentialRefused, bind_key
from .filters import ModelVersionFilter
from .forms import CredentialRequestForm, EditProposalForm, ProposeVersionForm, TransitionForm
from .models import (
    ACTIONS,
    REQUEST_CREDENTIALS,
    REVIEW_CREDENTIALS,
    EndpointCredential,
    ModelVersion,
    Status,
)

PAGE_SIZE = 25


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


def key_binding(version: ModelVersion) -> str:
    """Why evaluations of ``version`` may not send its key ("" when they may)."""
    try:
        bind_key(version)
    except CredentialRefused as error:
        return str(error)
    return ""


def _detail_context(
    version: ModelVersion, user, form: TransitionForm | None = None, withdraw_form: TransitionForm | None = None
) -> dict:
    return {
        "version": version,
        "is_open_proposal": version.is_open_proposal_of(user),
        "withdraw_form": withdraw_form or TransitionForm(prefix="withdraw"),
        "key_refusal": key_binding(version),
        "transitions": version.transitions.select_related("actor"),
        "history": history_rows(version),
        "actions": version.allowed_actions(),
        "form": form or TransitionForm(),
        **version_figures(version),
    }


@permission_required("registry.view_modelversion", raise_exception=True)
def version_detail(request: HttpRequest, pk: int) -> HttpResponse:
    version = get_object_or_404(ModelVersion.objects.with_related(), pk=pk)
    return render(request, "registry/version_detail.html", _detail_context(version, request.user))


@require_POST
@permission_required(REVIEW_VERSIONS, raise_exception=True)
def version_transition(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    version = get_object_or_404(ModelVersion.objects.with_related(), pk=pk)
    if action not in ACTIONS:
        messages.error(request, f"Unknown action {action!r}.")
        return redirect(version)
    form = TransitionForm(request.POST)
    if form.is_valid() and refusals_on(
        form, lambda: version.transition(action, request.user, form.cleaned_data["comment"])
    ):
        messages.success(request, f"{version.ref} is now {version.get_status_display().lower()}.")
        return redirect(version)
    return render(request, "registry/version_detail.html", _detail_context(version, request.user, form), status=400)


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


@permission_required(PROPOSE_VERSIONS, raise_exception=True)
def edit_proposal(request: HttpRequest, pk: int) -> HttpResponse:
    """The proposer changes their proposal while it awaits a decision; nobody else can."""
    version = get_object_or_404(ModelVersion.objects.with_related(), pk=pk)
    if version.proposed_by_id != request.user.pk:
        raise PermissionDenied(f"Only {version.proposed_by}, who proposed {version.ref}, can edit it.")
    if version.status != Status.PROPOSED:
        refusal = f"{version.ref} is {version.get_status_display().lower()}; only a proposal can be edited."
        return render(request, "registry/propose.html", {"version": version, "refusal": refusal}, status=400)
    form = EditProposalForm(request.POST or None, instance=version)
    if request.method == "POST" and form.is_valid():
        try:
            version.edit_proposal(request.user, **form.edit_fields())
        except ValidationError as error:
            add_model_errors(form, error)
        else:
            messages.success(request, f"{version.ref} updated; it still awaits an officer's approval.")
            return redirect(version)
    status = 400 if form.errors else 200
    return render(request, "registry/propose.html", {"form": form, "version": version}, status=status)


@require_POST
@permission_required(PROPOSE_VERSIONS, raise_exception=True)
def withdraw_proposal(request: HttpRequest, pk: int) -> HttpResponse:
    """The proposer takes their proposal back before an officer decides it (the page asks first)."""
    version = get_object_or_404(ModelVersion.objects.with_related(), pk=pk)
    if version.proposed_by_id != request.user.pk:
        raise PermissionDenied(f"Only {version.proposed_by}, who proposed {version.ref}, can withdraw it.")
    form = TransitionForm(request.POST, prefix="withdraw")
    if form.is_valid() and refusals_on(form, lambda: version.withdraw(request.user, form.cleaned_data["comment"])):
        messages.success(request, f"{version.ref} withdrawn; officers no longer see it.")
        return redirect(version)
    context = _detail_context(version, request.user, withdraw_form=form)
    return render(request, "registry/version_detail.html", context, status=400)


# --- endpoint credentials -----------------------------------------------------------------------

VIEW_CREDENTIALS = "registry.view_endpointcredential"


@permission_required(VIEW_CREDENTIALS, raise_exception=True)
def credential_list(request: HttpRequest) -> HttpResponse:
    """Every API-key variable with the hosts it is bound to; engineers request new bindings here."""
    form = CredentialRequestForm(request.POST or None)
    if request.method == "POST":
        if not request.user.has_perm(REQUEST_CREDENTIALS):
            raise PermissionDenied("Only engineers and officers can request endpoint credentials.")
        if form.is_valid():
            try:
                credential = EndpointCredential.request(
                    request.user,
                    form.cleaned_data["env_var"],
                    form.cleaned_data["hosts"],
                    form.cleaned_data["description"],
                )
            except ValidationError as error:
                add_model_errors(form, error)
            else:
                messages.success(request, f"{credential.env_var} requested; an officer other than you will decide.")
                return redirect(credential)
    credentials = EndpointCredential.objects.select_related("requested_by", "decided_by")
    context = {"form": form, "credentials": credentials, "can_request": request.user.has_perm(REQUEST_CREDENTIALS)}
    return render(request, "registry/credential_list.html", context, status=400 if form.errors else 200)


def _credential_context(credential: EndpointCredential, form: TransitionForm | None = None) -> dict:
    versions = ModelVersion.objects.with_related().filter(api_key_env=credential.env_var).order_by("ref")
    return {
        "credential": credential,
        "versions": [
            (version, credential.is_approved and credential_covers(credential, version)) for version in versions
        ],
        "history": history_rows(credential),
        "form": form or TransitionForm(),
        "actions": {"requested": ["approve", "reject"], "approved": ["revoke"]}.get(credential.status, []),
    }


def credential_covers(credential: EndpointCredential, version: ModelVersion) -> bool:
    return BoundKey(credential.env_var, tuple(credential.hosts), "").allows(version.base_url)


@permission_required(VIEW_CREDENTIALS, raise_exception=True)
def credential_detail(request: HttpRequest, pk: int) -> HttpResponse:
    credential = get_object_or_404(EndpointCredential.objects.select_related("requested_by", "decided_by"), pk=pk)
    return render(request, "registry/credential_detail.html", _credential_context(credential))


@require_POST
@permission_required(REVIEW_CREDENTIALS, raise_exception=True)
def credential_decide(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    credential = get_object_or_404(EndpointCredential.objects.select_related("requested_by", "decided_by"), pk=pk)
    form = TransitionForm(request.POST)
    if form.is_valid() and refusals_on(
        form, lambda: credential.decide(action, request.user, form.cleaned_data["comment"])
    ):
        messages.success(request, f"{credential.env_var} is now {credential.get_status_display().lower()}.")
        return redirect(credential)
    return render(request, "registry/credential_detail.html", _credential_context(credential, form), status=400)
