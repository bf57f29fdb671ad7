"""Benchmark: the change-impact preview of a change touching every route, over the rollups of 10,000,000
decisions.

In a throwaway test database (PostgreSQL): a policy set of ROUTES routes (each with a fallback at
another provider and an escalation), published; then its hourly decision rollups for the last 14 days,
written directly, sized as 10,000,000 decisions make them (per route and hour: the primary, the
fallback and the escalation target each a row, with a latency sketch of the buckets such traffic
fills). It prints, from the same run and data:

- the what-if (``POST /api/v1/policy-sets/<set>/impact``, through Django's test client: the
  server's time, no network) of a document that changes every route's primary, median of REPEATS;
- a bare ``GROUP BY`` of the rollup rows the preview reads (``audits.rollups.reading``: whole days from
  the daily rollups ingest keeps beside the hourly ones, a partial day's hours from the hourly ones;
  sums per task, classification, model and provider, latency sketches left out), the floor no preview
  can beat, and the ratio; and the same ``GROUP BY`` over every hourly row of the window, for scale.

The target is 200 ms for the preview.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/steward_impactbench .venv/bin/python bench/impact.py
    DATABASE_URL=... .venv/bin/python bench/impact.py --decisions 1000000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import statistics
import time

import harness

harness.setup_django()

from django.db import connection  # noqa: E402

from audits.models import DecisionDayRollup, DecisionRollup  # noqa: E402
from audits.rollups import GAMMA, bucket, reading, rebuild_days  # noqa: E402
from portfolio.impact import default_window  # noqa: E402
from registry.models import Status  # noqa: E402
from steward.roles import ENGINEERS, OFFICERS  # noqa: E402
from tests.factories import (  # noqa: E402
    approve_cell,
    make_classification,
    make_model,
    make_policy_set,
    make_provider,
    make_task,
    make_tier,
    make_version,
    publish_through_review,
)

ROUTES = 20
PROVIDERS = 4
SMALL_VERSIONS = 12
REPEATS = 7
TARGET_MS = 200
# Shares of a route's traffic: the primary, the fallback, the escalation target.
SHARES = (0.90, 0.08, 0.02)


def world(officers: list, engineer) -> tuple:
    """Providers, small and large versions usable for "internal", ROUTES tasks and a published policy."""
    small = make_tier("small", 1, 500_000)
    make_tier("large", 3, 20_000_000)
    internal = make_classification("internal", 1)
    providers = [make_provider(name=f"Provider {n}", slug=f"provider-{n}") for n in range(PROVIDERS)]
    versions = []
    for n in range(SMALL_VERSIONS):  # round-robin over providers: neighbours differ
        model = make_model(provider=providers[n % PROVIDERS], slug=f"small-{n}")
        versions.append(
            make_version(
                engineer,
                model=model,
                version="1",
                status=Status.APPROVED,
                input_price_micro_usd=100_000 + 10_000 * n,
                output_price_micro_usd=400_000 + 40_000 * n,
            )
        )
    escalation = make_version(
        engineer,
        model=make_model(provider=providers[0], slug="large-0"),
        version="1",
        status=Status.APPROVED,
        cost_tier="large",
        input_price_micro_usd=3_000_000,
        output_price_micro_usd=12_000_000,
    )
    for version in [*versions, escalation]:
        approve_cell(version, internal, officers[0], "Internal data is fine.")
    tasks = [make_task(f"task-{n}", internal, small) for n in range(ROUTES)]
    policy_set = make_policy_set("production", required_approvals=1)

    def document(shift: int) -> str:
        routes = []
        for n, task in enumerate(tasks):
            primary, fallback = versions[(n + shift) % SMALL_VERSIONS], versions[(n + shift + 1) % SMALL_VERSIONS]
            routes.append(
                f"  - task: {task.slug}\n    classification: internal\n    model: {primary.ref}\n"
                f"    fallbacks: [{fallback.ref}]\n    escalation:\n      to: {escalation.ref}\n"
                f"      when: [error]\n      max_rate_bp: 500\n"
            )
        return "default: deny\nroutes:\n" + "".join(routes)

    publish_through_review(policy_set, document(0), engineer, officers)
    return policy_set, document(2), tasks, versions, escalation


def sketch_shape(median_ms: float, spread: float) -> list[tuple[int, float]]:
    """The latency buckets a log-normal latency around ``median_ms`` fills, with each bucket's share."""
    low, high = median_ms * math.exp(-3 * spread), median_ms * math.exp(3 * spread)
    shape = []
    for index in range(bucket(low), bucket(high) + 1):
        lower, upper = GAMMA ** (index - 2), GAMMA ** (index - 1)
        middle = math.log(math.sqrt(lower * upper) / median_ms) / spread
        shape.append((index, math.exp(-middle * middle / 2)))
    total = sum(weight for _, weight in shape)
    return [(index, weight / total) for index, weight in shape]


def sketch(shape: list[tuple[int, float]], requests: int) -> dict[str, int]:
    """A sketch of ``requests`` spread over ``shape``: the buckets that receive at least one."""
    counts = {str(index): int(share * requests) for index, share in shape}
    counts = {key: value for key, value in counts.items() if value}
    first = next(iter(counts), str(shape[len(shape) // 2][0]))
    counts[first] = counts.get(first, 0) + requests - sum(counts.values())
    return counts


def rollups(policy_set, tasks, versions, escalation, decisions: int) -> int:
    """Hourly rollup rows for the last 14 days holding ``decisions`` in all; returns how many rows."""
    since, until = default_window()
    hours = int((until - since) / dt.timedelta(hours=1))
    per_route_hour = decisions // (hours * len(tasks))
    rows = []
    for n, task in enumerate(tasks):
        served = [versions[n % SMALL_VERSIONS], versions[(n + 1) % SMALL_VERSIONS], escalation]
        shapes = [sketch_shape(300 + 40 * n + 500 * place, 0.35) for place in range(3)]
        for hour_number in range(hours):
            hour = since + dt.timedelta(hours=hour_number)
            # Busier by day than by night, the same total over a day.
            volume = round(per_route_hour * (1 + 0.5 * math.sin(2 * math.pi * (hour_number % 24) / 24)))
            for place, version in enumerate(served):
                requests = max(1, round(volume * SHARES[place]))
                tokens_in, tokens_out = requests * (800 + 10 * n), requests * (200 + 5 * n)
                rows.append(
                    DecisionRollup(
                        hour=hour,
                        policy_set=policy_set.slug,
                        task=task.slug,
                        classification="internal",
                        model=version.ref,
                        provider=version.model.provider.slug,
                        tier=version.cost_tier,
                        requests=requests,
                        cost_micro_usd=version.price_micro_usd(tokens_in, tokens_out),
                        input_tokens=tokens_in,
                        output_tokens=tokens_out,
                        fallbacks=requests if place == 1 else 0,
                        escalations=requests if place == 2 else 0,
                        latency=sketch(shapes[place], requests),
                    )
                )
    DecisionRollup.objects.bulk_create(rows, batch_size=2000)
    rebuild_days()  # the daily rollups ingest would have kept beside them
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {DecisionRollup._meta.db_table}")
        cursor.execute(f"ANALYZE {DecisionDayRollup._meta.db_table}")
    return len(rows)


def timed(act, repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        act()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def group_by_floor(policy_set: str, hourly_only: bool = False) -> tuple[float, int]:
    """A bare GROUP BY of the window's rollup rows: median seconds, and the groups it answers.

    By default the rows the preview reads (``audits.rollups.reading``): the window's whole days and the
    partial days it reads whole from the daily rollups, and the hours it adds or takes away from the
    hourly ones, each row's sums signed. ``hourly_only``: every hourly row of the window instead."""
    since, until = default_window()
    group = "task, classification, model, provider"
    columns = "requests, input_tokens, output_tokens, cost_micro_usd"
    sums = "SUM(sign * requests), SUM(sign * input_tokens), SUM(sign * output_tokens), SUM(sign * cost_micro_usd)"
    hourly, daily = DecisionRollup._meta.db_table, DecisionDayRollup._meta.db_table
    if hourly_only:
        parts = [
            (
                f"SELECT {group}, {columns}, 1 AS sign FROM {hourly}"
                " WHERE policy_set = %s AND hour >= %s AND hour < %s",
                [policy_set, since, until],
            )
        ]
    else:
        plan = reading(since, until)
        low, high = plan.days or (None, None)
        parts = [
            (
                f"SELECT {group}, {columns}, 1 AS sign FROM {daily} WHERE policy_set = %s"
                " AND ((day >= %s AND day < %s) OR day = ANY(%s))",
                [policy_set, low, high, list(plan.day_rows)],
            )
        ]
        for sign, ranges in ((1, plan.plus), (-1, plan.minus)):
            for start, end in ranges:
                parts.append(
                    (
                        f"SELECT {group}, {columns}, {sign} AS sign FROM {hourly}"
                        " WHERE policy_set = %s AND hour >= %s AND hour < %s",
                        [policy_set, start, end],
                    )
                )
    sql = (
        f"SELECT {group}, {sums} FROM ({' UNION ALL '.join(part for part, _ in parts)}) AS window_rows GROUP BY {group}"
    )
    params = [value for _, values in parts for value in values]
    found = []

    def run() -> None:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            found[:] = cursor.fetchall()

    return timed(run, REPEATS), len(found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=10_000_000)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        raise harness.BenchError("this benchmark needs PostgreSQL: set DATABASE_URL")
    with harness.test_database():
        officer, engineer = harness.member("bench-alice", OFFICERS), harness.member("bench-bob", ENGINEERS)
        policy_set, proposal, tasks, versions, escalation = world([officer], engineer)
        started = time.perf_counter()
        rows = rollups(policy_set, tasks, versions, escalation, args.decisions)
        stored = DecisionRollup.objects.filter(policy_set=policy_set.slug).values_list("requests", flat=True)
        decisions = sum(stored)
        print(f"{rows:,} rollup rows holding {decisions:,} decisions, written in {time.perf_counter() - started:.1f} s")

        client = harness.signed_in(engineer)
        body = json.dumps({"policy": proposal})
        answers = []

        def preview() -> None:
            response = client.post(
                f"/api/v1/policy-sets/{policy_set.slug}/impact", body, content_type="application/json"
            )
            if response.status_code != 200:
                raise harness.BenchError(f"the what-if answered {response.status_code}: {response.content[:500]!r}")
            answers.append(response.json())

        preview()  # warm: the first request imports and connects
        seconds = timed(preview, REPEATS)
        result = answers[-1]
        moved = sum(route["moved_requests"] for route in result["routes"])
        if result["totals"]["requests"] != decisions or any(r["change"] != "changed" for r in result["routes"]):
            changes = sorted({route["change"] for route in result["routes"]})
            raise harness.BenchError(
                f"the preview counts {result['totals']['requests']:,} of {decisions:,} decisions; routes: {changes}"
            )
        floor, groups = group_by_floor(policy_set.slug)
        hourly_floor, _ = group_by_floor(policy_set.slug, hourly_only=True)
        day_rows = DecisionDayRollup.objects.filter(policy_set=policy_set.slug).count()
        print(f"impact of a change to all {len(result['routes'])} routes ({moved:,} decisions change model):")
        print(f"  what-if POST …/impact      {seconds * 1000:8.1f} ms  (median of {REPEATS})")
        print(f"  bare GROUP BY, {groups} groups {floor * 1000:8.1f} ms  (median of {REPEATS}; the rows it reads:")
        print(f"                                         of {day_rows:,} daily rollups and the partial days' hours)")
        print(f"  ratio                      {seconds / floor:8.1f} x")
        print(f"  (the same GROUP BY over the window's {rows:,} hourly rows: {hourly_floor * 1000:.1f} ms)")
        met = seconds * 1000 <= TARGET_MS
        print(f"target {TARGET_MS} ms: {'met' if met else 'NOT met'}")
        return 0 if met else 1


if __name__ == "__main__":
    harness.main(main)
