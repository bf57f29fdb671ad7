"""Registry pages: the list, a version's detail, proposing and lifecycle transitions; evaluation
suites, runs (with live progress) and recommendations."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, Max, OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from portfolio.models import PROPOSE_CHANGES, PolicySet, Task
from steward.charts import figure_json
from steward.forms import add_model_errors
from steward.history import history_rows
from steward.roles import PROPOSE_VERSIONS, REVIEW_VERSIONS

from .evaluation.endpoints import BoundKey, CredentialRefused, bind_key
from .evaluation.recommendations import (
    DEFAULT_TOLERANCE_BP,
    Standing,
    pareto_frontier,
    propose_route_change,
    review_routes,
    standings_by_task,
)
from .evaluation.runs import RUN_PERMISSION, cancel_run, latest_runs, start_run
from .evaluation.suites import MANAGE_SUITES, SuiteFormatError, import_suite
from .filters import ModelVersionFilter
from .forms import CredentialRequestForm, ProposeVersionForm, StartRunForm, SuiteImportForm, TransitionForm
from .models import (
    ACTIONS,
    REQUEST_CREDENTIALS,
    REVIEW_CREDENTIALS,
    EndpointCredential,
    EvaluationCase,
    EvaluationRun,
    EvaluationSuite,
    ModelVersion,
    RunStatus,
    RunTrigger,
)

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


def key_binding(version: ModelVersion) -> str:
    """Why evaluations of ``version`` may not send its key ("" when they may)."""
    try:
        bind_key(version)
    except CredentialRefused as error:
        return str(error)
    return ""


def _detail_context(version: ModelVersion, form: TransitionForm | None = None) -> dict:
    return {
        "version": version,
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
    if form.is_valid():
        try:
            credential.decide(action, request.user, form.cleaned_data["comment"])
        except ValidationError as error:
            for message in error.messages:
                form.add_error(None, message)
        except PermissionDenied as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, f"{credential.env_var} is now {credential.get_status_display().lower()}.")
            return redirect(credential)
    return render(request, "registry/credential_detail.html", _credential_context(credential, form), status=400)


# --- evaluations --------------------------------------------------------------------------------

VIEW_SUITES = "registry.view_evaluationsuite"
VIEW_RUNS = "registry.view_evaluationrun"
RUN_PAGE_SIZE = 25
RESULT_PAGE_SIZE = 50
CASE_PAGE_SIZE = 25
OUTPUT_PREVIEW_CHARS = 300


def _suites_with_counts() -> QuerySet[EvaluationSuite]:
    cases = EvaluationCase.objects.filter(suite=OuterRef("pk")).order_by().values("suite")
    runs = EvaluationRun.objects.filter(suite=OuterRef("pk")).order_by().values("suite")
    return EvaluationSuite.objects.select_related("task", "judge").annotate(
        case_count=Subquery(cases.annotate(n=Count("pk")).values("n")),
        run_count=Subquery(runs.annotate(n=Count("pk")).values("n")),
        last_run_at=Subquery(runs.annotate(at=Max("created_at")).values("at")),
    )


def _import_context(
    request: HttpRequest,
    form: SuiteImportForm | None = None,
    errors: list | None = None,
    suite: EvaluationSuite | None = None,
) -> dict:
    """The import form; on a suite's page a promptfoo import goes into that suite by default."""
    return {
        "import_form": form or SuiteImportForm(),
        "import_errors": errors or [],
        "import_origin": suite.slug if suite else "",
        "import_name": suite.name if suite else "",
        "import_slug": suite.slug if suite else "",
        "can_import": request.user.has_perm(MANAGE_SUITES),
    }


def cost_score_figure(task, standings: list[Standing]) -> str:
    """Cost per 1,000 requests against score for one task's versions, with the Pareto frontier as a line."""
    frontier = pareto_frontier(standings)
    on_frontier = {s.version.pk for s in frontier}
    highest_cost = max(s.cost_per_1k_micro_usd for s in standings) / 1_000_000 or 0.001
    lowest_score = min(s.score_bp for s in standings) / 100

    def trace(points: list[Standing], name: str, colour: str) -> dict:
        return {
            "type": "scatter",
            "mode": "markers+text",
            "name": name,
            "x": [s.cost_per_1k_micro_usd / 1_000_000 for s in points],
            "y": [s.score_bp / 100 for s in points],
            "text": [s.version.ref for s in points],
            "textposition": "top center",
            "marker": {"size": 11, "color": colour},
            "hovertemplate": "%{text}<br>$%{x:.4f} per 1,000 requests<br>score %{y:.1f}<extra></extra>",
        }

    others = sorted(
        (s for s in standings if s.version.pk not in on_frontier),
        key=lambda s: (s.cost_per_1k_micro_usd, s.version.ref),
    )
    data = [
        {
            "type": "scatter",
            "mode": "lines",
            "name": "Pareto frontier",
            "x": [s.cost_per_1k_micro_usd / 1_000_000 for s in frontier],
            "y": [s.score_bp / 100 for s in frontier],
            "line": {"color": "#1a7f37", "width": 2, "dash": "dot"},
            "hoverinfo": "skip",
        },
        trace(frontier, "On the frontier", "#1a7f37"),
    ]
    if others:
        data.append(trace(others, "Dominated", "#8c959f"))
    return figure_json(
        data,
        {
            "title": {"text": f"{task.slug}: cost against score"},
            # Room on the right and at the top for the labels of the dearest and best versions.
            "margin": {"l": 50, "r": 30, "t": 50, "b": 40},
            "xaxis": {"title": {"text": "USD per 1,000 requests"}, "range": [0, highest_cost * 1.25]},
            "yaxis": {"title": {"text": "score (latest runs, out of 100)"}, "range": [lowest_score - 5, 105]},
            "legend": {"orientation": "h", "y": -0.25},
            "height": 380,
        },
    )


def _task_charts(standings: dict[int, dict[int, Standing]]) -> list[dict]:
    tasks = Task.objects.filter(pk__in=list(standings)).order_by("slug")
    return [
        {
            "task": task,
            "id": f"pareto-{task.slug}",
            "figure": cost_score_figure(task, list(standings[task.pk].values())),
        }
        for task in tasks
    ]


@permission_required(VIEW_SUITES, raise_exception=True)
def suite_list(request: HttpRequest) -> HttpResponse:
    context = {
        "suites": _suites_with_counts(),
        "task_charts": _task_charts(standings_by_task()),
        **_import_context(request),
    }
    return render(request, "registry/suite_list.html", context)


def _latest_run_per_version(suite: EvaluationSuite) -> QuerySet[EvaluationRun]:
    newest = (
        EvaluationRun.objects.filter(suite=suite, model_version=OuterRef("model_version"))
        .order_by("-created_at", "-pk")
        .values("pk")[:1]
    )
    return (
        EvaluationRun.objects.filter(suite=suite, pk=Subquery(newest))
        .select_related("model_version__model__provider")
        .order_by("model_version__ref")
    )


def _suite_context(request: HttpRequest, suite: EvaluationSuite, **extra) -> dict:
    cases = Paginator(suite.cases.order_by("position", "pk"), page_size(request, CASE_PAGE_SIZE))
    return {
        "suite": suite,
        "scorer_config": json.dumps(suite.scorer_config, ensure_ascii=False) if suite.scorer_config else "",
        "case_count": cases.count,
        "cases": cases.get_page(request.GET.get("page")),
        "latest": _latest_run_per_version(suite),
        "recent_runs": suite.runs.select_related("model_version", "requested_by").order_by("-created_at")[:10],
        "can_run": request.user.has_perm(RUN_PERMISSION),
        "run_form": extra.pop("run_form", None) or StartRunForm(),
        **_import_context(request, extra.pop("import_form", None), extra.pop("import_errors", None), suite),
        **extra,
    }


@permission_required(VIEW_SUITES, raise_exception=True)
def suite_detail(request: HttpRequest, slug: str) -> HttpResponse:
    suite = get_object_or_404(EvaluationSuite.objects.select_related("task", "judge"), slug=slug)
    context = _suite_context(request, suite)
    if request.htmx and request.htmx.target == "case-table":
        return render(request, "registry/_case_table.html", context)
    return render(request, "registry/suite_detail.html", context)


@require_POST
@permission_required(RUN_PERMISSION, raise_exception=True)
def suite_start_run(request: HttpRequest, slug: str) -> HttpResponse:
    suite = get_object_or_404(EvaluationSuite.objects.select_related("task", "judge"), slug=slug)
    form = StartRunForm(request.POST)
    if form.is_valid():
        try:
            run = start_run(suite, form.cleaned_data["model_version"], by=request.user, trigger=RunTrigger.MANUAL)
        except ValidationError as error:
            for message in error.messages:
                form.add_error(None, message)
        else:
            messages.success(request, f"Run #{run.pk} of {suite.name} against {run.model_version.ref} started.")
            return redirect(run)
    return render(request, "registry/suite_detail.html", _suite_context(request, suite, run_form=form), status=400)


@require_POST
@permission_required(MANAGE_SUITES, raise_exception=True)
def suite_import(request: HttpRequest) -> HttpResponse:
    """Import a suite; errors go back to the page the form was on (a suite's page or the list)."""
    form = SuiteImportForm(request.POST, request.FILES)
    errors = []
    if form.is_valid():
        data = form.cleaned_data
        try:
            suite, created, updated = import_suite(
                data["text"],
                request.user,
                format=data["format"],
                name=data["name"].strip(),
                slug=data["slug"].strip(),
                category=data["category"],
            )
        except SuiteFormatError as error:
            errors = form.located_errors(error)
        else:
            messages.success(request, f"Imported {suite.name}: {created} new case(s), {updated} updated.")
            return redirect(suite)
    origin = EvaluationSuite.objects.filter(slug=request.POST.get("origin", "")).first()
    if origin is not None:
        context = _suite_context(request, origin, import_form=form, import_errors=errors)
        return render(request, "registry/suite_detail.html", context, status=400)
    context = {
        "suites": _suites_with_counts(),
        "task_charts": _task_charts(standings_by_task()),
        **_import_context(request, form, errors),
    }
    return render(request, "registry/suite_list.html", context, status=400)


@permission_required(VIEW_RUNS, raise_exception=True)
def run_list(request: HttpRequest) -> HttpResponse:
    runs = EvaluationRun.objects.select_related("suite", "model_version", "requested_by").order_by("-created_at")
    status = request.GET.get("status", "")
    if status in RunStatus.values:
        runs = runs.filter(status=status)
    suite = request.GET.get("suite", "")
    if suite:
        runs = runs.filter(suite__slug=suite)
    page = Paginator(runs, page_size(request, RUN_PAGE_SIZE)).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "page": page,
        "query": query.urlencode(),
        "status": status,
        "suite_slug": suite,
        "statuses": RunStatus.choices,
        "suites": EvaluationSuite.objects.order_by("name").values_list("slug", "name"),
    }
    if request.htmx and request.htmx.target == "run-table":
        return render(request, "registry/_run_table.html", context)
    return render(request, "registry/run_list.html", context)


def _run(pk: int) -> EvaluationRun:
    return get_object_or_404(
        EvaluationRun.objects.select_related("suite", "model_version__model__provider", "requested_by"), pk=pk
    )


def _run_context(request: HttpRequest, run: EvaluationRun) -> dict:
    results = run.results.select_related("case").order_by("case__position", "case__pk")
    return {
        "run": run,
        "eta_seconds": run.eta_seconds(),
        "can_run": request.user.has_perm(RUN_PERMISSION),
        "results": Paginator(results, page_size(request, RESULT_PAGE_SIZE)).get_page(request.GET.get("page")),
        "preview_chars": OUTPUT_PREVIEW_CHARS,
    }


@permission_required(VIEW_RUNS, raise_exception=True)
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = _run(pk)
    context = _run_context(request, run)
    if request.htmx and request.htmx.target == "run-results":
        return render(request, "registry/_run_results.html", context)
    return render(request, "registry/run_detail.html", context)


@permission_required(VIEW_RUNS, raise_exception=True)
def run_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """The live part of the run page, polled every second until the run is finished.

    The answer that first shows the run finished also replaces the results table (out of band).
    """
    run = _run(pk)
    context = {**_run_context(request, run), "refresh_results": bool(request.htmx) and run.is_finished}
    return render(request, "registry/_run_live.html", context)


@require_POST
@permission_required(RUN_PERMISSION, raise_exception=True)
def run_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    run = _run(pk)
    try:
        cancel_run(run, request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, f"Run #{run.pk} cancelled after {run.done} of {run.total} cases.")
    return redirect(run)


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
    return render(request, "registry/recommendations.html", context)


@require_POST
@permission_required(PROPOSE_CHANGES, raise_exception=True)
def recommendation_apply(request: HttpRequest) -> HttpResponse:
    """Open a draft change request that follows a recommendation (engineers: they write change requests)."""
    tolerance_bp, _ = _tolerance_bp(request)
    back = f"{reverse('registry:recommendations')}?tolerance={tolerance_bp / 100:g}"
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


# --- a version's figures ------------------------------------------------------------------------

VERSION_CHART_RUNS = 500


def version_figures(version: ModelVersion) -> dict:
    """The latest score per suite with its figures, and the score and latency charts over time."""
    runs = list(
        EvaluationRun.objects.filter(model_version=version, status=RunStatus.COMPLETED)
        .select_related("suite")
        .order_by("-finished_at")[:VERSION_CHART_RUNS]
    )
    runs.reverse()
    latest = latest_runs(version)
    if not runs:
        return {"latest_runs": latest, "score_chart": None, "latency_chart": None}
    by_suite: dict[str, list[EvaluationRun]] = {}
    for run in runs:
        by_suite.setdefault(run.suite.name, []).append(run)
    score_data = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": name,
            "x": [run.finished_at.isoformat() for run in suite_runs],
            "y": [run.score_bp / 100 if run.score_bp is not None else None for run in suite_runs],
            "text": [f"run #{run.pk}" for run in suite_runs],
            "hovertemplate": "%{text}: %{y:.1f}<extra>" + name + "</extra>",
        }
        for name, suite_runs in by_suite.items()
    ]
    timed = [run for run in runs if run.latency_p50_ms is not None]
    latency_data = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": label,
            "x": [run.finished_at.isoformat() for run in timed],
            "y": [getattr(run, field) for run in timed],
            "text": [f"run #{run.pk} {run.suite.slug}" for run in timed],
            "hovertemplate": "%{text}: %{y} ms<extra>" + label + "</extra>",
        }
        for label, field in (("p50", "latency_p50_ms"), ("p95", "latency_p95_ms"))
    ]
    legend = {"orientation": "h", "y": -0.25}
    return {
        "latest_runs": latest,
        "score_chart": figure_json(
            score_data,
            {
                "title": {"text": "Score over time"},
                "yaxis": {"title": {"text": "score (out of 100)"}, "range": [0, 101]},
                "legend": legend,
                "height": 340,
            },
        ),
        "latency_chart": figure_json(
            latency_data,
            {
                "title": {"text": "Latency over time"},
                "yaxis": {"title": {"text": "ms"}, "rangemode": "tozero"},
                "legend": legend,
                "height": 340,
            },
        ),
    }
