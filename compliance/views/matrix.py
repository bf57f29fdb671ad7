"""The compliance matrix: every version against every classification, filtered and paged, and its CSV."""

from __future__ import annotations

import csv
import functools
from collections.abc import Iterator
from html import escape
from urllib.parse import urlencode

from django.contrib.auth.decorators import permission_required
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.utils.safestring import SafeString, mark_safe

from audits import events as audit
from registry.filters import ModelVersionFilter
from registry.models import ModelVersion
from steward.exports import Echo, spreadsheet_safe
from steward.paging import page_size

from ..charts import coverage_chart
from ..matrix import CellState, Matrix, Verdict
from ..models import (
    DataClassification,
)

VIEW_MATRIX = "compliance.view_matrixcell"
MATRIX_PAGE_SIZE = 50


# --- the matrix --------------------------------------------------------------------------------


def _filtered_versions(request: HttpRequest) -> tuple[ModelVersionFilter, QuerySet[ModelVersion]]:
    """The registry's filter over model versions, and the versions it selects."""
    versions = ModelVersion.objects.select_related("model__provider")
    filterset = ModelVersionFilter(request.GET or None, queryset=versions)
    return filterset, filterset.qs if filterset.is_bound else filterset.queryset


def cell_html(
    version: ModelVersion, classification: DataClassification, verdict: Verdict, oob: bool = False
) -> SafeString:
    """One matrix cell: its state in colour and words, its reasons on hover, a link to its panel
    (which opens beside the matrix and puts the cell's own URL in the address bar).

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
        f'title="{title}"{swap}><a href="{url}" hx-get="{url}" hx-target="#cell-panel" hx-swap="innerHTML" '
        f'hx-push-url="true">'
        f"{verdict.label}</a></td>"
    )


@functools.lru_cache(maxsize=1024)
def _escaped(text: str) -> str:
    return escape(text)


@functools.cache
def _cell_url_prefix() -> str:
    """``/compliance/matrix/cell/``, so that a cell's link costs no URL reversal."""
    return reverse("compliance:cell", args=[0, "x"]).removesuffix("0/x/")


def _state_filter(request: HttpRequest) -> str:
    """The cell state asked for (``?state=awaiting``), or "" for every row; an unknown state is ignored."""
    state = request.GET.get("state", "")
    return state if state in CellState.LABELS else ""


def _with_state(rows: list, state: str) -> list:
    """The rows (versions) that have at least one cell in ``state``; all rows when no state is asked for."""
    if not state:
        return rows
    return [(version, cells) for version, cells in rows if any(v.state == state for _, v in cells)]


def matrix_context(request: HttpRequest) -> dict:
    """The matrix page's context: versions filtered like the registry (paged) x classifications,
    with the coverage chart.

    One ``Matrix`` over every version the filters select serves both the chart (which counts
    them all) and the page (a slice of its rows), so the number of queries is fixed.
    """
    filterset, versions = _filtered_versions(request)
    classifications = list(DataClassification.objects.all())
    matrix = Matrix(versions, classifications)
    state = _state_filter(request)
    rows = _with_state(matrix.rows(), state)
    page = Paginator(rows, page_size(request, MATRIX_PAGE_SIZE)).get_page(request.GET.get("page"))
    table = [
        (version, mark_safe("".join(cell_html(version, classification, verdict) for classification, verdict in cells)))
        for version, cells in page
    ]
    query = request.GET.copy()
    query.pop("page", None)
    # The export keeps the filters that are set (the filter form also sends the empty ones).
    export = urlencode([(k, v) for k, values in query.lists() for v in values if v and k != "per_page"])
    return {
        "filter": filterset,
        "page": page,
        "table": table,
        "classifications": classifications,
        "chart": coverage_chart(matrix, rows, classifications) if classifications and rows else "",
        "query": query.urlencode(),
        "csv_url": reverse("compliance:matrix-csv") + (f"?{export}" if export else ""),
        "per_page": request.GET.get("per_page", ""),
        "states": CellState.LABELS.items(),
        "state": state,
    }


# The parts of the page that htmx asks for by their id: the filtered results, or only the
# coverage chart (asked again after a cell action changed what is usable).
MATRIX_PARTIALS = {"matrix-results": "compliance/_matrix_results.html", "coverage": "compliance/_coverage.html"}


@permission_required(VIEW_MATRIX, raise_exception=True)
def matrix_page(request: HttpRequest) -> HttpResponse:
    """Model versions x classifications with a coverage chart; a cell's panel opens beside them."""
    context = matrix_context(request)
    partial = MATRIX_PARTIALS.get(request.htmx.target) if request.htmx else None
    response = render(request, partial or "compliance/matrix.html", context)
    patch_vary_headers(response, ["HX-Request", "HX-Target"])
    return response


@permission_required(VIEW_MATRIX, raise_exception=True)
def matrix_csv(request: HttpRequest) -> HttpResponse:
    """The matrix as CSV, filtered like the page: one row per version, a state and reasons per classification."""
    filterset, versions = _filtered_versions(request)
    if filterset.is_bound and not filterset.is_valid():
        errors = "; ".join(f"{field}: {' '.join(messages)}" for field, messages in filterset.errors.items())
        return HttpResponse(f"Bad filter: {errors}\n", status=400, content_type="text/plain; charset=utf-8")
    classifications = list(DataClassification.objects.all())
    matrix = Matrix(versions, classifications)
    state = _state_filter(request)
    writer = csv.writer(Echo())

    def lines() -> Iterator[str]:
        header = ["ref", "provider", "tier", "status", "region"]
        for classification in classifications:
            header += [classification.slug, f"{classification.slug} reasons"]
        yield writer.writerow(header)
        for version, cells in _with_state(matrix.rows(), state):
            row = [version.ref, version.model.provider.name, version.cost_tier, version.status, version.region]
            for _classification, verdict in cells:
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
