"""Hourly rollups kept at ingest equal a GROUP BY over the stored records, whatever the batches."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncHour
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audits.decisions import ingest
from audits.models import DecisionRecord, DecisionRollup
from audits.rollups import GROUP, RELATIVE_ACCURACY, LatencySketch, traffic

from .conftest import decision

pytestmark = pytest.mark.django_db

LATENCY = st.integers(min_value=0, max_value=2_000_000)
RECORD = st.fixed_dictionaries(
    {
        "task": st.sampled_from(["ticket-triage", "summarise"]),
        "classification": st.sampled_from(["internal", "public"]),
        "model": st.sampled_from(["acme/small-a@1", "acme/large-b@1", "other/x@2"]),
        "hours_ago": st.integers(min_value=0, max_value=30),
        "latency_ms": LATENCY,
        "fallback_used": st.booleans(),
        "escalated": st.booleans(),
        "input_tokens": st.integers(min_value=0, max_value=100_000),
        "output_tokens": st.integers(min_value=0, max_value=10_000),
        "cost_micro_usd": st.integers(min_value=0, max_value=10**9),
    }
)


def expected_rows() -> dict[tuple, dict]:
    rows = (
        DecisionRecord.objects.annotate(hour=TruncHour("occurred_at", tzinfo=dt.UTC))
        .values("hour", *GROUP)
        .annotate(
            requests=Count("id"),
            cost=Sum("cost_micro_usd"),
            input=Sum("input_tokens"),
            output=Sum("output_tokens"),
            fallbacks=Count("id", filter=Q(fallback_used=True)),
            escalations=Count("id", filter=Q(escalated=True)),
            violations=Count("id", filter=Q(has_violation=True)),
        )
    )
    return {
        (row["hour"], *(row[name] for name in GROUP)): (
            row["requests"],
            row["cost"],
            row["input"],
            row["output"],
            row["fallbacks"],
            row["escalations"],
            row["violations"],
        )
        for row in rows
    }


def stored_rows() -> dict[tuple, tuple]:
    return {
        (r.hour, *(getattr(r, name) for name in GROUP)): (
            r.requests,
            r.cost_micro_usd,
            r.input_tokens,
            r.output_tokens,
            r.fallbacks,
            r.escalations,
            r.violations,
        )
        for r in DecisionRollup.objects.all()
    }


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(RECORD, min_size=1, max_size=15), min_size=1, max_size=4), resend=st.booleans())
def test_rollups_equal_a_group_by_over_the_raw_rows(world, batches, resend):
    now = dt.datetime.now(dt.UTC)
    sent = []
    for batch in batches:
        records = []
        for drawn in batch:
            fields = dict(drawn)
            moment = now - dt.timedelta(hours=fields.pop("hours_ago"), minutes=7)
            records.append(decision(0, request_id=uuid.uuid4().hex, occurred_at=moment.isoformat(), **fields))
        records.append(records[0])  # a duplicate in the same batch
        ingest(world["router"], records)
        sent.append(records)
    if resend:
        ingest(world["router"], sent[0])  # a batch again: duplicates only, rollups unchanged

    assert stored_rows() == expected_rows()

    latencies = list(DecisionRecord.objects.values_list("latency_ms", flat=True))
    direct = LatencySketch()
    for ms in latencies:
        direct.add(ms)
    merged = traffic(by=())
    assert len(merged) == 1 and merged[0].latency == direct and merged[0].requests == len(latencies)
    ordered = sorted(latencies)
    for q in (0.0, 0.5, 0.9, 0.95, 0.99, 1.0):
        assert merged[0].latency.quantile(q) == direct.quantile(q)
        true = ordered[int(q * (len(ordered) - 1))]
        assert abs(merged[0].latency.quantile(q) - true) <= RELATIVE_ACCURACY * true + 1e-9

    # Any grouping merges to the same sketch: by model and day, then summed.
    parts = traffic(by=("model", "day"))
    combined = LatencySketch()
    for part in parts:
        combined.merge(part.latency)
    assert combined == direct and sum(part.requests for part in parts) == len(latencies)


def test_traffic_is_one_query(world, django_assert_num_queries):
    ingest(world["router"], [decision(i, latency_ms=100 * i) for i in range(1, 20)])
    with django_assert_num_queries(1):
        rows = traffic(policy_set="production", by=("task", "model", "day"))
    assert sum(row.requests for row in rows) == 19


@given(st.lists(LATENCY, min_size=1, max_size=300), st.floats(min_value=0, max_value=1))
def test_sketch_quantiles_lie_within_the_relative_error(latencies, q):
    sketch = LatencySketch()
    for ms in latencies:
        sketch.add(ms)
    true = sorted(latencies)[int(q * (len(latencies) - 1))]
    assert abs(sketch.quantile(q) - true) <= RELATIVE_ACCURACY * true + 1e-9
    assert LatencySketch(sketch.to_json()) == sketch and sketch.count == len(latencies)
