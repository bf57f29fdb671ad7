"""Every chart, total and dashboard panel about decisions reads the hourly rollups, never the records:
each figure equals the same figure computed from the raw records, and costs a constant few queries,
none of which names the decision table."""

from __future__ import annotations

import datetime as dt
import importlib
import json
import re
from collections import Counter, defaultdict

import pytest
from django.db import connection
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDay
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audits import charts
from audits.decisions import check_escalation_rates, ingest
from audits.filters import DecisionFilter, rollups_for, violations_for
from audits.models import DecisionRecord, DecisionRollup, Violation, ViolationKind

from .conftest import decision

pytestmark = pytest.mark.django_db
explorer = importlib.import_module("audits.views.decisions")  # the package exports the view of that name

DECISION_TABLE = DecisionRecord._meta.db_table
MODELS = ("acme/small-a@1", "beta/small-b@1", "acme/large-a@1", "beta/other@1")  # the last is not allowed


def seed(world, count: int, first: int = 0) -> None:
    """``count`` decisions of every shape: models (one not allowed), an unknown policy version, a
    classification without route, fallbacks, escalations, latencies and costs. A third are made now;
    the others over the last five days, before the world's policy was published (so violations)."""
    now = timezone.now()
    records = []
    for n in range(first, first + count):
        ago = dt.timedelta(hours=(n * 7) % 120, minutes=n % 50) if n % 3 else dt.timedelta(0)
        records.append(
            decision(
                n,
                occurred_at=(now - ago).isoformat(),
                model=MODELS[n % 4] if n % 9 else MODELS[n % 3],
                classification="secret" if n % 17 == 0 else "internal",
                policy_version=7 if n % 23 == 0 else 1,
                fallback_used=n % 5 == 0,
                escalated=n % 6 == 0,
                latency_ms=50 + (n * 37) % 2000,
                cost_micro_usd=100 + (n * 131) % 9000,
            )
        )
    for start in range(0, len(records), 200):
        ingest(world["router"], records[start : start + 200])


def series(figure: str) -> dict[tuple[str, str], float]:
    """A bar figure's non-zero values by (trace, category)."""
    values = {}
    for trace in json.loads(figure)["data"]:
        for category, value in zip(trace["x"], trace["y"], strict=True):
            if value:
                values[(trace["name"], category)] = value
    return values


def raw_per_day(records, group: str, measure) -> dict[tuple[str, str], float]:
    rows = records.annotate(day=TruncDay("occurred_at")).values("day", group).annotate(value=measure)
    return {(row[group] or "(none)", row["day"].date().isoformat()): row["value"] for row in rows if row["value"]}


def scope(**filters) -> DecisionFilter:
    data = {"since": (timezone.now().date() - dt.timedelta(days=29)).isoformat(), **filters}
    filterset = DecisionFilter(data, queryset=DecisionRecord.objects.all())
    assert filterset.is_valid(), filterset.errors
    return filterset


FILTERS = [
    {},
    {"model": "acme/small-a@1"},
    {"classification": "secret"},
    {"policy_version": "7"},
    {"violation": "yes"},
    {"violation": "no", "task": "ticket-triage", "policy_set": "production"},
    {"since": (dt.date.today() - dt.timedelta(days=2)).isoformat(), "until": dt.date.today().isoformat()},
]


@pytest.mark.parametrize("filters", FILTERS)
@pytest.mark.parametrize("grouping", list(charts.GROUPINGS))
def test_each_chart_equals_the_same_chart_from_the_raw_records(world, filters, grouping):
    seed(world, 240)
    filterset = scope(**filters)
    records = filterset.qs
    rollups, unanswered = rollups_for(filterset)
    assert unanswered == []
    figures = charts.decision_charts(rollups, grouping, violations_for(filterset))
    group = charts.GROUPINGS[grouping]

    drawn = series(figures["decisions"])
    raw = raw_per_day(records, group, Count("pk"))
    if grouping == "model" and len({name for name, _ in raw}) > charts.MOST_MODELS:
        pytest.skip("the seed has too few models to stack the rest as 'other'")
    assert drawn == raw and sum(drawn.values()) == records.count() > 0
    cost = series(figures["cost"])
    raw_cost = {key: value / 1_000_000 for key, value in raw_per_day(records, group, Sum("cost_micro_usd")).items()}
    assert cost.keys() == raw_cost.keys() and all(cost[key] == pytest.approx(raw_cost[key]) for key in cost)

    escalation = json.loads(figures["escalation"])["data"][0]
    by_task = records.values("task").annotate(n=Count("pk"), escalated=Count("pk", filter=Q(escalated=True)))
    expected = {row["task"]: [row["escalated"] * 10_000 // row["n"], row["n"]] for row in by_task}
    assert dict(zip(escalation["y"], escalation["customdata"], strict=True)) == expected

    violations = violations_for(filterset)
    if filters.get("model") or filters.get("policy_version"):
        assert violations is None and figures["violations"] is None
        return
    found = Counter()
    for violation in Violation.objects.all():
        day = violation.detected_at.date()
        chosen = filterset.form.cleaned_data
        if chosen.get("since") and day < chosen["since"] or chosen.get("until") and day > chosen["until"]:
            continue
        if chosen.get("task") and violation.task != chosen["task"]:
            continue
        if chosen.get("classification") and violation.classification != chosen["classification"]:
            continue
        if chosen.get("violation") == "no":
            continue
        found[(dict(ViolationKind.choices)[violation.kind], day.isoformat())] += 1
    assert series(figures["violations"]) == dict(found)


def test_rollup_totals_equal_the_raw_records_for_every_filter_they_answer(world):
    seed(world, 240)
    for filters in FILTERS:
        filterset = scope(**filters)
        with CaptureQueriesContext(connection) as captured:
            totals = explorer._totals(filterset)
        assert len(captured) == 1 and DECISION_TABLE not in captured[0]["sql"]
        raw = filterset.qs.aggregate(
            decisions=Count("pk"),
            cost=Sum("cost_micro_usd"),
            violations=Count("pk", filter=Q(has_violation=True)),
            escalated=Count("pk", filter=Q(escalated=True)),
        )
        assert totals == {**{name: value or 0 for name, value in raw.items()}, "exact": True}, filters


def _charts_queries(client: Client, url: str) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="chart-panel")
    assert response.status_code == 200
    return [query["sql"] for query in captured.captured_queries]


@pytest.mark.parametrize(
    "query", ["", "?group=tier", "?group=model&violation=no", "?model=acme/small-a@1&policy_version=1"]
)
def test_charts_cost_a_constant_few_queries_none_on_the_records(world, dave, query):
    client = Client()
    client.force_login(dave)
    url = f"/audit/decisions/charts/{query}"
    seed(world, 30)
    few = _charts_queries(client, url)
    seed(world, 300, first=30)
    many = _charts_queries(client, url)
    assert len(many) == len(few) <= 10
    assert not [sql for sql in many if DECISION_TABLE in sql]
    assert DecisionRollup.objects.exists()


def test_a_filter_the_rollups_do_not_carry_is_said_not_charted(world, dave):
    seed(world, 60)
    client = Client()
    client.force_login(dave)
    for query, unanswered in (("router=edge-1", "router"), (f"violation={ViolationKind.MODEL_NOT_ALLOWED}", "kind")):
        url = f"/audit/decisions/charts/?{query}"
        body = client.get(url, HTTP_HX_REQUEST="true").content.decode()
        assert 'id="charts-unanswered"' in body and unanswered in body
        assert 'id="chart-decisions"' not in body
        assert not [sql for sql in _charts_queries(client, url) if DECISION_TABLE in sql]
    # A violation kind is a violation's own column: that chart is still drawn, of that kind only.
    body = client.get(f"/audit/decisions/charts/?violation={ViolationKind.MODEL_NOT_ALLOWED}").content.decode()
    drawn = re.search(r'<script id="chart-violations" type="application/json">(.*?)</script>', body).group(1)
    names = {trace["name"] for trace in json.loads(json.loads(drawn))["data"]}
    assert names == {"Model not allowed by the policy"}


def test_totals_for_a_filter_the_rollups_do_not_carry_are_a_bounded_count(world, dave, monkeypatch):
    seed(world, 40)
    client = Client()
    client.force_login(dave)
    body = client.get("/audit/decisions/", {"router": "edge-1"}).content.decode()
    assert re.search(r'data-total="decisions">40<', body) and 'id="totals-bounded"' in body
    assert 'data-total="cost"' not in body  # no sum is shown for what was not summed
    monkeypatch.setattr(explorer, "TOTALS_BOUND", 25)
    body = client.get("/audit/decisions/", {"router": "edge-1"}).content.decode()
    assert re.search(r'data-total="decisions">25\+<', body) and "counted up to 25" in body
    # A filter the rollups answer: exact sums, no notice.
    body = client.get("/audit/decisions/", {"policy_set": "production"}).content.decode()
    assert re.search(r'data-total="decisions">40<', body) and 'id="totals-bounded"' not in body


def test_dashboard_reads_no_decision_record(world, dave, alice):
    seed(world, 30)
    client = Client()
    client.force_login(alice)
    with CaptureQueriesContext(connection) as few:
        assert client.get("/").status_code == 200
    seed(world, 200, first=30)
    with CaptureQueriesContext(connection) as many:
        body = client.get("/").content.decode()
    assert 'id="violations-panel"' in body
    assert len(many) == len(few)
    assert not [query for query in many.captured_queries if DECISION_TABLE in query["sql"]]


def test_escalation_check_reads_rollups_per_policy_version(world):
    now = timezone.now()
    records = [
        decision(
            i,
            occurred_at=(now - dt.timedelta(minutes=5)).isoformat(),
            escalated=i % 5 == 0,
            model="acme/large-a@1" if i % 5 == 0 else "acme/small-a@1",
            # Decisions citing a version nobody published have no route, so no cap: not counted.
            policy_version=1 if i < 40 else 9,
        )
        for i in range(60)
    ]
    ingest(world["router"], records)
    with CaptureQueriesContext(connection) as captured:
        assert check_escalation_rates(now) == 1
    assert not [query for query in captured.captured_queries if DECISION_TABLE in query["sql"]]
    violation = Violation.objects.get(kind=ViolationKind.ESCALATION_RATE)
    assert "8 of 40 decisions (2000 bp)" in violation.detail
    assert violation.window_start == now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=1)
    by_version = defaultdict(int)
    for version, requests in DecisionRollup.objects.values_list("policy_version", "requests"):
        by_version[version] += requests
    assert dict(by_version) == {1: 40, 9: 20}
