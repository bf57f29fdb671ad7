"""What the audit pages share: filters applied, export attachments, and the keyset pages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.db.models import QuerySet
from django.http import HttpResponse, StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from steward.paging import CURSORS, Key, keyset_page, query_without_cursors  # noqa: F401 - shared by the pages

VIEW_EVENTS = "audits.view_auditevent"
VIEW_DECISIONS = "audits.view_decisionrecord"
VIEW_VIOLATIONS = "audits.view_violation"
DEFAULT_DAYS = 30  # the explorer's window when nobody chose one: its totals stay bounded
NOT_CHANGES = ("auth.", "export.")  # actions in the trail that change no governed object
EVENT_KEY: Key = (("seq", int),)
DECISION_KEY: Key = (("occurred_at", parse_datetime), ("pk", int))
VIOLATION_KEY: Key = (("detected_at", parse_datetime), ("pk", int))


query_string = query_without_cursors  # the request's filters, without cursors, for links and exports


def url_with(name: str, query: str) -> str:
    return reverse(name) + (f"?{query}" if query else "")


def filtered(filterset) -> QuerySet:
    return filterset.qs if filterset.is_bound else filterset.queryset


def filters_used(filterset) -> dict[str, str]:
    """The filters an export applied, as plain text for its audit event."""
    if not filterset.is_bound:
        return {}
    return {
        name: value.isoformat() if isinstance(value, dt.date) else str(value)
        for name, value in filterset.form.cleaned_data.items()
        if value not in (None, "")
    }


def bad_filter(filterset) -> HttpResponse | None:
    """400 with the errors, for an export asked with filters that do not hold."""
    if filterset.is_bound and not filterset.is_valid():
        errors = "; ".join(f"{field}: {' '.join(messages)}" for field, messages in filterset.errors.items())
        return HttpResponse(f"Bad filter: {errors}\n", status=400, content_type="text/plain; charset=utf-8")
    return None


def attachment(lines: Iterable[str], content_type: str, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(lines, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def stamp() -> str:
    return timezone.now().strftime("%Y%m%dT%H%M%SZ")
