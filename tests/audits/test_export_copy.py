"""The decisions' CSV on PostgreSQL comes from ``COPY … TO STDOUT`` (audits.exports): byte for byte what
``csv.writer`` writes of the same rows, whatever the cells hold, with the explorer's filters in its SQL."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test import Client

from audits.exports import _copied_csv, _written_csv, decision_copy_sql
from audits.filters import DecisionFilter
from audits.models import ContentDrop, DecisionRecord, Violation, ViolationKind

from .conftest import decision
from .test_exports import insert_decisions
from .test_pages import report

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="COPY is PostgreSQL's"),
]

# Cells a CSV writer must quote, escape or guard: delimiters, quotes, line breaks inside a cell
# (LF, CR, CRLF), formula starts, non-ASCII text, and a cell that is only a quote.
AWKWARD = [
    'a,b "quoted", c',
    "two\nlines",
    "carriage\rreturn",
    "crlf\r\nend",
    '"',
    "=1+1",
    "+49 30",
    "-1",
    "@SUM(A1)",
    "\tindented",
    "\rfirst",
    "ünïcødé 🙂, 漢字",
    "\\.",
    "ends with a newline\n",
]


def _bytes(pieces) -> bytes:
    return b"".join(piece if isinstance(piece, bytes) else piece.encode() for piece in pieces)


@pytest.fixture
def awkward(world):
    records = [decision(n, request_id=f"{text}#{n}", task=text[:60]) for n, text in enumerate(AWKWARD, start=1)]
    records.append(decision(99, occurred_at="2026-11-28T12:00:00Z"))  # whole seconds: no fraction written
    records.append(decision(98, occurred_at="2026-11-28T12:00:00.000001Z"))
    records.append(decision(97, occurred_at="0001-01-01T00:00:00Z"))
    records.append(decision(96, model="beta/other@1", classification="secret"))  # two kinds of violation
    assert report(world["token"], records)["rejected"] == 0
    # Content removed by retention: by a day's partition dropped (a fraction of a second in its time), by
    # a range of the DEFAULT partition deleted later; and content received after its range was dropped.
    day, span = dt.datetime(2026, 11, 29, tzinfo=dt.UTC), dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    ContentDrop.objects.bulk_create(
        [
            ContentDrop(
                range_start=day,
                range_end=day + dt.timedelta(days=1),
                dropped_at=dt.datetime(2026, 12, 1, 8, 30, 0, 250, tzinfo=dt.UTC),
                rows=2,
            ),
            ContentDrop(
                range_start=span,
                range_end=span + dt.timedelta(days=5),
                dropped_at=dt.datetime(2026, 12, 2, 3, tzinfo=dt.UTC),
                rows=1,
            ),
        ]
    )
    DecisionRecord.objects.filter(request_id="req-99").update(
        provider="",
        tier="",
        input_sha256="",
        content_stored=True,
        content_expires_at=day + dt.timedelta(hours=10),
        received_at=day - dt.timedelta(days=1),
    )
    DecisionRecord.objects.filter(request_id="req-98").update(
        model='=HYPERLINK("http://evil")',
        provider="-x",
        tier="@t",
        policy_set='staging,\n"b"',
        content_stored=True,
        content_expires_at=day + dt.timedelta(hours=11),
        received_at=dt.datetime(2026, 12, 3, tzinfo=dt.UTC),
    )
    DecisionRecord.objects.filter(request_id="req-96").update(
        content_stored=True, content_expires_at=span + dt.timedelta(days=1), received_at=span
    )
    # Flagged without a violation row (as the bench's generated records), and one kind on a record
    # that is not flagged: each export writes kinds only for flagged records.
    DecisionRecord.objects.filter(request_id="req-97").update(has_violation=True)
    unflagged = DecisionRecord.objects.get(request_id="req-99")
    Violation.objects.create(
        kind=ViolationKind.NOT_USABLE, decision=unflagged, policy_set="production", task="t", classification="c"
    )
    return world


def test_copy_writes_the_same_bytes_as_the_csv_writer(awkward):
    decisions = DecisionRecord.objects.all()
    copied, written = _bytes(_copied_csv(decisions)), _bytes(_written_csv(decisions))
    assert copied.count(b"\r\n") > len(AWKWARD) + 4  # the records are there, with their CRLFs
    assert copied == written
    assert b"0001-01-01T00:00:00Z" in copied and b'"\'=HYPERLINK(""http://evil"")"' in copied
    assert b",2026-12-01T08:30:00.000250Z," in copied and b",2026-12-02T03:00:00Z," in copied


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"model": "beta/other@1"},
        {"violation": "yes"},
        {"violation": "no"},
        {"violation": ViolationKind.NOT_USABLE},
        {"classification": "secret", "router": "edge-1"},
        {"since": "2026-01-01", "until": "2026-11-28"},
        {"since": "2999-01-01"},
    ],
)
def test_copy_applies_the_explorers_filters_as_the_queryset_does(awkward, filters):
    filterset = DecisionFilter(filters, queryset=DecisionRecord.objects.all())
    assert filterset.is_valid(), filterset.errors
    assert _bytes(_copied_csv(filterset.qs)) == _bytes(_written_csv(filterset.qs))


def test_the_filters_values_are_bound_into_the_copy_statement(awkward):
    filterset = DecisionFilter({"model": "beta/other@1", "since": "2026-01-01"}, queryset=DecisionRecord.objects.all())
    assert filterset.is_valid()
    sql, params = decision_copy_sql(filterset.qs)
    assert sql.startswith("COPY (SELECT ") and sql.endswith(") TO STDOUT WITH (FORMAT csv)")
    assert "beta/other@1" in params and "beta/other@1" not in sql


def test_the_view_streams_copys_rows_in_pieces_of_whole_rows(world, dave):
    insert_decisions(world["router"].pk, 1234)
    client = Client()
    client.force_login(dave)
    pieces = list(client.get("/audit/decisions/export.csv").streaming_content)
    # The header, then pieces of 500 rows, each ending a row.
    assert [piece.count(b"\r\n") for piece in pieces] == [1, 500, 500, 234]
    assert all(piece.endswith(b"\r\n") for piece in pieces)
    assert b"".join(pieces) == _bytes(_written_csv(DecisionRecord.objects.all()))


def test_a_reader_that_stops_early_leaves_the_connection_usable(world):
    insert_decisions(world["router"].pk, 50_000)
    pieces = _copied_csv(DecisionRecord.objects.all())
    next(pieces), next(pieces)
    # What the server does when the client goes away mid-download: the COPY is cancelled, and its
    # transaction (here a savepoint in the test's) rolled back.
    pieces.close()
    assert DecisionRecord.objects.count() == 50_000
    assert _bytes(_copied_csv(DecisionRecord.objects.all())).count(b"\r\n") == 50_001
