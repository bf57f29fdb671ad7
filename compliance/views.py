"""Compliance pages: the matrix (with its cell panel and CSV export), certifications and classifications.

Every verdict shown comes from ``compliance.matrix.Matrix``; every decision goes through the
``MatrixCell`` methods. Views parse input, authorise, call one thing and render.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import math
from collections import Counter
from collections.abc import Callable, Iterator
from html import escape
from pathlib import Path
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_POST

from audits import events as audit
from registry.filters import ModelVersionFilter
from registry.models import ModelVersion, Status, known_tiers
from registry.views import page_size
from steward.charts import TIER_COLOURS, bar_chart
from steward.exports import Echo, spreadsheet_safe
from steward.forms import add_model_errors
from steward.history import history_rows

from .alerts import EXPIRY_WARNING_DAYS
from .forms import (
    CELL_FORMS,
    CertificationForm,
    ClassificationForm,
    HoldingForm,
)
from .matrix import CellState, Matrix, Verdict, check
from .models import (
    REQUEST_CELLS,
    REVIEW_CELLS,
    CellDecision,
    Certification,
    CertificationHolding,
    DataClassification,
    MatrixCell,
)

VIEW_MATRIX = "compliance.view_matrixcell"
MATRIX_PAGE_SIZE = 50


# --- the matrix --------------------------------------------------------------------------------


def _filtered_versions(request: HttpRequest) -> tuple[ModelVersionFilter, QuerySet[ModelVersion]]:
    """The registry's filter over model versions, and the versions it selects."""
    versions = ModelVersion.objects.select_related("model__provider")
    filterset = ModelVersionFilter(request.GET or None, queryset=versions)
    return filterset, filterset.qs if filterset.is_bound else filterset.queryset


def _coverage_chart(matrix: Matrix, rows: list, classifications: list[DataClassification]) -> str:
    """Grouped bars: usable model versions per classification, one series per cost tier."""
    order = known_tiers()
    tiers = sorted(
        {version.cost_tier for version in matrix.versions},
        key=lambda tier: (order.index(tier) if tier in order else len(order), tier),
    )
    usable = Counter(
        (version.cost_tier, classification.pk)
        for version, cells in rows
        for classification, verdict in cells
        if verdict.usable
    )
    slugs = [c.slug for c in classifications]
    most = max(usable.values(), default=0)
    return bar_chart(
        slugs,
        {tier: [usable[(tier, c.pk)] for c in classifications] for tier in tiers},
        "Usable model versions per classification and cost tier",
        barmode="group",
        colours=TIER_COLOURS,
        height=260,
        layout={
            # Whole numbers only, and a visible axis even when nothing is usable yet.
            "yaxis": {
                "title": {"text": "usable versions"},
                "rangemode": "tozero",
                "range": [0, max(most, 1) * 1.1],
                "tick0": 0,
                "dtick": max(1, math.ceil(most / 6)),
            },
            "legend": {"orientation": "h", "y": -0.25, "title": {"text": "tier "}},
        },
    )


def cell_html(
    version: ModelVersion, classification: DataClassification, verdict: Verdict, oob: bool = False
) -> SafeString:
    """One matrix cell: its state in colour and words, its reasons on hover, a link to its panel.

    Built here rather than by a template include because the page renders thousands of cells
    and the template engine would dominate its time; ``oob`` marks it for an htmx out-of-band swap.
    """
    slug = _escaped(classification.slug)
    url = f"{_cell_url_prefix()}{version.pk}/{slug}/"
    # State and label are Steward's own constants; the reasons are escaped per cell.
    title = escape(f"{version.ref} × {classification.slug}: {'; '.join(verdict.reasons) or 'usable'}")
    swap = ' hx-swap-oob="true"' if oob else ""
    return mark_safe(  # every interpolated outside value is escaped
        f'<td id="cell-{version.pk}-{slug}" class="cell state-{verdict.state}" data-state="{verdict.state}" '
        f'title="{title}"{swap}><a href="{url}" hx-get="{url}" hx-target="#cell-panel" hx-swap="innerHTML">'
        f"{verdict.label}</a></td>"
    )


@functools.lru_cache(maxsize=1024)
def _escaped(text: str) -> str:
    return escape(text)


@functools.cache
def _cell_url_prefix() -> str:
    """``/compliance/matrix/cell/``, so that a cell's link costs no URL reversal."""
    return reverse("compliance:cell", args=[0, "x"]).removesuffix("0/x/")


@permission_required(VIEW_MATRIX, raise_exception=True)
def matrix_page(request: HttpRequest) -> HttpResponse:
    """Model versions (filtered like the registry, paged) x classifications, with a coverage chart.

    One ``Matrix`` over every version the filters select serves both the chart (which counts
    them all) and the page (a slice of its rows), so the number of queries is fixed.
    """
    filterset, versions = _filtered_versions(request)
    classifications = list(DataClassification.objects.all())
    matrix = Matrix(versions, classifications)
    rows = matrix.rows()
    page = Paginator(rows, page_size(request, MATRIX_PAGE_SIZE)).get_page(request.GET.get("page"))
    table = [
        (version, mark_safe("".join(cell_html(version, classification, verdict) for classification, verdict in cells)))
        for version, cells in page
    ]
    query = request.GET.copy()
    query.pop("page", None)
    # The export keeps the filters that are set (the filter form also sends the empty ones).
    export = urlencode([(k, v) for k, values in query.lists() for v in values if v and k != "per_page"])
    context = {
        "filter": filterset,
        "page": page,
        "table": table,
        "classifications": classifications,
        "chart": _coverage_chart(matrix, rows, classifications) if classifications and rows else "",
        "query": query.urlencode(),
        "csv_url": reverse("compliance:matrix-csv") + (f"?{export}" if export else ""),
        "per_page": request.GET.get("per_page", ""),
        "states": CellState.LABELS.items(),
    }
    if request.htmx and request.htmx.target == "matrix-results":
        return render(request, "compliance/_matrix_results.html", context)
    return render(request, "compliance/matrix.html", context)


@permission_required(VIEW_MATRIX, raise_exception=True)
def matrix_csv(request: HttpRequest) -> HttpResponse:
    """The matrix as CSV, filtered like the page: one row per version, a state and reasons per classification."""
    filterset, versions = _filtered_versions(request)
    if filterset.is_bound and not filterset.is_valid():
        errors = "; ".join(f"{field}: {' '.join(messages)}" for field, messages in filterset.errors.items())
        return HttpResponse(f"Bad filter: {errors}\n", status=400, content_type="text/plain; charset=utf-8")
    classifications = list(DataClassification.objects.all())
    matrix = Matrix(versions, classifications)
    writer = csv.writer(Echo())

    def lines() -> Iterator[str]:
        header = ["ref", "provider", "tier", "status", "region"]
        for classification in classifications:
            header += [classification.slug, f"{classification.slug} reasons"]
        yield writer.writerow(header)
        for version in matrix.versions:
            row = [version.ref, version.model.provider.name, version.cost_tier, version.status, version.region]
            for classification in classifications:
                verdict = matrix.verdict(version, classification)
                row += [verdict.label, "; ".join(verdict.reasons)]
            yield writer.writerow([spreadsheet_safe(str(value)) for value in row])

    audit.record(
        "export.matrix_csv",
        actor=request.user,
        object_type="compliance.matrixcell",
        object_repr="compliance matrix",
        after={"filters": {k: v for k, v in request.GET.items() if v}, "versions": len(matrix.versions)},
    )
    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    filename = f"compliance-matrix-{matrix.day.isoformat()}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# --- one cell: its panel and the actions on it ---------------------------------------------------

ACTION_LABELS = {"request": "Request", "approve": "Approve", "deny": "Deny", "suspend": "Suspend", "resume": "Resume"}
ACTION_STYLES = {"approve": "primary", "deny": "danger", "suspend": "danger"}
ACTION_DONE = {
    "request": "Requested",
    "approve": "Approved",
    "deny": "Denied",
    "suspend": "Suspended",
    "resume": "Resumed",
}
CELL_ACTIONS: dict[str, Callable[[MatrixCell, object, dict], None]] = {
    "request": lambda cell, by, data: cell.request(by, data["note"]),
    "approve": lambda cell, by, data: cell.approve(by, data["justification"], data["expires_at"]),
    "deny": lambda cell, by, data: cell.deny(by, data["justification"]),
    "suspend": lambda cell, by, data: cell.suspend(by, data["reason"]),
    "resume": lambda cell, by, data: cell.resume(by, data["reason"]),
}


def _pair(version_pk: int, classification_slug: str) -> tuple[ModelVersion, DataClassification]:
    version = get_object_or_404(ModelVersion.objects.with_related(), pk=version_pk)
    classification = get_object_or_404(DataClassification, slug=classification_slug)
    return version, classification


def _available_actions(user, verdict: Verdict) -> list[str]:
    """The actions that make sense for ``user`` on a cell in this state (the model decides in the end)."""
    cell = verdict.cell
    decision = cell.decision if cell else ""
    suspended = bool(cell and cell.is_suspended)
    actions = []
    if user.has_perm(REQUEST_CELLS) and decision in ("", CellDecision.DENIED):
        actions.append("request")
    if user.has_perm(REVIEW_CELLS):
        own_request = bool(cell and cell.requested_by_id == user.pk)
        if (
            verdict.eligible
            and not own_request
            and (decision != CellDecision.APPROVED or verdict.state == CellState.EXPIRED)
        ):
            actions.append("approve")
        if decision != CellDecision.DENIED:
            actions.append("deny")
        if decision == CellDecision.APPROVED and not suspended:
            actions.append("suspend")
        if suspended:
            actions.append("resume")
    return actions


def _panel_context(
    request: HttpRequest,
    version: ModelVersion,
    classification: DataClassification,
    bound: tuple[str, object] | None = None,
    done: str = "",
) -> dict:
    verdict = check(version, classification)
    # The full cell, with its people, for the panel and its history.
    cell = (
        MatrixCell.objects.select_related("decided_by", "requested_by", "suspended_by").get(pk=verdict.cell.pk)
        if verdict.cell
        else None
    )
    base = reverse("compliance:cell", args=[version.pk, classification.slug])
    forms = []
    for action in _available_actions(request.user, verdict):
        form = CELL_FORMS[action](auto_id=f"{action}_%s")
        if bound and bound[0] == action:
            form = bound[1]
        forms.append(
            {
                "action": action,
                "form": form,
                "url": f"{base}{action}/",
                "label": ACTION_LABELS[action],
                "style": ACTION_STYLES.get(action, ""),
            }
        )
    # A refused action whose form is no longer offered still shows why it was refused.
    refused = bound[1] if bound and bound[0] not in {f["action"] for f in forms} else None
    return {
        "version": version,
        "classification": classification,
        "verdict": verdict,
        "cell": cell,
        "history": history_rows(cell) if cell and cell.pk else [],
        "forms": forms,
        "refused": refused,
        "own_request": bool(cell and cell.requested_by_id == request.user.pk and request.user.has_perm(REVIEW_CELLS)),
        "done": done,
        "in_matrix": bool(request.htmx),
    }


@permission_required(VIEW_MATRIX, raise_exception=True)
def cell_detail(request: HttpRequest, version_pk: int, classification_slug: str) -> HttpResponse:
    """The cell panel (htmx, into the matrix page) or a page of its own (a plain link)."""
    version, classification = _pair(version_pk, classification_slug)
    context = _panel_context(request, version, classification)
    template = "compliance/_cell_panel.html" if request.htmx else "compliance/cell.html"
    return render(request, template, context)


def _act(request: HttpRequest, version_pk: int, classification_slug: str, action: str) -> HttpResponse:
    """Run one cell action and answer with the panel (and, for htmx, the cell swapped out of band).

    Refusals (bad input, ineligible, separation of duties) are rendered in the panel. htmx does
    not swap 4xx responses, so htmx requests get 200 with the errors shown; plain form posts get
    400 (or 403 when the model refuses the person).
    """
    version, classification = _pair(version_pk, classification_slug)
    form = CELL_FORMS[action](request.POST, auto_id=f"{action}_%s")
    status = 400
    if form.is_valid():
        cell = MatrixCell.for_pair(version, classification)
        try:
            CELL_ACTIONS[action](cell, request.user, form.cleaned_data)
        except ValidationError as error:
            add_model_errors(form, error)
        except PermissionDenied as error:
            form.add_error(None, str(error))
            status = 403
        else:
            done = f"{ACTION_DONE[action]} by {request.user.get_username()}."
            if not request.htmx:
                messages.success(request, f"{version.ref} x {classification.slug}: {done}")
                return redirect("compliance:cell", version.pk, classification.slug)
            context = _panel_context(request, version, classification, done=done)
            return render(request, "compliance/_cell_panel.html", {**context, "oob_cell": _oob_cell(context)})
    context = _panel_context(request, version, classification, bound=(action, form))
    if request.htmx:
        return render(request, "compliance/_cell_panel.html", {**context, "oob_cell": _oob_cell(context)})
    return render(request, "compliance/cell.html", context, status=status)


def _oob_cell(context: dict) -> SafeString:
    """The cell's new state for the matrix table, swapped out of band beside the panel."""
    return cell_html(context["version"], context["classification"], context["verdict"], oob=True)


def _cell_action_view(action: str, permission: str) -> Callable[..., HttpResponse]:
    @require_POST
    @permission_required(permission, raise_exception=True)
    def view(request: HttpRequest, version_pk: int, classification_slug: str) -> HttpResponse:
        return _act(request, version_pk, classification_slug, action)

    view.__name__ = view.__qualname__ = f"cell_{action}"
    view.__doc__ = f"POST: {action} a matrix cell (needs {permission})."
    return view


CELL_ACTION_VIEWS = {
    "request": _cell_action_view("request", REQUEST_CELLS),
    "approve": _cell_action_view("approve", REVIEW_CELLS),
    "deny": _cell_action_view("deny", REVIEW_CELLS),
    "suspend": _cell_action_view("suspend", REVIEW_CELLS),
    "resume": _cell_action_view("resume", REVIEW_CELLS),
}


# --- certifications and their evidence -----------------------------------------------------------


def _holding_rows(today: dt.date) -> list[dict]:
    holdings = CertificationHolding.objects.select_related("certification", "provider", "model_version", "recorded_by")
    rows = []
    for holding in holdings:
        days = (holding.valid_until - today).days
        if days < 0:
            standing = "expired"
        elif holding.valid_from > today:
            standing = "not-yet"
        elif days <= EXPIRY_WARNING_DAYS:
            standing = "expiring"
        else:
            standing = "valid"
        rows.append({"holding": holding, "days": days, "days_ago": -days, "standing": standing})
    return rows


def _certifications_page(
    request: HttpRequest,
    certification_form: CertificationForm | None = None,
    holding_form: HoldingForm | None = None,
    status: int = 200,
) -> HttpResponse:
    today = timezone.localdate()
    context = {
        "catalogue": Certification.objects.annotate(holding_count=Count("holdings"))
        .prefetch_related("classifications")
        .order_by("name"),
        "holdings": _holding_rows(today),
        "today": today,
        "warning_days": EXPIRY_WARNING_DAYS,
        "certification_form": certification_form or CertificationForm(),
        "holding_form": holding_form or HoldingForm(),
        "can_add_certification": request.user.has_perm("compliance.add_certification"),
        "can_add_holding": request.user.has_perm("compliance.add_certificationholding"),
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
@permission_required("compliance.add_certificationholding", raise_exception=True)
def add_holding(request: HttpRequest) -> HttpResponse:
    """Record a holding; its evidence file is stored only when everything is valid."""
    form = HoldingForm(request.POST, request.FILES)
    form.instance.recorded_by = request.user
    if form.is_valid():
        holding = form.save()
        messages.success(request, f"Recorded: {holding}.")
        return redirect("compliance:certifications")
    return _certifications_page(request, holding_form=form, status=400)


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


# --- classifications -----------------------------------------------------------------------------


@permission_required("compliance.view_dataclassification", raise_exception=True)
def classifications_page(request: HttpRequest) -> HttpResponse:
    """Each classification, what it requires, and how many versions are usable for it now."""
    classifications = list(DataClassification.objects.prefetch_related("required_certifications"))
    # Only approved versions with an approved cell can be usable; the Matrix decides which are.
    candidates = (
        ModelVersion.objects.with_related()
        .filter(status=Status.APPROVED, matrix_cells__decision=CellDecision.APPROVED)
        .distinct()
    )
    matrix = Matrix(candidates, classifications)
    usable = Counter(c.pk for _, cells in matrix.rows() for c, verdict in cells if verdict.usable)
    rows = [{"classification": c, "usable": usable[c.pk]} for c in classifications]
    context = {
        "rows": rows,
        "can_add": request.user.has_perm("compliance.add_dataclassification"),
        "can_change": request.user.has_perm("compliance.change_dataclassification"),
    }
    return render(request, "compliance/classifications.html", context)


def _classification_form(request: HttpRequest, instance: DataClassification | None) -> HttpResponse:
    form = ClassificationForm(request.POST or None, instance=instance)
    if request.method == "POST" and form.is_valid():
        classification = form.save()
        verb = "updated" if instance else "added"
        messages.success(request, f"Classification {classification.slug} {verb}.")
        return redirect("compliance:classifications")
    status = 400 if request.method == "POST" else 200
    context = {"form": form, "instance": instance, "history": history_rows(instance) if instance else None}
    return render(request, "compliance/classification_form.html", context, status=status)


@permission_required("compliance.add_dataclassification", raise_exception=True)
def add_classification(request: HttpRequest) -> HttpResponse:
    return _classification_form(request, None)


@permission_required("compliance.change_dataclassification", raise_exception=True)
def edit_classification(request: HttpRequest, slug: str) -> HttpResponse:
    return _classification_form(request, get_object_or_404(DataClassification, slug=slug))
