"""Routing-policy pages: policy sets, versions and diffs, change requests and the YAML editor.

Every rule is the model's (``ChangeRequest``) or an operation's (``portfolio.publishing``): a view
parses input, checks the permission (403), calls one of them and renders. Their refusals
(``ValidationError``) are shown on the page with 400, or 409 when a request's base version is
stale; refusals of the person (``PermissionDenied``) answer 403.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Count, Max, OuterRef, Q, Subquery
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from compliance.forms import add_model_errors
from registry.models import ModelVersion
from registry.views import page_size
from steward.charts import bar_chart, figure_json
from steward.history import history_rows

from .feed import fleet_rows, register_router, revoke_router
from .forms import (
    ChangeFilterForm,
    ChangeRequestForm,
    ReviewForm,
    RevisionForm,
    RouterForm,
    VersionDiffForm,
    WithdrawForm,
)
from .models import (
    OPEN_STATUSES,
    PROPOSE_CHANGES,
    PUBLISH_CHANGES,
    REVIEW_CHANGES,
    ChangeRequest,
    ChangeStatus,
    CostTier,
    PolicySet,
    PolicyVersion,
    ReviewDecision,
    Router,
    Task,
    TrustRoot,
)
from .policy import document_changes, route_changes, text_diff
from .publishing import StaleBaseError, publish, rebase, start_change
from .validation import ValidationResult, validate_document

VIEW_SETS = "portfolio.view_policyset"
VIEW_VERSIONS = "portfolio.view_policyversion"
VIEW_CHANGES = "portfolio.view_changerequest"
CHANGES_PAGE_SIZE = 25
EMPTY_POLICY = "default: deny\nroutes: []\n"
PROVIDER_COLOURS = ["#0969da", "#1a7f37", "#bf8700", "#8250df", "#cf222e", "#1b7c83", "#bc4c00", "#57606a"]


# --- what a version routes where, and what it costs ----------------------------------------------


@dataclass
class RouteRow:
    """One route of a policy version, with the registry's versions and the task it serves."""

    route: dict
    task: Task | None
    version: ModelVersion | None
    tier: str
    fallbacks: list[tuple[str, ModelVersion | None]]
    escalation_to: ModelVersion | None
    cost_micro_usd: int | None = None

    @property
    def provider(self) -> str:
        return self.version.model.provider.name if self.version else self.route["model"].split("/")[0]

    @property
    def escalation_terms(self) -> str:
        """The escalation in words: 'on low_confidence (< 70%), error; at most 5% of requests'."""
        escalation = self.route["escalation"]
        if not escalation:
            return ""
        when = [
            f"{condition} (< {_percent(escalation['confidence_threshold_bp'])})"
            if condition == "low_confidence" and escalation.get("confidence_threshold_bp") is not None
            else condition
            for condition in escalation["when"]
        ]
        return f"on {', '.join(when)}; at most {_percent(escalation['max_rate_bp'])} of requests"

    @property
    def constraint_terms(self) -> list[str]:
        constraints = self.route["constraints"]
        terms = []
        if "max_latency_ms" in constraints:
            terms.append(f"latency ≤ {constraints['max_latency_ms']:,} ms")
        if "max_cost_micro_usd" in constraints:
            terms.append(f"cost ≤ {constraints['max_cost_micro_usd']:,} µUSD")
        return terms


def _percent(basis_points: int) -> str:
    return f"{basis_points / 100:g}%"


def cost_per_thousand_requests(task: Task | None, version: ModelVersion | None) -> int | None:
    """Micro-USD for 1000 typical requests of ``task`` on ``version`` (prices are per million tokens)."""
    if task is None or version is None:
        return None
    micro_usd = 1000 * (
        task.typical_input_tokens * version.input_price_micro_usd
        + task.typical_output_tokens * version.output_price_micro_usd
    )
    return (micro_usd + 500_000) // 1_000_000


def route_rows(spec: dict) -> list[RouteRow]:
    """The routes of a normalised spec with their models and tasks, in a fixed number of queries."""
    routes = spec.get("routes", [])
    refs: set[str] = set()
    for route in routes:
        refs.add(route["model"])
        refs.update(route["fallbacks"])
        if route["escalation"]:
            refs.add(route["escalation"]["to"])
    versions = {v.ref: v for v in ModelVersion.objects.select_related("model__provider").filter(ref__in=refs)}
    tasks = {t.slug: t for t in Task.objects.select_related("tier").filter(slug__in={r["task"] for r in routes})}
    rows = []
    for route in routes:
        task = tasks.get(route["task"])
        version = versions.get(route["model"])
        rows.append(
            RouteRow(
                route=route,
                task=task,
                version=version,
                tier=route.get("tier") or (task.tier.slug if task else "—"),
                fallbacks=[(ref, versions.get(ref)) for ref in route["fallbacks"]],
                escalation_to=versions.get(route["escalation"]["to"]) if route["escalation"] else None,
                cost_micro_usd=cost_per_thousand_requests(task, version),
            )
        )
    return rows


def _tier_mix(rows: list[RouteRow]) -> list[dict]:
    counts = Counter(row.tier for row in rows)
    ranks = {tier.slug: tier.rank for tier in CostTier.objects.all()}
    return [
        {"tier": tier, "routes": n, "percent": round(100 * n / len(rows))}
        for tier, n in sorted(counts.items(), key=lambda item: (ranks.get(item[0], 99), item[0]))
    ]


def _provider_concentration(rows: list[RouteRow]) -> tuple[list[dict], str]:
    """Each provider's share of the routes (as primary), as rows and as a plotly pie chart."""
    counts = Counter(row.provider for row in rows)
    shares = [
        {"provider": provider, "routes": n, "percent": round(100 * n / len(rows))}
        for provider, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]
    chart = figure_json(
        [
            {
                "type": "pie",
                "labels": [share["provider"] for share in shares],
                "values": [share["routes"] for share in shares],
                "hole": 0.45,
                "sort": False,
                "textinfo": "label+percent",
                "hovertemplate": "%{label}: %{value} route(s), %{percent}<extra></extra>",
                "marker": {"colors": PROVIDER_COLOURS[: len(shares)]},
            }
        ],
        {
            "title": {"text": "Routes per provider (primary model)"},
            "height": 300,
            "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
            "showlegend": False,
        },
    )
    return shares, chart


def _version_context(version: PolicyVersion) -> dict:
    rows = route_rows(version.spec)
    costs = [row.cost_micro_usd for row in rows if row.cost_micro_usd is not None]
    context = {"version": version, "rows": rows, "total_cost": sum(costs) if costs else None}
    if rows:
        shares, chart = _provider_concentration(rows)
        context.update(tier_mix=_tier_mix(rows), provider_shares=shares, provider_chart=chart)
    return context


# --- policy sets and versions --------------------------------------------------------------------


@permission_required(VIEW_SETS, raise_exception=True)
def policy_sets(request: HttpRequest) -> HttpResponse:
    """Every policy set: its current version, required approvals and open change requests."""
    latest = PolicyVersion.objects.filter(policy_set=OuterRef("pk")).order_by("-number")
    sets = PolicySet.objects.annotate(
        current_number=Subquery(latest.values("number")[:1]),
        current_published_at=Subquery(latest.values("published_at")[:1]),
        open_changes=Count("change_requests", filter=Q(change_requests__status__in=OPEN_STATUSES)),
    )
    return render(
        request,
        "portfolio/policy_sets.html",
        {"policy_sets": sets, "can_propose": request.user.has_perm(PROPOSE_CHANGES)},
    )


@permission_required(VIEW_SETS, raise_exception=True)
def policy_set(request: HttpRequest, slug: str) -> HttpResponse:
    """The version in force: what routes where, the tier mix, costs and provider concentration."""
    policy_set = get_object_or_404(PolicySet, slug=slug)
    current = policy_set.versions.select_related("author", "published_by", "change_request").order_by("-number").first()
    open_changes = (
        policy_set.change_requests.filter(status__in=OPEN_STATUSES)
        .select_related("author", "base_version")
        .order_by("-updated_at")
    )
    context = {
        "policy_set": policy_set,
        "open_changes": open_changes,
        "can_propose": request.user.has_perm(PROPOSE_CHANGES),
        "is_current": True,
        "history": history_rows(policy_set),
        **(_version_context(current) if current else {"version": None}),
    }
    return render(request, "portfolio/policy_set.html", context)


def _diff_rows(lines: list[str]) -> list[tuple[str, str]]:
    """Unified diff lines with their kind, for colouring: file, hunk, add, del or same."""
    rows = []
    for line in lines:
        if line.startswith(("+++", "---")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "same"
        rows.append((kind, line))
    return rows


def _version_diff(old: PolicyVersion, new: PolicyVersion) -> dict:
    slug = new.policy_set.slug
    return {
        "old": old,
        "new": new,
        "route_changes": _subjects(route_changes(old.spec, new.spec)),
        "lines": _diff_rows(text_diff(old.document, new.document, f"{slug} v{old.number}", f"{slug} v{new.number}")),
    }


@permission_required(VIEW_VERSIONS, raise_exception=True)
def policy_versions(request: HttpRequest, slug: str) -> HttpResponse:
    """Every version with who, when and provenance; a diff between any two (``?from=N&to=M``)."""
    policy_set = get_object_or_404(PolicySet, slug=slug)
    versions = list(
        policy_set.versions.select_related("policy_set", "author", "published_by", "change_request").order_by("-number")
    )
    by_number = {version.number: version for version in versions}
    numbers = list(by_number)
    status = 200
    diff = None
    if "from" in request.GET or "to" in request.GET:
        form = VersionDiffForm(request.GET, numbers=numbers, slug=slug)
        if form.is_valid():
            diff = _version_diff(by_number[form.cleaned_data["from"]], by_number[form.cleaned_data["to"]])
        else:
            status = 400
    else:
        initial = {"from": numbers[1], "to": numbers[0]} if len(numbers) > 1 else {}
        form = VersionDiffForm(None, numbers=numbers, slug=slug, initial=initial)
        if initial:
            diff = _version_diff(by_number[numbers[1]], by_number[numbers[0]])
    context = {
        "policy_set": policy_set,
        "versions": versions,
        "current": versions[0] if versions else None,
        "form": form,
        "diff": diff,
        "can_propose": request.user.has_perm(PROPOSE_CHANGES),
    }
    return render(request, "portfolio/policy_versions.html", context, status=status)


@permission_required(VIEW_VERSIONS, raise_exception=True)
def policy_version(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    """One version: its provenance, its routes and its YAML; a rollback starts from here."""
    version = get_object_or_404(
        PolicyVersion.objects.select_related("policy_set", "author", "published_by", "change_request"),
        policy_set__slug=slug,
        number=number,
    )
    current_number = version.policy_set.versions.aggregate(n=Max("number"))["n"]
    context = {
        **_version_context(version),
        "policy_set": version.policy_set,
        "is_current": version.number == current_number,
        "current_number": current_number,
        "can_propose": request.user.has_perm(PROPOSE_CHANGES),
    }
    return render(request, "portfolio/policy_version.html", context)


# --- the YAML editor and its live validation -----------------------------------------------------


def _subjects(changes: list[str]) -> list[tuple[str, str]]:
    """Route changes split into what changed and how ("ticket-triage / internal", "a → b"), for emphasis."""
    return [(subject, rest) for subject, _, rest in (change.partition(": ") for change in changes)]


def _routes_in_words(document: dict | None, base: PolicyVersion | None) -> list[tuple[str, str]] | None:
    """Route-level changes from ``base`` to ``document`` in words; None while the routes are malformed."""
    changes = document_changes(base.spec if base else None, document)
    return None if changes is None else _subjects(changes)


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
        if not base_number.isdigit():
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
        if not rollback.isdigit():
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
        lines = _diff_rows(
            text_diff(
                base.document if base else "",
                latest.document,
                f"{policy_set.slug} v{base.number}" if base else "(empty)",
                f"CR-{change_request.pk} r{latest.number}",
            )
        )
    author_can_act = is_author and user.has_perm(PROPOSE_CHANGES) and change_request.is_open
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
        change_request.review(user, decision, form.cleaned_data["comment"])
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


# --- the fleet of routers -----------------------------------------------------------------------

MANAGE_ROUTERS = "portfolio.manage_router"


def _fleet_chart(rows: list[dict]) -> str:
    """How many active routers run each version, per policy set."""
    counts = Counter(
        (
            row["router"].policy_set.slug,
            f"v{row['router'].applied_version}" if row["router"].applied_version else "none yet",
        )
        for row in rows
        if row["router"].is_active
    )
    sets = sorted({policy_set for policy_set, _ in counts})
    versions = sorted(
        {version for _, version in counts}, key=lambda v: (v == "none yet", int(v[1:]) if v[1:].isdigit() else 0)
    )
    return bar_chart(
        sets,
        {version: [counts[(s, version)] for s in sets] for version in versions},
        "Which policy version the fleet runs",
        height=300,
    )


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
        "chart": _fleet_chart(rows) if rows else "",
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
