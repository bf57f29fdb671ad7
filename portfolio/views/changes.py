"""Change requests: the YAML editor with live validation, the list, a request's page and its review
actions.

Every rule is the model's (``ChangeRequest``) or an operation's (``portfolio.publishing``): a view
parses input, checks the permission (403), calls one of them and renders. Their refusals
(``ValidationError``) are shown on the page with 400, or 409 when a request's base version is
stale; refusals of the person (``PermissionDenied``) answer 403.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Count, Max, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from steward.forms import add_model_errors
from steward.history import history_rows
from steward.paging import WHOLE_NUMBER, page_size

from ..charts import impact_charts
from ..forms import (
    ChangeFilterForm,
    ChangeRequestForm,
    ReviewForm,
    RevisionForm,
    WithdrawForm,
)
from ..impact import change_request_outcome, headline, presented, revision_impact
from ..models import (
    PROPOSE_CHANGES,
    PUBLISH_CHANGES,
    REVIEW_CHANGES,
    ChangeRequest,
    ChangeStatus,
    PolicySet,
    PolicyVersion,
    ReviewDecision,
)
from ..policy import document_changes, text_diff
from ..publishing import StaleBaseError, publish, rebase, start_change
from ..validation import ValidationResult, validate_document
from .policies import VIEW_SETS, diff_rows, subjects

VIEW_CHANGES = "portfolio.view_changerequest"
CHANGES_PAGE_SIZE = 25
EMPTY_POLICY = "default: deny\nroutes: []\n"


# --- the YAML editor and its live validation -----------------------------------------------------


def _routes_in_words(document: dict | None, base: PolicyVersion | None) -> list[tuple[str, str]] | None:
    """Route-level changes from ``base`` to ``document`` in words; None while the routes are malformed."""
    changes = document_changes(base.spec if base else None, document)
    return None if changes is None else subjects(changes)


def _validation_context(text: str, policy_set: PolicySet, base: PolicyVersion | None) -> dict:
    result: ValidationResult = validate_document(text, policy_set)
    return {
        "errors": result.errors,
        "route_changes": _routes_in_words(result.document, base),
        "base": base,
        "policy_set": policy_set,
    }


@require_POST
@permission_required(VIEW_SETS, raise_exception=True)
def validate_policy(request: HttpRequest) -> HttpResponse:
    """The editor's live check (htmx): the errors with their paths, and the route changes against
    ``base`` (a version number; the set's current version when empty). Saves nothing."""
    policy_set = get_object_or_404(PolicySet, slug=request.POST.get("policy_set", ""))
    base_number = request.POST.get("base", "")
    if base_number:
        if not WHOLE_NUMBER.fullmatch(base_number):
            raise Http404("No such version.")
        base = get_object_or_404(PolicyVersion, policy_set=policy_set, number=int(base_number))
    else:
        base = policy_set.current_version()
    context = _validation_context(request.POST.get("policy", ""), policy_set, base)
    return render(request, "portfolio/_validation.html", context)


def _editor_response(
    request: HttpRequest, template_context: dict, form, policy_set: PolicySet, base: PolicyVersion | None, status: int
) -> HttpResponse:
    text = form["policy"].value() or ""
    context = {
        **template_context,
        "form": form,
        "policy_set": policy_set,
        "base": base,
        "validation": _validation_context(text, policy_set, base),
    }
    return render(request, "portfolio/change_request_form.html", context, status=status)


def _form_status(form) -> int:
    return 413 if form.has_error("policy", "too_large") else 400


@permission_required(PROPOSE_CHANGES, raise_exception=True)
def new_change_request(request: HttpRequest) -> HttpResponse:
    """Propose a change to ``?set=``, starting from its current version or, with ``&from=N``, from
    version N (a rollback: a new change request, so version numbers only grow)."""
    slug = request.GET.get("set", "")
    if not slug:
        return render(request, "portfolio/choose_policy_set.html", {"policy_sets": PolicySet.objects.all()})
    policy_set = get_object_or_404(PolicySet, slug=slug)
    current = policy_set.current_version()
    source = None
    if rollback := request.GET.get("from"):
        if not WHOLE_NUMBER.fullmatch(rollback):
            raise Http404("No such version.")
        source = get_object_or_404(PolicyVersion, policy_set=policy_set, number=int(rollback))
    extra = {"rollback_from": source, "action_url": request.get_full_path()}
    if request.method == "POST":
        form = ChangeRequestForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                with transaction.atomic():
                    change_request = start_change(
                        policy_set, request.user, data["title"], data["rationale"], data["policy"]
                    )
                    if request.POST.get("action") == "submit":
                        change_request.submit(request.user)
            except ValidationError as error:
                add_model_errors(form, error)
            else:
                submitted = change_request.status == ChangeStatus.IN_REVIEW
                messages.success(
                    request,
                    f"{change_request} {'submitted for review' if submitted else 'saved as a draft'}.",
                )
                return redirect(change_request)
        return _editor_response(request, extra, form, policy_set, current, _form_status(form))
    if source is not None:
        initial = {
            "title": f"Roll back {policy_set.slug} to v{source.number}",
            "rationale": f"Restore the routes of {policy_set.slug} v{source.number}.",
            "policy": source.document,
        }
    else:
        initial = {"policy": current.document if current else EMPTY_POLICY}
    return _editor_response(request, extra, ChangeRequestForm(initial=initial), policy_set, current, 200)


def _change_request(pk: int) -> ChangeRequest:
    return get_object_or_404(ChangeRequest.objects.select_related("policy_set", "author", "base_version"), pk=pk)


@permission_required(PROPOSE_CHANGES, raise_exception=True)
def revise_change_request(request: HttpRequest, pk: int) -> HttpResponse:
    """The author's editor for a new revision; earlier approvals are dismissed when it is saved."""
    change_request = _change_request(pk)
    if request.user.pk != change_request.author_id:
        raise PermissionDenied(f"Only the author of {change_request} can revise it.")
    if not change_request.is_open and request.method != "POST":
        messages.error(request, f"{change_request} is {change_request.get_status_display().lower()}; it is final.")
        return redirect(change_request)
    latest = change_request.latest_revision()
    extra = {"change_request": change_request, "latest": latest, "action_url": request.path}
    base = change_request.base_version
    if request.method == "POST":
        form = RevisionForm(request.POST)
        if form.is_valid():
            approvals = change_request.active_approvals().count()
            try:
                revision = change_request.add_revision(request.user, form.cleaned_data["policy"])
            except ValidationError as error:
                add_model_errors(form, error)
            else:
                dismissed = f"; {approvals} earlier approval(s) dismissed" if approvals else ""
                messages.success(request, f"Revision {revision.number} saved{dismissed}.")
                return redirect(change_request)
        return _editor_response(request, extra, form, change_request.policy_set, base, _form_status(form))
    form = RevisionForm(initial={"policy": latest.document if latest else EMPTY_POLICY})
    return _editor_response(request, extra, form, change_request.policy_set, base, 200)


# --- change requests -----------------------------------------------------------------------------


@permission_required(VIEW_CHANGES, raise_exception=True)
def change_requests(request: HttpRequest) -> HttpResponse:
    """Change requests, newest first, filtered by status and policy set (htmx swaps the table)."""
    form = ChangeFilterForm(request.GET or None)
    queryset = ChangeRequest.objects.select_related("policy_set", "author", "base_version").annotate(
        revision_number=Max("revisions__number"),
        approvals=Count(
            "reviews",
            filter=Q(reviews__decision=ReviewDecision.APPROVE, reviews__dismissed_at__isnull=True),
            distinct=True,
        ),
    )
    status = 200
    if form.is_bound:
        if form.is_valid():
            if form.cleaned_data["status"]:
                queryset = queryset.filter(status=form.cleaned_data["status"])
            if form.cleaned_data["policy_set"]:
                queryset = queryset.filter(policy_set=form.cleaned_data["policy_set"])
        elif not request.htmx:
            status = 400
    page = Paginator(queryset.order_by("-updated_at", "-pk"), page_size(request, CHANGES_PAGE_SIZE)).get_page(
        request.GET.get("page")
    )
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "form": form,
        "page": page,
        "query": query.urlencode(),
        "can_propose": request.user.has_perm(PROPOSE_CHANGES),
    }
    if request.htmx and request.htmx.target == "change-table":
        return render(request, "portfolio/_change_table.html", context)
    return render(request, "portfolio/change_requests.html", context, status=status)


def _detail_context(
    request: HttpRequest,
    change_request: ChangeRequest,
    review_form: ReviewForm | None = None,
    withdraw_form: WithdrawForm | None = None,
    refusal: list[str] | None = None,
) -> dict:
    user = request.user
    policy_set = change_request.policy_set
    current = policy_set.current_version()
    revisions = list(change_request.revisions.select_related("created_by").order_by("number"))
    latest = revisions[-1] if revisions else None
    reviews = list(change_request.reviews.select_related("reviewer", "revision"))
    approvals = [r for r in reviews if r.decision == ReviewDecision.APPROVE and r.dismissed_at is None]
    base = change_request.base_version
    is_author = user.pk == change_request.author_id
    reviewer = user.has_perm(REVIEW_CHANGES) and not is_author
    in_review = change_request.status in (ChangeStatus.IN_REVIEW, ChangeStatus.APPROVED)
    stale = change_request.is_open and (current.pk if current else None) != change_request.base_version_id

    validation = None
    document = None
    lines: list[tuple[str, str]] = []
    if latest is not None:
        validation = validate_document(latest.document, policy_set)
        document = validation.document
        lines = diff_rows(
            text_diff(
                base.document if base else "",
                latest.document,
                f"{policy_set.slug} v{base.number}" if base else "(empty)",
                f"CR-{change_request.pk} r{latest.number}",
            )
        )
    author_can_act = is_author and user.has_perm(PROPOSE_CHANGES) and change_request.is_open
    impact = presented(figures, policy_set) if latest and (figures := revision_impact(latest)) else None
    decisions = []
    if reviewer and in_review:
        if not any(review.reviewer_id == user.pk for review in approvals):
            decisions.append(ReviewDecision.APPROVE)
        decisions.append(ReviewDecision.REJECT)
    if change_request.is_open and (user.has_perm(REVIEW_CHANGES) or user.has_perm(PROPOSE_CHANGES)):
        decisions.append(ReviewDecision.COMMENT)
    return {
        "change_request": change_request,
        "policy_set": policy_set,
        "current": current,
        "base": base,
        "latest": latest,
        "revisions": revisions,
        "reviews": reviews,
        "approvals": approvals,
        "validation": validation,
        "stored_errors": latest.errors if latest else [],
        "route_changes": _routes_in_words(document, base),
        "lines": lines,
        "stale": stale,
        "published_version": PolicyVersion.objects.filter(change_request=change_request).first(),
        "activity": change_request.history.select_related("history_user").order_by("history_date", "history_id"),
        "history": history_rows(change_request),
        "is_author": is_author,
        "can_revise": author_can_act,
        "can_submit": author_can_act and change_request.status == ChangeStatus.DRAFT,
        "can_withdraw": author_can_act,
        "can_rebase": author_can_act and stale,
        "can_publish": user.has_perm(PUBLISH_CHANGES) and change_request.status == ChangeStatus.APPROVED,
        "decisions": decisions,
        "review_form": review_form or ReviewForm(),
        "withdraw_form": withdraw_form or WithdrawForm(),
        "refusal": refusal or [],
        "impact": impact,
        "impact_headline": headline(impact) if impact else None,
        "impact_charts": impact_charts(impact) if impact else None,
        "outcome": change_request_outcome(change_request) if change_request.status == ChangeStatus.PUBLISHED else None,
    }


@permission_required(VIEW_CHANGES, raise_exception=True)
def change_request(request: HttpRequest, pk: int) -> HttpResponse:
    """Status, validation, route changes beside the YAML diff, reviews, and the actions the person may take."""
    return render(request, "portfolio/change_request.html", _detail_context(request, _change_request(pk)))


def _refused(request: HttpRequest, change_request: ChangeRequest, status: int = 400, **forms) -> HttpResponse:
    change_request.refresh_from_db()
    return render(
        request, "portfolio/change_request.html", _detail_context(request, change_request, **forms), status=status
    )


def _author_action(request: HttpRequest, pk: int, act: Callable[[ChangeRequest], object], done: str) -> HttpResponse:
    """Run one of the author's actions; its refusal is shown on the detail page (400, or 409 when stale)."""
    change_request = _change_request(pk)
    if request.user.pk != change_request.author_id:
        raise PermissionDenied(f"Only the author of {change_request} can do this.")
    try:
        act(change_request)
    except StaleBaseError as error:
        return _refused(request, change_request, 409, refusal=error.messages)
    except ValidationError as error:
        return _refused(request, change_request, refusal=error.messages)
    messages.success(request, done.format(change_request=change_request))
    return redirect(change_request)


@require_POST
@permission_required(PROPOSE_CHANGES, raise_exception=True)
def submit_change_request(request: HttpRequest, pk: int) -> HttpResponse:
    return _author_action(request, pk, lambda cr: cr.submit(request.user), "{change_request} submitted for review.")


@require_POST
@permission_required(PROPOSE_CHANGES, raise_exception=True)
def withdraw_change_request(request: HttpRequest, pk: int) -> HttpResponse:
    form = WithdrawForm(request.POST)
    comment = form.cleaned_data["comment"] if form.is_valid() else ""
    return _author_action(request, pk, lambda cr: cr.withdraw(request.user, comment), "{change_request} withdrawn.")


@require_POST
@permission_required(PROPOSE_CHANGES, raise_exception=True)
def rebase_change_request(request: HttpRequest, pk: int) -> HttpResponse:
    return _author_action(
        request,
        pk,
        lambda cr: rebase(cr, request.user),
        "{change_request} rebased onto the current version as a new revision; earlier approvals were dismissed.",
    )


@require_POST
def review_change_request(request: HttpRequest, pk: int) -> HttpResponse:
    """Approve or reject (officers who did not write it) or comment (officers and engineers)."""
    user = request.user
    if not (user.has_perm(REVIEW_CHANGES) or user.has_perm(PROPOSE_CHANGES)):
        raise PermissionDenied("Auditors read change requests; they do not review them.")
    change_request = _change_request(pk)
    form = ReviewForm(request.POST)
    if not form.is_valid():
        return _refused(request, change_request, review_form=form)
    decision = form.cleaned_data["decision"]
    if decision != ReviewDecision.COMMENT:
        if not user.has_perm(REVIEW_CHANGES):
            raise PermissionDenied("Only governance officers can approve or reject change requests.")
        if user.pk == change_request.author_id:
            raise PermissionDenied(f"{user.get_username()} wrote {change_request} and cannot {decision} it.")
    try:
        change_request.review(
            user, decision, form.cleaned_data["comment"], acknowledged=tuple(form.cleaned_data["acknowledge"])
        )
    except StaleBaseError as error:
        # Auto-publishing on the last approval found the base stale; the approval itself stands.
        return _refused(request, change_request, 409, refusal=error.messages)
    except ValidationError as error:
        add_model_errors(form, error)
        return _refused(request, change_request, review_form=form)
    change_request.refresh_from_db()
    done = {"approve": "Approved", "reject": "Rejected", "comment": "Comment added"}[decision]
    status = f" It is now {change_request.get_status_display().lower()}."
    messages.success(request, f"{done} by {user.get_username()}.{status}")
    return redirect(change_request)


@require_POST
@permission_required(PUBLISH_CHANGES, raise_exception=True)
def publish_change_request(request: HttpRequest, pk: int) -> HttpResponse:
    """Publish an approved request as the set's next version; a stale base is refused with 409."""
    change_request = _change_request(pk)
    try:
        version = publish(change_request, request.user)
    except StaleBaseError as error:
        return _refused(request, change_request, 409, refusal=error.messages)
    except ValidationError as error:
        return _refused(request, change_request, refusal=error.messages)
    messages.success(request, f"{change_request} published as {version.policy_set.slug} v{version.number}.")
    return redirect(reverse("portfolio:policy-set", args=[version.policy_set.slug]))
