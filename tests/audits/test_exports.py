"""Decision exports: CSV and JSON Lines with every field, the explorer's filters, an audit event
for each export, spreadsheet-safe cells, and streaming in bounded memory for 100,000 rows."""

from __future__ import annotations

import csv
import io
import json
import re
import time
import tracemalloc

import pytest
from django.db import connection
from django.http import StreamingHttpResponse
from django.test import Client

from audits.exports import CHUNK, DECISION_HEADER
from audits.models import AuditEvent, DecisionRecord, ViolationKind

from .conftest import decision
from .test_pages import report

pytestmark = pytest.mark.django_db

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@pytest.fixture
def auditor(dave) -> Client:
    client = Client()
    client.force_login(dave)
    return client


@pytest.fixture
def reported(world):
    report(
        world["token"],
        [
            decision(1),
            decision(2, model="beta/small-b@1", fallback_used=True, cost_micro_usd=300),
            decision(3, model="acme/large-a@1", escalated=True, task="ticket-triage"),
            decision(4, model="beta/other@1"),  # model-not-allowed
            decision(5, classification="secret", input="patient 42", output="ok"),  # digest only, two kinds
        ],
    )
    return world


def csv_rows(response) -> list[dict]:
    assert isinstance(response, StreamingHttpResponse)
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def jsonl_rows(response) -> list[dict]:
    assert isinstance(response, StreamingHttpResponse)
    return [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]


def test_csv_export_holds_every_field_with_rfc3339_times(auditor, reported):
    response = auditor.get("/audit/decisions/export.csv")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert re.fullmatch(r'attachment; filename="decisions-\d{8}T\d{6}Z\.csv"', response["Content-Disposition"])
    rows = csv_rows(response)
    assert list(rows[0]) == DECISION_HEADER
    by_request = {row["request_id"]: row for row in rows}
    assert set(by_request) == {f"req-{i}" for i in range(1, 6)}
    first = by_request["req-1"]
    stored = DecisionRecord.objects.get(request_id="req-1")
    assert first["id"] == str(stored.pk) and first["router"] == "edge-1" and first["policy_set"] == "production"
    assert first["model"] == "acme/small-a@1" and first["provider"] == "acme" and first["tier"] == "small"
    assert first["cost_micro_usd"] == "144" and first["input_tokens"] == "800" and first["latency_ms"] == "420"
    assert first["input_sha256"] == stored.input_sha256 and first["content_stored"] == "True"
    assert RFC3339_UTC.match(first["occurred_at"]) and RFC3339_UTC.match(first["received_at"])
    assert first["content_removed_at"] == "" and first["violations"] == ""
    assert by_request["req-2"]["fallback_used"] == "True" and by_request["req-3"]["escalated"] == "True"
    assert by_request["req-4"]["violations"] == ViolationKind.MODEL_NOT_ALLOWED
    assert set(by_request["req-5"]["violations"].split()) == {ViolationKind.MODEL_NOT_ALLOWED, ViolationKind.NOT_USABLE}
    assert by_request["req-5"]["content_stored"] == "False"
    assert "patient 42" not in b"".join(auditor.get("/audit/decisions/export.csv").streaming_content).decode()


def test_jsonl_export_is_one_typed_document_per_line(auditor, reported):
    response = auditor.get("/audit/decisions/export.jsonl")
    assert response["Content-Type"] == "application/x-ndjson; charset=utf-8"
    assert response["Content-Disposition"].endswith('.jsonl"')
    rows = jsonl_rows(response)
    assert len(rows) == 5 and list(rows[0]) == DECISION_HEADER
    by_request = {row["request_id"]: row for row in rows}
    first = by_request["req-1"]
    assert first["cost_micro_usd"] == 144 and first["fallback_used"] is False and first["policy_version"] == 1
    assert RFC3339_UTC.match(first["occurred_at"]) and first["content_removed_at"] is None
    assert first["violations"] == [] and by_request["req-4"]["violations"] == [ViolationKind.MODEL_NOT_ALLOWED]
    # Newest first, like the explorer.
    assert [row["occurred_at"] for row in rows] == sorted((row["occurred_at"] for row in rows), reverse=True)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"model": "beta/small-b@1"}, {"req-2"}),
        ({"violation": "yes"}, {"req-4", "req-5"}),
        ({"violation": "no"}, {"req-1", "req-2", "req-3"}),
        ({"violation": ViolationKind.NOT_USABLE}, {"req-5"}),
        ({"classification": "secret"}, {"req-5"}),
        ({"router": "edge-1", "policy_set": "production", "policy_version": "1"}, {f"req-{i}" for i in range(1, 6)}),
        ({"since": "2999-01-01"}, set()),
        ({"until": "2000-01-01"}, set()),
    ],
)
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_exports_apply_the_explorers_filters(auditor, reported, filters, expected, fmt):
    response = auditor.get(f"/audit/decisions/export.{fmt}", filters)
    rows = csv_rows(response) if fmt == "csv" else jsonl_rows(response)
    assert {row["request_id"] for row in rows} == expected


def test_each_export_is_an_audit_event_with_its_filters(auditor, reported):
    b"".join(auditor.get("/audit/decisions/export.csv", {"violation": "yes", "since": "2020-01-01"}).streaming_content)
    b"".join(auditor.get("/audit/decisions/export.jsonl", {"router": "edge-1"}).streaming_content)
    events = list(AuditEvent.objects.filter(action="export.decisions").order_by("seq"))
    assert [e.actor_name for e in events] == ["dave", "dave"]
    assert events[0].after == {"format": "csv", "filters": {"violation": "yes", "since": "2020-01-01"}}
    assert events[1].after == {"format": "jsonl", "filters": {"router": "edge-1"}}
    assert events[0].object_type == "audits.decisionrecord"


def test_bad_filters_answer_400_and_export_nothing(auditor, reported):
    response = auditor.get("/audit/decisions/export.jsonl", {"since": "last week"})
    assert response.status_code == 400 and b"since: Enter a valid date." in response.content
    assert not AuditEvent.objects.filter(action="export.decisions").exists()


def test_csv_cells_cannot_run_as_spreadsheet_formulas(auditor, world):
    report(world["token"], [decision(1, request_id='=HYPERLINK("http://evil")'), decision(2, request_id="@SUM(A1)")])
    rows = csv_rows(auditor.get("/audit/decisions/export.csv"))
    assert {row["request_id"] for row in rows} == {'\'=HYPERLINK("http://evil")', "'@SUM(A1)"}
    # JSON Lines carries the value as it was reported.
    assert {row["request_id"] for row in jsonl_rows(auditor.get("/audit/decisions/export.jsonl"))} == {
        '=HYPERLINK("http://evil")',
        "@SUM(A1)",
    }


ROWS = 100_000


def insert_decisions(router_id: int, count: int, start: int = 1) -> None:
    """``count`` decision records in one statement (PostgreSQL), over the last 28 days: three tasks
    and models, some fallbacks and escalations, one in 50 flagged as a violation (without
    Violation rows). Also used by bench/decision_export.py."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {DecisionRecord._meta.db_table} (
                router_id, policy_set, request_id, occurred_at, received_at, task, classification, model,
                provider, tier, policy_version, fallback_used, escalated, latency_ms, input_tokens,
                output_tokens, cost_micro_usd, input_sha256, output_sha256,
                content_stored, has_violation
            )
            SELECT %s, 'production', 'bulk-' || i, now() - (i %% 2419200) * interval '1 second', now(),
                   (ARRAY['ticket-triage', 'support-reply', 'contract-review'])[1 + i %% 3], 'internal',
                   (ARRAY['acme/small-a@1', 'beta/small-b@1', 'acme/large-a@1'])[1 + i %% 3],
                   (ARRAY['acme', 'beta', 'acme'])[1 + i %% 3], 'small', 1, i %% 7 = 0, i %% 11 = 0,
                   400 + i %% 300, 800, 40, 144, md5(i::text) || md5((i + 1)::text),
                   md5((-i)::text) || md5((i - 1)::text), false, i %% 50 = 0
            FROM generate_series(%s, %s) AS i
            """,
            [router_id, start, start + count - 1],
        )


def _consume(response) -> tuple[int, int, int, int]:
    """Read a streaming response piece by piece: (lines, bytes, pieces, largest piece)."""
    assert isinstance(response, StreamingHttpResponse)
    lines = streamed = pieces = largest = 0
    for piece in response.streaming_content:
        streamed += len(piece)
        lines += piece.count(b"\n")
        pieces += 1
        largest = max(largest, len(piece))
    return lines, streamed, pieces, largest


def test_exporting_100000_rows_streams_in_bounded_memory(auditor, world):
    insert_decisions(world["router"].pk, ROWS)
    # A first, empty export imports and compiles what any request does: that is not the export's memory.
    assert _consume(auditor.get("/audit/decisions/export.csv", {"since": "2999-01-01"}))[0] == 1
    tracemalloc.start()
    try:
        started = time.perf_counter()
        lines, streamed, pieces, largest = _consume(auditor.get("/audit/decisions/export.csv"))
        _, peak = tracemalloc.get_traced_memory()
        elapsed = time.perf_counter() - started
    finally:
        tracemalloc.stop()
    assert lines == ROWS + 1  # and the header
    # A piece per chunk of rows read: nothing gathered the export before sending it.
    assert pieces > ROWS // CHUNK and largest < 2 * 1024 * 1024
    # About 30 MiB streamed; the process never held more than a small part of it.
    assert streamed > 25 * 1024 * 1024
    assert peak < 12 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB for {streamed / 2**20:.1f} MiB streamed"
    print(f"\n100,000 rows: {streamed / 2**20:.1f} MiB of CSV, peak {peak / 2**20:.2f} MiB, {elapsed:.1f} s traced")


def test_jsonl_export_streams_a_piece_per_chunk(auditor, world):
    insert_decisions(world["router"].pk, 5 * CHUNK + 7)
    lines, _, pieces, largest = _consume(auditor.get("/audit/decisions/export.jsonl"))
    assert lines == 5 * CHUNK + 7 and pieces == 6 and largest < 2 * 1024 * 1024
