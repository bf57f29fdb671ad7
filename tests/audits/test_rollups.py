"""Hourly and daily rollups kept at ingest equal a GROUP BY over the stored records, whatever the batches,
and a window read from both equals the records inside it."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDay, TruncHour
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audits.decisions import ingest
from audits.models import DecisionDayRollup, DecisionRecord, DecisionRollup
from audits.rollups import (
    DAY,
    GROUP,
    RELATIVE_ACCURACY,
    LatencySketch,
    Reading,
    hour_of,
    reading,
    rebuild_days,
    traffic,
)

from .conftest import decision

pytestmark = pytest.mark.django_db

LATENCY = st.integers(min_value=0, max_value=2_000_000)
RECORD = st.fixed_dictionaries(
    {
        "task": st.sampled_from(["ticket-triage", "summarise"]),
        "classification": st.sampled_from(["internal", "public"]),
        "model": st.sampled_from(["acme/small-a@1", "acme/large-b@1", "other/x@2"]),
        "hours_ago": st.integers(min_value=0, max_value=80),  # over three or four UTC days
        "latency_ms": LATENCY,
        "fallback_used": st.booleans(),
        "escalated": st.booleans(),
        "input_tokens": st.integers(min_value=0, max_value=100_000),
        "output_tokens": st.integers(min_value=0, max_value=10_000),
        "cost_micro_usd": st.integers(min_value=0, max_value=10**9),
    }
)


def expected_rows(trunc=TruncHour) -> dict[tuple, dict]:
    rows = (
        DecisionRecord.objects.annotate(hour=trunc("occurred_at", tzinfo=dt.UTC))
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


def stored_rows(model=DecisionRollup, period: str = "hour") -> dict[tuple, tuple]:
    return {
        (getattr(r, period), *(getattr(r, name) for name in GROUP)): (
            r.requests,
            r.cost_micro_usd,
            r.input_tokens,
            r.output_tokens,
            r.fallbacks,
            r.escalations,
            r.violations,
        )
        for r in model.objects.all()
    }


def day_sketches() -> dict[tuple, LatencySketch]:
    return {
        (r.day, *(getattr(r, name) for name in GROUP)): LatencySketch(r.latency)
        for r in DecisionDayRollup.objects.all()
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
    assert stored_rows(DecisionDayRollup, "day") == expected_rows(TruncDay)
    kept = day_sketches()
    rebuild_days()  # made again from the hourly rollups: the same rows, the same sketches
    assert stored_rows(DecisionDayRollup, "day") == expected_rows(TruncDay) and day_sketches() == kept

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
    now = dt.datetime.now(dt.UTC)
    with django_assert_num_queries(1):  # whole days from the daily rollups, ragged ends from the hourly
        rows = traffic("production", now - dt.timedelta(days=3, hours=5), now + dt.timedelta(hours=1))
    assert sum(row.requests for row in rows) == 19


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    hours_ago=st.lists(st.integers(min_value=0, max_value=100), min_size=1, max_size=40),
    start=st.integers(min_value=0, max_value=110),
    length=st.integers(min_value=0, max_value=110),
    by=st.sampled_from([(), ("model",), ("task", "model", "day"), ("model", "hour")]),
)
def test_a_window_read_from_days_and_hours_equals_its_records(world, hours_ago, start, length, by):
    """Any hour-aligned window, whole days or not, sums exactly the records inside it, sketches too."""
    DecisionRecord.objects.all().delete()
    DecisionRollup.objects.all().delete()
    DecisionDayRollup.objects.all().delete()
    now = hour_of(dt.datetime.now(dt.UTC))
    records = [
        decision(
            n,
            request_id=uuid.uuid4().hex,
            occurred_at=(now - dt.timedelta(hours=ago + 1) + dt.timedelta(minutes=13)).isoformat(),
            latency_ms=37 * n + ago,
            model=("acme/small-a@1", "other/x@2")[n % 2],
        )
        for n, ago in enumerate(hours_ago)
    ]
    ingest(world["router"], records)
    since = now - dt.timedelta(hours=start)
    until = since + dt.timedelta(hours=length)

    inside = DecisionRecord.objects.filter(occurred_at__gte=since, occurred_at__lt=until)
    expected: dict[tuple, tuple] = {}
    for record in inside:
        values = {
            "model": record.model,
            "task": record.task,
            "day": record.occurred_at.astimezone(dt.UTC).date(),
            "hour": hour_of(record.occurred_at),
        }
        key = tuple(values[name] for name in by)
        count, cost, sketch = expected.get(key, (0, 0, LatencySketch()))
        sketch.add(record.latency_ms)
        expected[key] = (count + 1, cost + record.cost_micro_usd, sketch)

    found = {
        tuple(row.key[name] for name in by): (row.requests, row.cost_micro_usd, row.latency)
        for row in traffic("production", since, until, by=by)
    }
    assert found == expected


@given(st.lists(LATENCY, min_size=1, max_size=300), st.floats(min_value=0, max_value=1))
def test_sketch_quantiles_lie_within_the_relative_error(latencies, q):
    sketch = LatencySketch()
    for ms in latencies:
        sketch.add(ms)
    true = sorted(latencies)[int(q * (len(latencies) - 1))]
    assert abs(sketch.quantile(q) - true) <= RELATIVE_ACCURACY * true + 1e-9
    assert LatencySketch(sketch.to_json()) == sketch and sketch.count == len(latencies)


def test_a_window_reads_each_partial_day_the_cheaper_way():
    at = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)  # a Monday, midnight
    hour = dt.timedelta(hours=1)
    later = at + 30 * DAY  # every hour below is past: each holds rows
    plan = reading(at + 3 * hour, at + 2 * DAY + 20 * hour, later)  # Monday 03:00 to Wednesday 20:00
    assert plan.days == (at + DAY, at + 2 * DAY)  # Tuesday, whole
    assert plan.day_rows == (at, at + 2 * DAY)  # Monday and Wednesday, mostly inside: their daily rows ...
    assert plan.minus == ((at, at + 3 * hour), (at + 2 * DAY + 20 * hour, at + 3 * DAY))  # ... less the rest
    assert plan.plus == ()

    plan = reading(at + 21 * hour, at + DAY + 2 * hour, later)  # Monday 21:00 to Tuesday 02:00: hours only
    assert plan == Reading(days=None, plus=((at + 21 * hour, at + DAY), (at + DAY, at + DAY + 2 * hour)))
    assert reading(at + 5 * hour, at + 9 * hour, later) == Reading(days=None, plus=((at + 5 * hour, at + 9 * hour),))
    assert reading(at, at + 14 * DAY, later) == Reading(days=(at, at + 14 * DAY))
    assert reading(None, None, later) == Reading(days=(None, None))
    assert reading(at + 4 * hour, at + 4 * hour, later) == Reading(days=None)
    # Today up to 20:00, asked at 20:10: today's row less the current hour (later hours hold nothing yet).
    assert reading(at, at + 20 * hour, at + 20 * hour + dt.timedelta(minutes=10)) == Reading(
        days=None, day_rows=(at,), minus=((at + 20 * hour, at + DAY),)
    )

    # The preview's fourteen days up to the current hour: fourteen days' rows and at most thirteen hours'.
    for now_hour in range(24):
        until = at + 20 * DAY + now_hour * hour
        plan = reading(until - 14 * DAY, until, until)
        hourly = sum(max(0, (min(high, until + hour) - low) // hour) for low, high in plan.plus + plan.minus)
        assert hourly <= 13, now_hour
