"""Evaluation pages: suites (with YAML import), runs with live progress, results."""

from __future__ import annotations

import json
from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, Max, OuterRef, Q, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from steward import degraded
from steward.degraded import ServiceUnavailable
from steward.paging import WHOLE_NUMBER, page_size

from ..forms import StartRunForm, SuiteImportForm
from ..models import FINISHED_RUN_STATUSES, EvaluationCase, EvaluationRun, EvaluationSuite, RunStatus, RunTrigger
from .comparison import compare_runs
from .runs import RUN_PERMISSION, cancel_run, start_run
from .suites import MANAGE_SUITES, SuiteFormatError, import_suite, with_links

VIEW_SUITES = "registry.view_evaluationsuite"
VIEW_RUNS = "registry.view_evaluationrun"
RUN_PAGE_SIZE = 25
RESULT_PAGE_SIZE = 50
CASE_PAGE_SIZE = 25
COMPARE_PAGE_SIZE = 100
# The runs a run's page offers to compare with: the suite's latest finished ones.
COMPARE_CHOICES = 50
OUTPUT_PREVIEW_CHARS = 300


def _suites_with_counts() -> QuerySet[EvaluationSuite]:
    cases = EvaluationCase.objects.filter(suite=OuterRef("pk")).order_by().values("suite")
    runs = EvaluationRun.objects.filter(suite=OuterRef("pk")).order_by().values("suite")
    return EvaluationSuite.objects.select_related("judge").annotate(
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


# Sections that the apps above add to the suites page (portfolio: cost against score per task).
# Each takes the request and returns rendered HTML.
SUITE_LIST_PANELS: list[Callable[[HttpRequest], str]] = []


def _suite_list_context(request: HttpRequest, form: SuiteImportForm | None = None, errors: list | None = None) -> dict:
    suites = with_links(_suites_with_counts())
    return {
        "suites": suites,
        "link_labels": [label for label, _ in suites[0].links] if suites else [],
        "panels": [panel(request) for panel in SUITE_LIST_PANELS],
        **_import_context(request, form, errors),
    }


@permission_required(VIEW_SUITES, raise_exception=True)
def suite_list(request: HttpRequest) -> HttpResponse:
    return render(request, "registry/suite_list.html", _suite_list_context(request))


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
    [suite] = with_links([suite])
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
    suite = get_object_or_404(EvaluationSuite.objects.select_related("judge"), slug=slug)
    context = _suite_context(request, suite)
    if request.htmx and request.htmx.target == "case-table":
        return render(request, "registry/_case_table.html", context)
    return render(request, "registry/suite_detail.html", context)


@require_POST
@permission_required(RUN_PERMISSION, raise_exception=True)
def suite_start_run(request: HttpRequest, slug: str) -> HttpResponse:
    suite = get_object_or_404(EvaluationSuite.objects.select_related("judge"), slug=slug)
    form = StartRunForm(request.POST)
    if form.is_valid():
        try:
            run = start_run(suite, form.cleaned_data["model_version"], by=request.user, trigger=RunTrigger.MANUAL)
        except ValidationError as error:
            for message in error.messages:
                form.add_error(None, message)
        except ServiceUnavailable as error:
            form.add_error(None, f"{degraded.unavailable_message(error.reason)} Nothing was started.")
            context = _suite_context(request, suite, run_form=form)
            response = render(request, "registry/suite_detail.html", context, status=503)
            for name, value in degraded.unavailable_headers().items():
                response[name] = value
            return response
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
    return render(request, "registry/suite_list.html", _suite_list_context(request, form, errors), status=400)


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
    failures_only = request.GET.get("show") == "failures"
    failing = Q(passed=False) | ~Q(error="")
    if failures_only:
        results = results.filter(failing)
    return {
        "run": run,
        "failures_only": failures_only,
        "failure_count": run.results.filter(failing).count() if run.is_finished else None,
        "eta_seconds": run.eta_seconds(),
        "can_run": request.user.has_perm(RUN_PERMISSION),
        "results": Paginator(results, page_size(request, RESULT_PAGE_SIZE)).get_page(request.GET.get("page")),
        "preview_chars": OUTPUT_PREVIEW_CHARS,
    }


def _compare_choices(run: EvaluationRun) -> list[EvaluationRun]:
    """The other finished runs of the run's suite, newest first, to compare the run with."""
    return list(
        EvaluationRun.objects.filter(suite_id=run.suite_id, status__in=FINISHED_RUN_STATUSES)
        .exclude(pk=run.pk)
        .select_related("model_version")
        .order_by("-created_at", "-pk")[:COMPARE_CHOICES]
    )


@permission_required(VIEW_RUNS, raise_exception=True)
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = _run(pk)
    context = _run_context(request, run)
    if request.htmx and request.htmx.target == "run-results":
        return render(request, "registry/_run_results.html", context)
    return render(request, "registry/run_detail.html", {**context, "compare_choices": _compare_choices(run)})


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


@permission_required(VIEW_RUNS, raise_exception=True)
def run_compare(request: HttpRequest, pk: int) -> HttpResponse:
    """Two runs of one suite case by case (``?with=<run id>``), changed cases first; without
    ``with``, the runs to choose from. ``?show=changed`` leaves out the unchanged cases."""
    run = _run(pk)
    context = {"run": run, "compare_choices": _compare_choices(run), "comparison": None, "error": ""}
    raw = request.GET.get("with", "")
    if not raw:
        return render(request, "registry/run_compare.html", context)
    other = (
        EvaluationRun.objects.select_related("suite", "model_version__model__provider").filter(pk=int(raw)).first()
        if WHOLE_NUMBER.fullmatch(raw)
        else None
    )
    try:
        if other is None:
            raise ValidationError({"with": f"No run has the id {raw[:40]!r}: choose one of the runs listed."})
        comparison = compare_runs(run, other)
    except ValidationError as error:
        context["error"] = " ".join(f"{field}: {' '.join(messages)}" for field, messages in error.message_dict.items())
        return render(request, "registry/run_compare.html", context, status=400)
    changed_only = request.GET.get("show") == "changed"
    counts = comparison.counts()
    rows = comparison.ordered(changed_only=changed_only)
    context |= {
        "other": other,
        "comparison": comparison,
        "counts": counts,
        "changed_count": len(comparison.cases) - counts["same"],
        "changed_only": changed_only,
        "rows": Paginator(rows, page_size(request, COMPARE_PAGE_SIZE)).get_page(request.GET.get("page")),
        "query": f"with={other.pk}" + ("&show=changed" if changed_only else ""),
        "preview_chars": OUTPUT_PREVIEW_CHARS,
    }
    if request.htmx and request.htmx.target == "comparison":
        return render(request, "registry/_run_comparison.html", context)
    return render(request, "registry/run_compare.html", context)
