"""One matrix cell: its panel (verdict, reasons, history) and the actions on it, answered in place."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import SafeString
from django.views.decorators.http import require_POST

from registry.models import ModelVersion
from steward.forms import add_model_errors
from steward.history import history_rows

from ..forms import (
    CELL_FORMS,
)
from ..matrix import CellState, Verdict, check
from ..models import (
    REQUEST_CELLS,
    REVIEW_CELLS,
    CellDecision,
    DataClassification,
    MatrixCell,
)
from .matrix import VIEW_MATRIX, cell_html, matrix_context

# --- what uses a cell: announced by the floors above ---------------------------------------------


@dataclass(frozen=True)
class CellUse:
    """Something that relies on a cell being usable, e.g. a route of a current published policy."""

    label: str
    url: str


# Filled by the apps above (portfolio: the routes of current published policies through the cell).
# Each takes the version and the classification and returns what uses that pair.
CELL_USES: list[Callable[[ModelVersion, DataClassification], list[CellUse]]] = []


def cell_uses(version: ModelVersion, classification: DataClassification) -> list[CellUse]:
    return [use for find in CELL_USES for use in find(version, classification)]


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
    confirm_suspend: bool = False,
) -> dict:
    verdict = check(version, classification)
    uses = cell_uses(version, classification)
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
        "uses": uses,
        "confirm_suspend": confirm_suspend and bool(uses),
    }


def _into_panel(request: HttpRequest) -> bool:
    """Whether htmx asked for the panel alone (to swap it into the matrix page it shows).

    htmx going back to a cell's URL (a history restore) wants the whole page, as a plain link,
    a reload or a bookmark does.
    """
    return bool(request.htmx) and not request.htmx.history_restore_request


def _cell_page(request: HttpRequest, context: dict, status: int = 200) -> HttpResponse:
    """The matrix page with this cell's panel open: what a cell's own URL shows."""
    return render(request, "compliance/matrix.html", {**matrix_context(request), **context}, status=status)


@permission_required(VIEW_MATRIX, raise_exception=True)
def cell_detail(request: HttpRequest, version_pk: int, classification_slug: str) -> HttpResponse:
    """The cell panel (htmx, into the matrix page), or the matrix page with the panel open."""
    version, classification = _pair(version_pk, classification_slug)
    context = _panel_context(request, version, classification)
    if _into_panel(request):
        response = render(request, "compliance/_cell_panel.html", context)
    else:
        response = _cell_page(request, context)
    # One URL, two answers: a cache must not give the panel alone to a reload.
    patch_vary_headers(response, ["HX-Request", "HX-History-Restore-Request"])
    return response


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
        if action == "suspend" and not form.cleaned_data["confirm"] and cell_uses(version, classification):
            # A confirmation step first: say which published routes go through the cell.
            context = _panel_context(request, version, classification, bound=(action, form), confirm_suspend=True)
            if request.htmx:
                return render(request, "compliance/_cell_panel.html", context)
            return _cell_page(request, context)
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
                cell_page = reverse("compliance:cell", args=[version.pk, classification.slug])
                return redirect(_next_page(request) or cell_page)
            context = _panel_context(request, version, classification, done=done)
            response = render(request, "compliance/_cell_panel.html", {**context, "oob_cell": _oob_cell(context)})
            # What awaits officers changed: the nav badge asks again; what is usable changed: the
            # matrix's coverage chart asks again.
            response["HX-Trigger"] = "inbox-changed, matrix-changed"
            return response
    context = _panel_context(request, version, classification, bound=(action, form))
    if request.htmx:
        return render(request, "compliance/_cell_panel.html", {**context, "oob_cell": _oob_cell(context)})
    return _cell_page(request, context, status=status)


def _next_page(request: HttpRequest) -> str | None:
    """Where a form posted from elsewhere (the approvals inbox) asks to return: a path on this site only."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return None


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
