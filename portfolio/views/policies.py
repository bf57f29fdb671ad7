"""Policy sets and their versions: what each version routes where, what it costs, and diffs."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.db import transaction
from django.db.models import Count, Max, OuterRef, Q, Subquery
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from audits import events as audit
from registry.models import ModelVersion
from steward.history import history_rows

from ..charts import provider_concentration
from ..forms import (
    ThresholdsForm,
    VersionDiffForm,
)
from ..models import (
    OPEN_STATUSES,
    PROPOSE_CHANGES,
    REVIEW_CHANGES,
    CostTier,
    PolicySet,
    PolicyVersion,
    Task,
)
from ..policy import Policy, Route, route_changes, text_diff

VIEW_SETS = "portfolio.view_policyset"
VIEW_VERSIONS = "portfolio.view_policyversion"


# --- what a version routes where, and what it costs ----------------------------------------------


@dataclass
class RouteRow:
    """One route of a policy version, with the registry's versions and the task it serves."""

    route: Route
    task: Task | None
    version: ModelVersion | None
    tier: str
    fallbacks: list[tuple[str, ModelVersion | None]]
    escalation_to: ModelVersion | None
    cost_micro_usd: int | None = None

    @property
    def provider(self) -> str:
        return self.version.model.provider.name if self.version else self.route.model.split("/")[0]

    @property
    def escalation_terms(self) -> str:
        """The escalation in words: 'on low_confidence (< 70%), error; at most 5% of requests'."""
        escalation = self.route.escalation
        if not escalation:
            return ""
        when = [
            f"{condition} (< {_percent(escalation.confidence_threshold_bp)})"
            if condition == "low_confidence" and escalation.confidence_threshold_bp is not None
            else condition
            for condition in escalation.when
        ]
        return f"on {', '.join(when)}; at most {_percent(escalation.max_rate_bp)} of requests"

    @property
    def constraint_terms(self) -> list[str]:
        constraints = self.route.constraints
        terms = []
        if "max_latency_ms" in constraints:
            terms.append(f"latency ≤ {constraints['max_latency_ms']:,} ms")
        if "max_cost_micro_usd" in constraints:
            terms.append(f"cost ≤ {constraints['max_cost_micro_usd']:,} µUSD")
        return terms


def _percent(basis_points: int) -> str:
    return f"{basis_points / 100:g}%"


def cost_per_thousand_requests(task: Task | None, version: ModelVersion | None) -> int | None:
    """Micro-USD for 1,000 typical requests of ``task`` on ``version``."""
    if task is None or version is None:
        return None
    return version.price_micro_usd(1000 * task.typical_input_tokens, 1000 * task.typical_output_tokens)


def route_rows(policy: Policy) -> list[RouteRow]:
    """The routes of a policy with their models and tasks, in a fixed number of queries."""
    versions = {
        v.ref: v for v in ModelVersion.objects.select_related("model__provider").filter(ref__in=policy.model_refs)
    }
    tasks = {t.slug: t for t in Task.objects.select_related("tier").filter(slug__in={r.task for r in policy})}
    rows = []
    for route in policy:
        task = tasks.get(route.task)
        version = versions.get(route.model)
        rows.append(
            RouteRow(
                route=route,
                task=task,
                version=version,
                tier=route.tier or (task.tier.slug if task else "—"),
                fallbacks=[(ref, versions.get(ref)) for ref in route.fallbacks],
                escalation_to=versions.get(route.escalation.to) if route.escalation else None,
                cost_micro_usd=cost_per_thousand_requests(task, version),
            )
        )
    return rows


def _tier_mix(rows: list[RouteRow]) -> list[dict]:
    counts = Counter(row.tier for row in rows)
    ranks = {tier.slug: tier.rank for tier in CostTier.objects.all()}
    return [
        {"tier": tier, "route_count": n, "percent": round(100 * n / len(rows))}
        for tier, n in sorted(counts.items(), key=lambda item: (ranks.get(item[0], 99), item[0]))
    ]


def _version_context(version: PolicyVersion) -> dict:
    rows = route_rows(version.policy)
    costs = [row.cost_micro_usd for row in rows if row.cost_micro_usd is not None]
    context = {"version": version, "rows": rows, "total_cost": sum(costs) if costs else None}
    if rows:
        shares, chart = provider_concentration(rows)
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
    return policy_set_page(request, slug)


def policy_set_page(
    request: HttpRequest, slug: str, thresholds_form: ThresholdsForm | None = None, status: int = 200
) -> HttpResponse:
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
        "thresholds_form": thresholds_form or ThresholdsForm(instance=policy_set),
        "can_set_thresholds": request.user.has_perm(REVIEW_CHANGES),
        **(_version_context(current) if current else {"version": None}),
    }
    return render(request, "portfolio/policy_set.html", context, status=status)


THRESHOLD_FIELDS = ThresholdsForm.Meta.fields


@require_POST
@permission_required(REVIEW_CHANGES, raise_exception=True)
def policy_set_thresholds(request: HttpRequest, slug: str) -> HttpResponse:
    """An officer sets the set's impact thresholds: a change crossing one needs each approver's acknowledgement."""
    policy_set = get_object_or_404(PolicySet, slug=slug)
    before = {name: getattr(policy_set, name) for name in THRESHOLD_FIELDS}
    form = ThresholdsForm(request.POST, instance=policy_set)
    if not form.is_valid():
        policy_set.refresh_from_db()
        return policy_set_page(request, policy_set.slug, thresholds_form=form, status=400)
    with transaction.atomic():
        policy_set._history_user = request.user
        policy_set._change_reason = "impact thresholds"
        form.save()
        audit.record(
            "policy_set.thresholds",
            actor=request.user,
            obj=policy_set,
            before=before,
            after={name: getattr(policy_set, name) for name in THRESHOLD_FIELDS},
        )
    messages.success(request, f"Impact thresholds of {policy_set.slug} saved.")
    return redirect(policy_set)


def diff_rows(lines: list[str]) -> list[tuple[str, str]]:
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


def subjects(changes: list[str]) -> list[tuple[str, str]]:
    """Route changes split into what changed and how ("ticket-triage / internal", "a → b"), for emphasis."""
    return [(subject, rest) for subject, _, rest in (change.partition(": ") for change in changes)]


def _version_diff(old: PolicyVersion, new: PolicyVersion) -> dict:
    slug = new.policy_set.slug
    return {
        "old": old,
        "new": new,
        "route_changes": subjects(route_changes(old.spec, new.spec)),
        "lines": diff_rows(text_diff(old.document, new.document, f"{slug} v{old.number}", f"{slug} v{new.number}")),
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
