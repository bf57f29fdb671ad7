"""Streaming exports of decision records and audit events, as CSV and JSON Lines.

Rows are read with ``values_list(...).iterator(chunk_size=...)`` (a server-side cursor on
PostgreSQL) and written one line at a time, so an export of millions of rows holds one chunk in
memory, never the whole result. Times are RFC 3339 in UTC (``…Z``).

The decisions' CSV on PostgreSQL is written by the database itself: ``COPY (SELECT …) TO STDOUT WITH
(FORMAT csv)`` of the filtered queryset's own SQL, every cell formatted in that SELECT as the Python
writer formats it (``decision_copy_sql``), so that Python only passes the bytes on, some hundred rows
at a time. Elsewhere (SQLite) the rows go through ``csv.writer``; the two give the same bytes.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterable, Iterator
from typing import Any

from django.contrib.postgres.aggregates import StringAgg
from django.db import connections, transaction
from django.db.models import (
    BooleanField,
    Case,
    CharField,
    DateTimeField,
    F,
    Field,
    Func,
    OuterRef,
    QuerySet,
    Subquery,
    TextField,
    Value,
    When,
)
from django.db.models.functions import NullIf

from steward.exports import FORMULA_STARTS, Echo, spreadsheet_safe

from .models import AuditEvent, ContentDrop, ContentRemovals, DecisionRecord, Violation

CHUNK = 2000
COPY_ROWS = 500  # rows of COPY's output per piece streamed: some hundred kilobytes

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
    # Read from the log of removed content (``ContentRemovals``) by the expiry.
    ("content_removed_at", "content_expires_at"),
    ("has_violation", "has_violation"),
)
DECISION_HEADER = [name for name, _ in DECISION_COLUMNS] + ["violations"]
_NAMES = [name for name, _ in DECISION_COLUMNS]
FLAGGED = _NAMES.index("has_violation")
STORED, REMOVED, RECEIVED = (_NAMES.index(name) for name in ("content_stored", "content_removed_at", "received_at"))
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
    would have to group the whole export before its first row. When retention removed a row's
    content comes from the log of removed ranges, read once.
    """
    fields = [field for _, field in DECISION_COLUMNS]
    rows = decisions.order_by("-occurred_at", "-pk").values_list(*fields).iterator(chunk_size=CHUNK)
    removals = ContentRemovals()
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
        if row[REMOVED] is not None:  # the expiry, until replaced by the removal
            removed = removals.at(row[STORED], row[REMOVED], row[RECEIVED])
            row = (*row[:REMOVED], removed, *row[REMOVED + 1 :])
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


def decision_csv_lines(decisions: QuerySet[DecisionRecord]) -> Iterator[str | bytes]:
    """CSV, one piece per chunk of rows (a few hundred kilobytes), header first."""
    if connections[decisions.db].vendor == "postgresql":
        return _copied_csv(decisions)
    return _written_csv(decisions)


def _written_csv(decisions: QuerySet[DecisionRecord]) -> Iterator[str]:
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


class _Formatted(Func):
    """One column, in PostgreSQL's SQL, as the text ``csv.writer`` writes of its value in ``_written_csv``."""

    output_field = TextField()


class _Time(_Formatted):
    # rfc3339(): ISO 8601 in UTC with "Z", microseconds only when there are some (as isoformat()).
    template = (
        "to_char(%(expressions)s AT TIME ZONE 'UTC', CASE WHEN date_trunc('second', %(expressions)s) = "
        '%(expressions)s THEN \'YYYY-MM-DD"T"HH24:MI:SS"Z"\' ELSE \'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\' END)'
    )


class _Boolean(_Formatted):
    template = "CASE %(expressions)s WHEN true THEN 'True' WHEN false THEN 'False' END"  # str(True)


class _SpreadsheetSafe(_Formatted):
    # spreadsheet_safe(): an apostrophe before a cell that starts like a formula. The first character's
    # code (ascii(), 0 for "") against the formula starts' codes: a fifth of the export's time less
    # than comparing left(…, 1) with chr() of each.
    template = (
        f"CASE WHEN ascii(%(expressions)s) IN ({', '.join(str(ord(c)) for c in FORMULA_STARTS)}) "
        "THEN chr(39) || %(expressions)s ELSE NULLIF(%(expressions)s, '') END"
    )


def _model_field(path: str) -> Field:
    """The model field behind a ``values_list`` path such as ``router__name``."""
    model = DecisionRecord
    *relations, name = path.split("__")
    for relation in relations:
        model = model._meta.get_field(relation).related_model
    return model._meta.pk if name == "pk" else model._meta.get_field(name)


def _content_removed_at() -> Case:
    """When retention removed a record's kept content, as ``ContentRemovals.at`` reads it from the log:
    the first drop covering its expiry made after the record arrived, formatted as a time. The log's
    last end is read once (an uncorrelated subquery), so only records whose content can have been
    removed look into the log."""
    first_drop = (
        ContentDrop.objects.filter(
            range_start__lte=OuterRef("content_expires_at"),
            range_end__gt=OuterRef("content_expires_at"),
            dropped_at__gte=OuterRef("received_at"),
        )
        .order_by("dropped_at")
        .annotate(cell=_Time(F("dropped_at")))
        .values("cell")[:1]
    )
    last_end = ContentDrop.objects.order_by("-range_end").values("range_end")[:1]
    return Case(
        When(content_stored=True, content_expires_at__lt=Subquery(last_end), then=Subquery(first_drop)),
        output_field=TextField(),
    )


def _cell(name: str, path: str) -> Any:
    """One exported column in SQL, formatted as ``_written_csv`` writes its value.

    COPY's CSV writes NULL as an empty cell and an empty string as ``""``, where ``csv.writer`` writes
    an empty cell for both: empty text becomes NULL here."""
    if name == "content_removed_at":
        return _content_removed_at()
    field = _model_field(path)
    if isinstance(field, BooleanField):
        return _Boolean(F(path))
    if isinstance(field, DateTimeField):
        return _Time(F(path))
    if _NAMES.index(name) in TEXT:
        return _SpreadsheetSafe(F(path))
    if isinstance(field, CharField | TextField):
        return NullIf(F(path), Value(""))
    return F(path)


def decision_copy_sql(decisions: QuerySet[DecisionRecord]) -> tuple[str, tuple]:
    """``COPY … TO STDOUT`` of the decisions' CSV rows without the header, newest first, and its
    parameters: the queryset's own SQL (its filters and joins) with the select list replaced by the
    formatted cells, the violations' kinds of a flagged decision among them (in the order they were
    found, as ``_chunks`` reads them)."""
    kinds = (
        Violation.objects.filter(decision=OuterRef("pk"))
        .order_by()
        .values("decision")
        .annotate(kinds=StringAgg("kind", " ", order_by="pk"))
        .values("kinds")
    )
    cells = [_cell(name, field) for name, field in DECISION_COLUMNS]
    cells.append(Case(When(has_violation=True, then=Subquery(kinds)), output_field=TextField()))
    rows = decisions.order_by("-occurred_at", "-pk").values_list(*cells)
    sql, params = rows.query.sql_with_params()
    return f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)", params


def _copied_csv(decisions: QuerySet[DecisionRecord]) -> Iterator[str | bytes]:
    """The header as ``csv.writer`` writes it, then COPY's rows, COPY_ROWS to a piece.

    COPY ends a row with LF, ``csv.writer`` with CRLF; a line break inside a (quoted) cell stays as it
    is in both. Each piece holds whole rows, so it starts outside quotes, and the parts between its
    double quotes alternate outside, inside: the LFs of the outside parts end rows."""
    yield csv.writer(Echo()).writerow(DECISION_HEADER)
    sql, params = decision_copy_sql(decisions)
    # In a transaction (a savepoint inside another): a client that stops reading closes this generator,
    # psycopg cancels the COPY, and the rollback leaves the connection as it was, in a test's transaction too.
    with (
        transaction.atomic(using=decisions.db),
        connections[decisions.db].cursor() as cursor,
        cursor.copy(sql, params) as copy,
    ):
        rows: list = []
        for row in copy:
            rows.append(row)
            if len(rows) == COPY_ROWS:
                yield _crlf(b"".join(rows))
                rows = []
        if rows:
            yield _crlf(b"".join(rows))


def _crlf(piece: bytes) -> bytes:
    if b'"' not in piece:
        return piece.replace(b"\n", b"\r\n")
    parts = piece.split(b'"')
    parts[::2] = [part.replace(b"\n", b"\r\n") for part in parts[::2]]
    return b'"'.join(parts)


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
