"""Benchmark: the decisions explorer, its charts and the CSV export over ten million decision records.

In a throwaway test database (PostgreSQL), with N decision records (default 10,000,000) spread over
60 days, 20 routers of two policy sets, 6 tasks, 4 classifications and 10 models, written by ``COPY``
from a generated stream, and their hourly rollups computed by one ``INSERT … SELECT … GROUP BY``
(checked equal, for a sample of hours, to what ``audits.rollups.add_batch`` makes of the same rows),
prints:

- the explorer's first page (the default 30 days, with its totals) and filtered pages, server time
  (the request through Django's test client), target ≤ 300 ms each;
- every decision chart, each figure timed on its own and the charts partial whole, target ≤ 200 ms
  each (they read rollups);
- the CSV export through the view in rows per second beside PostgreSQL's own
  ``COPY (SELECT …) TO STDOUT WITH CSV`` of the same rows in the same run, target ≥ 0.5 of it;
- retention at the end of the window: the kept content (its classification keeps content for
  RETENTION_DAYS) whose retention ended over the past month removed by ``remove_expired_content``
  (PostgreSQL drops that month's daily content partitions), target ≤ 1 s; it runs last, since it
  removes what it measures;
- with ``--explain``, ``EXPLAIN (ANALYZE, BUFFERS)`` of the explorer's queries.

The records are written as ingest partitions them (``audits.partitions``: monthly decision partitions
for the window, a content partition per day of expiry) with their ids, their content in the content
table and its tally per day, and their idempotence keys.

It works in ``test_<database>``, created and dropped here: point DATABASE_URL at a name with "bench" in
it. ``--keep`` leaves the database there and ``--reuse`` measures one left by ``--keep`` (rollups are
computed again, the records are not), so that measuring again does not cost the generation.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/steward_exportbench .venv/bin/python bench/decision_export.py
    DATABASE_URL=... .venv/bin/python bench/decision_export.py --rows 1000000 --explain
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import random
import statistics
import sys
import time
from collections.abc import Iterator

import harness

harness.setup_django()

from django.contrib.auth.models import User  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from audits import charts, partitions, rollups  # noqa: E402
from audits.decisions import DECISION_IDS, remove_expired_content  # noqa: E402
from audits.exports import DECISION_COLUMNS  # noqa: E402
from audits.filters import DecisionFilter, rollups_for, violations_for  # noqa: E402
from audits.models import (  # noqa: E402
    DAY,
    ContentDrop,
    ContentTally,
    DecisionContent,
    DecisionDayRollup,
    DecisionKey,
    DecisionRecord,
    DecisionRollup,
    Violation,
    ViolationKind,
    day_start,
)
from portfolio.models import PolicySet, Router  # noqa: E402
from steward.roles import AUDITORS  # noqa: E402
from tests.factories import make_classification, make_model, make_provider, make_task, make_tier, make_version  # noqa: E402

REPEATS = 5
DAYS = 60
ROUTERS = 20
STAGING_ROUTERS = 4  # the last four routers report for the staging policy set
TASKS = ("ticket-triage", "support-reply", "contract-review", "summarise", "translate", "code-review")
CLASSIFICATIONS = ("public", "internal", "confidential", "secret")
KEEPS_CONTENT = {"public", "internal"}
PROVIDERS = ("acme", "beta", "gamma", "delta")
TIERS = ("small", "medium", "large")
MODELS = tuple(
    (f"{PROVIDERS[n % 4]}/model-{n}@1", PROVIDERS[n % 4], TIERS[n % 3]) for n in range(10)
)  # (ref, provider, tier)
VIOLATION_ONE_IN = 200
RETENTION_DAYS = 30  # how long the classifications that keep content keep it
COPY_CHUNK = 20_000


# --- the records ---------------------------------------------------------------------------------------


def reference_data() -> dict[str, int]:
    """The tables the explorer's filters choose from, and the routers; router ids by name."""
    owner = User.objects.create_user("bench-bob", password="x")
    tiers = {slug: make_tier(slug, rank, 10**9) for rank, slug in enumerate(TIERS, start=1)}
    classes = {
        slug: make_classification(slug, level, retention_days=RETENTION_DAYS)
        for level, slug in enumerate(CLASSIFICATIONS, start=1)
    }
    for task in TASKS:
        make_task(task, classes["internal"], tiers["small"])
    providers = {slug: make_provider(name=slug.title(), slug=slug) for slug in PROVIDERS}
    for n, (_, provider, tier) in enumerate(MODELS):
        make_version(
            owner, model=make_model(provider=providers[provider], slug=f"model-{n}"), version="1", cost_tier=tier
        )
    production = PolicySet.objects.create(slug="production", name="Production")
    staging = PolicySet.objects.create(slug="staging", name="Staging")
    routers = {}
    for n in range(ROUTERS):
        policy_set = staging if n >= ROUTERS - STAGING_ROUTERS else production
        router = Router.objects.create(name=f"edge-{n:02d}", policy_set=policy_set, token_hash=f"{n:064x}")
        routers[router.name] = router.pk
    return routers


def _record_lines(rows: int, end: dt.datetime, router_ids: list[int]) -> Iterator[tuple[str, str]]:
    """The records and their kept content in COPY's text format, oldest first (as routers report them),
    a chunk of each per piece.

    Values come from a multiplicative hash of the record's number: spread, repeatable, no RNG state.
    """
    step = DAYS * 86_400 / rows
    start = end - dt.timedelta(days=DAYS)
    retention = dt.timedelta(days=RETENTION_DAYS)
    chunk: list[str] = []
    kept: list[str] = []
    for i in range(1, rows + 1):
        h = (i * 2654435761) % 4294967296
        at = start + dt.timedelta(seconds=i * step)
        occurred = at.isoformat()
        received = (at + dt.timedelta(seconds=2)).isoformat()
        router = i % ROUTERS
        policy_set = "staging" if router >= ROUTERS - STAGING_ROUTERS else "production"
        task, classification = h % 6, (h >> 3) % 4
        fallback, escalated = (h >> 10) % 13 == 0, (h >> 14) % 20 == 0
        # A route picks its model; a fallback or an escalation another one, as routes do.
        model, provider, tier = MODELS[(task * 4 + classification + 3 * fallback + 5 * escalated) % 10]
        classification = CLASSIFICATIONS[classification]
        stored = classification in KEEPS_CONTENT
        expires = (at + retention).isoformat() if stored else "\\N"
        if stored:
            kept.append(f"{i}\t{expires}\tprompt {i}\tanswer {h}\n")
        chunk.append(
            f"{i}\t{router_ids[router]}\t{policy_set}\treq-{i}\t{occurred}\t{received}\t{TASKS[task]}\t"
            f"{classification}\t{model}\t{provider}\t{tier}\t{1 + i * 3 // (rows + 1)}\t{'t' if fallback else 'f'}\t"
            f"{'t' if escalated else 'f'}\t{40 + (h >> 5) % 4000}\t{200 + (h >> 7) % 3000}\t"
            f"{20 + (h >> 9) % 800}\t{50 + (h >> 11) % 20000}\t{i:064x}\t{h:064x}\t"
            f"{'t' if stored else 'f'}\t{expires}\t{'t' if (h >> 18) % VIOLATION_ONE_IN == 0 else 'f'}\n"
        )
        if len(chunk) == COPY_CHUNK:
            yield "".join(chunk), "".join(kept)
            chunk, kept = [], []
    if chunk:
        yield "".join(chunk), "".join(kept)


RECORD_COLUMNS = (
    "id router_id policy_set request_id occurred_at received_at task classification model provider tier "
    "policy_version fallback_used escalated latency_ms input_tokens output_tokens cost_micro_usd "
    "input_sha256 output_sha256 content_stored content_expires_at has_violation"
).split()
CONTENT_COLUMNS = ("decision_id", "expires_at", "input_content", "output_content")


@contextlib.contextmanager
def without_indexes(cursor, table: str) -> Iterator[None]:
    """The table's indexes and unique constraints (not its primary key) dropped, then built again from
    their own definitions: building an index over sorted millions beats maintaining it row by row."""
    cursor.execute(
        "SELECT c.relname, pg_get_indexdef(i.indexrelid), con.conname, pg_get_constraintdef(con.oid)"
        " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid"
        " WHERE i.indrelid = %s::regclass AND NOT i.indisprimary",
        [table],
    )
    found = cursor.fetchall()
    cursor.execute("SET maintenance_work_mem = '512MB'")
    # A partitioned table's index is defined ON ONLY the parent; built again, it must reach every partition.
    found = [(index, definition.replace(" ON ONLY ", " ON "), *rest) for index, definition, *rest in found]
    for index, _, constraint, _ in found:
        cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT {constraint}" if constraint else f"DROP INDEX {index}")
    yield
    started = time.perf_counter()
    for _, definition, constraint, constraint_definition in found:
        if constraint:
            cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {constraint} {constraint_definition}")
        else:
            cursor.execute(definition)
    print(f"  {len(found)} indexes built again in {time.perf_counter() - started:.1f} s")


def _check_columns(model, columns) -> None:
    stored = {f.column for f in model._meta.concrete_fields}
    if stored != set(columns):
        raise harness.BenchError(f"{model._meta.db_table}'s columns changed: {sorted(stored ^ set(columns))}")


def copy_records(rows: int, end: dt.datetime, router_ids: list[int]) -> None:
    table, content = DecisionRecord._meta.db_table, DecisionContent._meta.db_table
    _check_columns(DecisionRecord, RECORD_COLUMNS)
    _check_columns(DecisionContent, CONTENT_COLUMNS)
    # The partitions ingest would have made over the window: its months, and a day of content per day
    # of expiry from the window's start on (then the ones ahead of today).
    start = end - dt.timedelta(days=DAYS)
    day = start
    while day <= end:  # the daily task's runs over the window: every day's content partition, ahead
        partitions.create_partitions(now=day, since=start)
        day += dt.timedelta(days=7)
    partitions.create_partitions(now=end, since=start)
    connection.ensure_connection()
    with (
        connection.connection.cursor() as cursor,
        without_indexes(cursor, table),
        without_indexes(cursor, content),
    ):
        for records, kept in _record_lines(rows, end, router_ids):
            with cursor.copy(f"COPY {table} ({', '.join(RECORD_COLUMNS)}) FROM STDIN") as copy:
                copy.write(records)
            if kept:
                with cursor.copy(f"COPY {content} ({', '.join(CONTENT_COLUMNS)}) FROM STDIN") as copy:
                    copy.write(kept)
        cursor.execute("SELECT setval(%s, %s)", [DECISION_IDS, rows])
        # Every record's idempotence key, as ingest writes it.
        cursor.execute(
            f"INSERT INTO {DecisionKey._meta.db_table} (router_id, request_id, decision_id)"
            f" SELECT router_id, request_id, id FROM {table}"
        )
        # The tally of kept content per day of expiry, as ingest keeps it (what retention reports).
        cursor.execute(
            f"INSERT INTO {ContentTally._meta.db_table} (day, classification, rows)"
            f" SELECT (content_expires_at AT TIME ZONE 'UTC')::date, classification, count(*) FROM {table}"
            " WHERE content_stored GROUP BY 1, 2"
        )
        # One violation row per flagged record, of a kind chosen by its id; a few route-level ones.
        kinds = [ViolationKind.MODEL_NOT_ALLOWED, ViolationKind.NOT_USABLE, ViolationKind.UNPUBLISHED_POLICY]
        cursor.execute(
            f"INSERT INTO {Violation._meta.db_table} (kind, decision_id, policy_set, task, classification, detail,"
            " detected_at) SELECT (%s::text[])[1 + id %% 3], id, policy_set, task, classification, 'bench',"
            f" received_at FROM {table} WHERE has_violation",
            [kinds],
        )
        cursor.execute(
            f"INSERT INTO {Violation._meta.db_table} (kind, policy_set, task, classification, detail, detected_at,"
            " window_start, window_end) SELECT %s, 'production', 'support-reply', 'internal', 'bench',"
            " %s - n * interval '1 day', %s - n * interval '1 day' - interval '1 hour', %s - n * interval '1 day'"
            " FROM generate_series(0, 40) AS n",
            [ViolationKind.ESCALATION_RATE, end, end, end],
        )
        for analysed in (table, content, Violation._meta.db_table):
            cursor.execute(f"ANALYZE {analysed}")


# --- rollups ------------------------------------------------------------------------------------------


def compute_rollups() -> None:
    """Every record's hourly rollup by one ``INSERT … SELECT … GROUP BY`` and the daily ones from those
    (``audits.rollups.rebuild``), then the VACUUM autovacuum makes of tables that changed this much
    (index-only scans need it)."""
    rollups.rebuild()
    with connection.cursor() as cursor:
        for model in (DecisionRollup, DecisionDayRollup):
            cursor.execute(f"VACUUM ANALYZE {model._meta.db_table}")


def _rollup_values(hours: list[dt.datetime]) -> dict[tuple, tuple]:
    names = ("hour", *rollups.GROUP)
    return {
        tuple(getattr(r, name) for name in names): (
            *(getattr(r, name) for name in rollups.SUMS),
            rollups.LatencySketch(r.latency),
        )
        for r in DecisionRollup.objects.filter(hour__in=hours)
    }


def check_rollups_against_add_batch(sample_hours: int = 4) -> int:
    """For a few hours, the GROUP BY's rollups equal add_batch's of the same records (rolled back after)."""
    hours = sorted(DecisionRollup.objects.values_list("hour", flat=True).distinct().order_by("hour"))
    chosen = random.Random(14).sample(hours, min(sample_hours, len(hours)))
    grouped = _rollup_values(chosen)
    compared = 0
    with transaction.atomic():
        DecisionRollup.objects.filter(hour__in=chosen).delete()
        for hour in chosen:
            rows = DecisionRecord.objects.filter(occurred_at__gte=hour, occurred_at__lt=hour + dt.timedelta(hours=1))
            batch = list(rows.values(*rollups.ROW_FIELDS))
            compared += len(batch)
            rollups.add_batch(batch)
        batched = _rollup_values(chosen)
        transaction.set_rollback(True)
    if grouped != batched:
        differ = sorted(set(grouped) ^ set(batched)) or [k for k in grouped if grouped[k] != batched.get(k)]
        raise harness.BenchError(f"the GROUP BY's rollups differ from add_batch's, e.g. {differ[:3]}")
    return compared


# --- measurements ---------------------------------------------------------------------------------------


def timed(function, *args) -> tuple[float, int, bool]:
    """Median seconds of ``function(*args)`` over REPEATS calls, its queries, and whether any read the
    decision table."""
    seconds = []
    for _ in range(REPEATS):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            function(*args)
            seconds.append(time.perf_counter() - started)
    raw = any(DecisionRecord._meta.db_table in query["sql"] for query in captured.captured_queries)
    return statistics.median(seconds), len(captured), raw


def get(client: Client, url: str, **extra):
    def fetch() -> None:
        response = client.get(url, **extra)
        if response.status_code != 200:
            raise harness.BenchError(f"GET {url} answered {response.status_code}")

    return fetch


def explorer_urls(deep_cursor: str) -> dict[str, tuple[str, dict]]:
    paging = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "decision-table"}
    return {
        "first page, with totals": ("/audit/decisions/", {}),
        "task + classification": ("/audit/decisions/?task=contract-review&classification=secret", {}),
        "model, 7 days": (f"/audit/decisions/?model={MODELS[3][0]}&since={days_ago(7)}", {}),
        "violations only": ("/audit/decisions/?violation=yes", {}),
        "one router": ("/audit/decisions/?router=edge-03", {}),
        "a page 15 days down": (f"/audit/decisions/?older={deep_cursor}", paging),
    }


def days_ago(days: int) -> str:
    return (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=days)).isoformat()


def deep_cursor() -> str:
    middle = DecisionRecord.objects.filter(occurred_at__lt=dt.datetime.now(dt.UTC) - dt.timedelta(days=15))
    row = middle.order_by("-occurred_at", "-pk").values_list("occurred_at", "pk").first()
    return f"{row[0].isoformat()}~{row[1]}".replace("+", "%2B")


CHART_FILTERS = {
    "last 30 days": {"since": None},
    "production, support-reply, 60 days": {"since": "60", "policy_set": "production", "task": "support-reply"},
    f"{MODELS[3][0]}, no violation, 60 days": {"since": "60", "model": MODELS[3][0], "violation": "no"},
}


def chart_timings(client: Client) -> dict[str, tuple[float, int, bool]]:
    """Each chart on its own, for a few filters and every grouping, then the charts partial whole."""
    timings = {}
    for label, chosen in CHART_FILTERS.items():
        data = {key: value for key, value in chosen.items() if key != "since"}
        data["since"] = days_ago(int(chosen["since"]) - 1 if chosen["since"] else 29)
        filterset = DecisionFilter(data, queryset=DecisionRecord.objects.all())
        scope, _ = rollups_for(filterset)
        for grouping in charts.GROUPINGS:
            timings[f"{label}: per day by {grouping}"] = timed(charts.daily_charts, scope, grouping)
        timings[f"{label}: escalation by task"] = timed(charts.escalation_chart, scope)
        violations = violations_for(filterset)
        if violations is not None:
            timings[f"{label}: violations by kind"] = timed(charts.violations_chart, violations)
    extra = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "chart-panel"}
    for grouping in charts.GROUPINGS:
        url = f"/audit/decisions/charts/?group={grouping}"
        timings[f"charts partial, 30 days, by {grouping}"] = timed(get(client, url, **extra))
    return timings


def copy_floor(since: str) -> tuple[float, int]:
    """PostgreSQL writing the same rows and columns as CSV, read by this process: what no view can beat."""
    columns = ", ".join(
        "r.name AS router" if field == "router__name" else f"d.{'id' if field == 'pk' else field}"
        for _, field in DECISION_COLUMNS
    )
    sql = (
        f"COPY (SELECT {columns} FROM {DecisionRecord._meta.db_table} d JOIN {Router._meta.db_table} r "
        f"ON r.id = d.router_id WHERE d.occurred_at >= '{since}' ORDER BY d.occurred_at DESC, d.id DESC)"
        " TO STDOUT WITH CSV HEADER"
    )
    connection.ensure_connection()
    started = time.perf_counter()
    lines = 0
    with connection.connection.cursor() as cursor, cursor.copy(sql) as copy:
        for piece in copy:
            lines += bytes(piece).count(b"\n")
    return time.perf_counter() - started, lines - 1


def export_csv(client: Client, since: str) -> tuple[float, int]:
    started = time.perf_counter()
    lines = 0
    for piece in client.get("/audit/decisions/export.csv", {"since": since}).streaming_content:
        lines += piece.count(b"\n")
    return time.perf_counter() - started, lines - 1


def retention(end: dt.datetime) -> tuple[float, int, int, int, int]:
    """Seconds for ``remove_expired_content`` at ``end`` (what the beat task runs), the rows it reported
    removed, the content rows left, the day partitions it dropped and the rows it deleted from the
    DEFAULT partition; afterwards no content that expired before ``end``'s day is left.

    The content retention removes is a month old: autovacuum has long visited it and checkpoints have
    written it out. So it is first brought to that state here (VACUUM ANALYZE, CHECKPOINT), not timed
    as just loaded, which would time the writing out of the gigabytes this run has just generated."""
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {DecisionContent._meta.db_table}")
        cursor.execute("CHECKPOINT")
    started = time.perf_counter()
    removed = remove_expired_content(now=end)
    seconds = time.perf_counter() - started
    cutoff = day_start(end)
    if DecisionContent.objects.filter(expires_at__lt=cutoff).exists():
        raise harness.BenchError("retention left content that had expired")
    drops = list(ContentDrop.objects.filter(dropped_at=end).values_list("range_start", "range_end", "rows"))
    days = sum(1 for start, stop, _ in drops if stop - start == DAY)
    deleted = sum(rows for start, stop, rows in drops if stop - start != DAY)
    return seconds, sum(removed.values()), DecisionContent.objects.count(), days, deleted


def explain(client: Client, urls: dict[str, tuple[str, dict]]) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of every query of the explorer's pages that reads the decision table."""
    for name, (url, extra) in urls.items():
        with CaptureQueriesContext(connection) as captured:
            client.get(url, **extra)
        for query in captured.captured_queries:
            if DecisionRecord._meta.db_table not in query["sql"]:
                continue
            with connection.cursor() as cursor:
                cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {query['sql']}")
                plan = "\n".join(f"      {line}" for (line,) in cursor.fetchall())
            print(f"\n  EXPLAIN {name}: {query['sql'][:300]}…\n{plan}")


@contextlib.contextmanager
def bench_database(reuse: bool, keep: bool) -> Iterator[bool]:
    """The test database: a fresh one (dropped at the end unless ``keep``), or the one ``--keep`` left.
    Yields whether records must be generated."""
    from django.core.management import call_command
    from django.test.utils import setup_test_environment

    settings = connection.settings_dict
    name = settings["TEST"].get("NAME") or f"test_{settings['NAME']}"
    if "bench" not in name:
        raise harness.BenchError(f"the test database {name!r} must have 'bench' in its name")
    if reuse:
        setup_test_environment()
        connection.close()
        settings["NAME"] = name
        call_command("migrate", verbosity=0)
        if not DecisionRecord.objects.exists():
            raise harness.BenchError(f"{name} holds no decision records: run once with --keep")
        yield False
        return
    if keep:
        setup_test_environment()
        old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
        print(f"the database {name} is kept: measure it again with --reuse", file=sys.stderr)
        yield True
        connection.settings_dict["NAME"] = old_name
        return
    with harness.test_database():
        yield True


EXPLORER_TARGET = 0.3  # seconds, server time of a page
CHART_TARGET = 0.2  # seconds, from rollups
EXPORT_TARGET = 0.5  # of COPY … TO STDOUT
RETENTION_TARGET = 1.0  # seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--keep", action="store_true", help="leave the database for --reuse")
    parser.add_argument("--reuse", action="store_true", help="measure the database a --keep run left")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of the explorer's queries")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("This benchmark needs PostgreSQL: set DATABASE_URL.")
    missed: list[str] = []  # each target missed, in the words of the line that says so
    with bench_database(args.reuse, args.keep) as generate:
        if generate:
            routers = reference_data()
            end = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
            started = time.perf_counter()
            copy_records(args.rows, end, [routers[f"edge-{n:02d}"] for n in range(ROUTERS)])
            seconds = time.perf_counter() - started
            print(f"decision records: {args.rows:,} by COPY in {seconds:.1f} s ({args.rows / seconds:,.0f} rows/s)")
        rows = DecisionRecord.objects.count()
        started = time.perf_counter()
        compute_rollups()
        print(
            f"rollups: {DecisionRollup.objects.count():,} rows by one GROUP BY insert in "
            f"{time.perf_counter() - started:.1f} s; equal to add_batch's for {check_rollups_against_add_batch():,} "
            "records of 4 sampled hours"
        )
        dave = User.objects.filter(username="bench-dave").first() or harness.member("bench-dave", AUDITORS)
        client = harness.signed_in(dave)
        urls = explorer_urls(deep_cursor())
        print(f"explorer over {rows:,} records (target ≤ 300 ms each):")
        for name, (url, extra) in urls.items():
            seconds, queries, _ = timed(get(client, url, **extra))
            print(f"  {name:28s} {seconds * 1000:7.1f} ms ({queries} queries)")
            if seconds > EXPLORER_TARGET:
                missed.append(f"explorer, {name}: {seconds * 1000:.1f} ms")
        if args.explain:
            explain(client, urls)
        print("decision charts, from rollups (target ≤ 200 ms each):")
        for name, (seconds, queries, raw) in chart_timings(client).items():
            print(f"  {name:44s} {seconds * 1000:7.1f} ms ({queries} queries{', READ RECORDS' if raw else ''})")
            if seconds > CHART_TARGET or raw:
                missed.append(f"chart, {name}: {seconds * 1000:.1f} ms{', read the records' if raw else ''}")
        since = days_ago(6)
        floor_seconds, floor_rows = copy_floor(since)
        seconds, exported = export_csv(client, since)
        if exported != floor_rows:
            raise harness.BenchError(f"the export wrote {exported:,} rows, COPY {floor_rows:,}")
        print(
            f"CSV export of the last 7 days ({exported:,} rows): view {exported / seconds:,.0f} rows/s, "
            f"COPY … TO STDOUT {floor_rows / floor_seconds:,.0f} rows/s, ratio {floor_seconds / seconds:.3f}"
            f" (target ≥ {EXPORT_TARGET})"
        )
        if floor_seconds / seconds < EXPORT_TARGET:  # judged unrounded: 0.496 is a miss
            missed.append(f"CSV export: {floor_seconds / seconds:.3f} of COPY")
        before = DecisionContent.objects.count()
        seconds, removed, left, days, deleted = retention(dt.datetime.now(dt.UTC))
        print(
            f"retention of the content that expired over the past month: {removed:,} of {before:,} content rows"
            f" removed in {seconds * 1000:,.1f} ms ({days} day partitions dropped, {deleted:,} rows deleted from"
            f" the DEFAULT partition), {left:,} left (target ≤ 1 s)"
            if removed
            else "retention: no content had expired (measured by an earlier run on this database)"
        )
        if removed and seconds > RETENTION_TARGET:
            missed.append(f"retention: {seconds * 1000:,.1f} ms")
    for what in missed:
        print(f"[MISS] {what}")
    print("ALL TARGETS MET" if not missed else f"{len(missed)} TARGET(S) MISSED")
    return 1 if missed else 0


if __name__ == "__main__":
    harness.main(main)
