"""Streaming exports of decision records and audit events, as CSV and JSON Lines.

Rows are read with ``values_list(...).iterator(chunk_size=...)`` (a server-side cursor on
PostgreSQL) and written one line at a time, so an export of millions of rows holds one chunk in
memory, never the whole result. Times are RFC 3339 in UTC (``…Z``).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterable, Iterator
from typing import Any

from django.db.models import QuerySet

from steward.exports import Echo, spreadsheet_safe

from .models import AuditEvent, DecisionRecord, Violation

CHUNK = 2000

DECISION_COLUMNS = (
    ("id", "pk"),
    ("occurred_at", "occurred_at"),
    ("received_at", "received_at"),
    ("router", "router__name"),
    ("policy_set", "policy_set"),
    ("policy_version", "policy_version"),
    ("request_id", "request_id"),
    ("task", "task"),
    ("classification", "classification"),
    ("model", "model"),
    ("provider", "provider"),
    ("tier", "tier"),
    ("fallback_used", "fallback_used"),
    ("escalated", "escalated"),
    ("latency_ms", "latency_ms"),
    ("input_tokens", "input_tokens"),
    ("output_tokens", "output_tokens"),
    ("cost_micro_usd", "cost_micro_usd"),
    ("input_sha256", "input_sha256"),
    ("output_sha256", "output_sha256"),
    ("content_stored", "content_stored"),
    ("content_removed_at", "content_removed_at"),
    ("has_violation", "has_violation"),
)
DECISION_HEADER = [name for name, _ in DECISION_COLUMNS] + ["violations"]
_NAMES = [name for name, _ in DECISION_COLUMNS]
FLAGGED = _NAMES.index("has_violation")
TIMES = [_NAMES.index(name) for name in ("occurred_at", "received_at", "content_removed_at")]
# Text a router reported, which a spreadsheet might otherwise read as a formula.
TEXT = [_NAMES.index(name) for name in ("request_id", "task", "classification", "model", "provider", "tier")]

EVENT_COLUMNS = (
    "seq",
    "at",
    "actor_name",
    "action",
    "object_type",
    "object_id",
    "object_repr",
    "before",
    "after",
    "comment",
    "request_id",
    "prev_hash",
    "hash",
)


def rfc3339(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _chunks(decisions: QuerySet[DecisionRecord]) -> Iterator[list[tuple[tuple, list[str]]]]:
    """The exported values of the decisions, a chunk at a time, each row with its violations' kinds.

    Kinds are looked up once per chunk, for the flagged rows only, rather than by a join that
    would have to group the whole export before its first row.
    """
    fields = [field for _, field in DECISION_COLUMNS]
    rows = decisions.order_by("-occurred_at", "-pk").values_list(*fields).iterator(chunk_size=CHUNK)
    chunk: list[tuple] = []

    def with_kinds() -> list[tuple[tuple, list[str]]]:
        ids = [row[0] for row in chunk if row[FLAGGED]]
        kinds: dict[int, list[str]] = {}
        if ids:
            pairs = Violation.objects.filter(decision_id__in=ids).order_by("pk").values_list("decision_id", "kind")
            for decision_id, kind in pairs:
                kinds.setdefault(decision_id, []).append(kind)
        return [(row, kinds.get(row[0], [])) for row in chunk]

    for row in rows:
        chunk.append(row)
        if len(chunk) == CHUNK:
            yield with_kinds()
            chunk = []
    if chunk:
        yield with_kinds()


def _times(row: tuple) -> list:
    values = list(row)
    for index in TIMES:
        values[index] = rfc3339(values[index])
    return values


def decision_csv_lines(decisions: QuerySet[DecisionRecord]) -> Iterator[str]:
    """CSV, one piece per chunk of rows (a few hundred kilobytes), header first."""
    writer = csv.writer(Echo())
    yield writer.writerow(DECISION_HEADER)
    for chunk in _chunks(decisions):
        lines = []
        for row, kinds in chunk:
            values = _times(row)
            for index in TEXT:
                values[index] = spreadsheet_safe(values[index])
            values.append(" ".join(kinds))
            lines.append(writer.writerow(values))
        yield "".join(lines)


def decision_jsonl_lines(decisions: QuerySet[DecisionRecord]) -> Iterator[str]:
    """JSON Lines, one document per decision, one piece per chunk of rows."""
    names = [name for name, _ in DECISION_COLUMNS]
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    for chunk in _chunks(decisions):
        lines = []
        for row, kinds in chunk:
            document = dict(zip(names, _times(row), strict=True))
            document["violations"] = kinds
            lines.append(encode(document))
        lines.append("")
        yield "\n".join(lines)


def _json_cell(value: Any) -> str:
    return "" if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def event_csv_lines(events: QuerySet[AuditEvent]) -> Iterable[str]:
    writer = csv.writer(Echo())
    yield writer.writerow(EVENT_COLUMNS)
    for row in events.order_by("-seq").values_list(*EVENT_COLUMNS).iterator(chunk_size=CHUNK):
        values = dict(zip(EVENT_COLUMNS, row, strict=True))
        values["at"] = rfc3339(values["at"])
        values["before"] = _json_cell(values["before"])
        values["after"] = _json_cell(values["after"])
        yield writer.writerow([spreadsheet_safe(v) if isinstance(v, str) else v for v in values.values()])
