"""Benchmark: the decisions explorer and the streaming exports over a million decision records.

In a throwaway test database (PostgreSQL), with N decision records (default 1,000,000, inserted
by the 100,000-row test's own ``INSERT … SELECT generate_series``), prints:

- the explorer's first page (which aggregates the totals over the filter), a page deep in the
  listing (a keyset cursor: no OFFSET, no COUNT) and a filtered page, beside the same pages at
  1,000 records measured first in the same run (the floor);
- the CSV and JSON Lines exports through the view, in rows per second, beside PostgreSQL's own
  ``COPY (SELECT …) TO STDOUT WITH CSV`` of the same rows (the floor), and how much the process's
  resident memory grew while streaming (Linux: the peak is reset through /proc/self/clear_refs).

It works in ``test_<database>``, created and dropped here: point DATABASE_URL at a name nobody's
tests use.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/steward_exportbench .venv/bin/python bench/decision_export.py
    DATABASE_URL=... .venv/bin/python bench/decision_export.py --rows 200000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import harness

harness.setup_django()

from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

from audits.exports import DECISION_COLUMNS  # noqa: E402
from audits.models import DecisionRecord  # noqa: E402
from portfolio.models import PolicySet, Router  # noqa: E402
from steward.roles import AUDITORS  # noqa: E402
from tests.audits.test_exports import insert_decisions as bulk_insert  # noqa: E402

REPEATS = 5


def insert_decisions(router: Router, start: int, count: int) -> None:
    bulk_insert(router.pk, count, start)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {DecisionRecord._meta.db_table}")


def page_timings(client: Client) -> dict[str, tuple[float, int]]:
    """Median seconds and queries of the explorer's first, a deep and a filtered page."""
    middle = DecisionRecord.objects.order_by("-occurred_at", "-pk")[DecisionRecord.objects.count() // 2]
    cursor = f"{middle.occurred_at.isoformat()}~{middle.pk}".replace("+", "%2B")
    urls = {
        "first page, with totals": "/audit/decisions/",
        "a page halfway down": f"/audit/decisions/?older={cursor}",
        "violations only": "/audit/decisions/?violation=yes",
    }
    # Paging is an htmx request for the table alone, as the page's links make it.
    paging = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "decision-table"}
    return {
        name: harness.medians(client, [url], REPEATS, **(paging if "older" in url else {}))[url]
        for name, url in urls.items()
    }


def resident_peak_reset() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def resident_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def export(client: Client, fmt: str) -> tuple[float, int, int]:
    """Seconds, bytes, and growth of the resident peak (KiB) while streaming one export."""
    measured = resident_peak_reset()
    before = resident_kib("VmRSS")
    started = time.perf_counter()
    streamed = 0
    for piece in client.get(f"/audit/decisions/export.{fmt}", {"since": ""}).streaming_content:
        streamed += len(piece)
    elapsed = time.perf_counter() - started
    growth = resident_kib("VmHWM") - before if measured else -1
    return elapsed, streamed, growth


def copy_floor(rows: int) -> float:
    """PostgreSQL writing the same columns as CSV, read by this process: what no view can beat."""
    columns = ", ".join(
        "r.name AS router" if field == "router__name" else f"d.{'id' if field == 'pk' else field}"
        for _, field in DECISION_COLUMNS
    )
    sql = (
        f"COPY (SELECT {columns} FROM {DecisionRecord._meta.db_table} d JOIN {Router._meta.db_table} r "
        "ON r.id = d.router_id ORDER BY d.occurred_at DESC, d.id DESC) TO STDOUT WITH CSV HEADER"
    )
    connection.ensure_connection()
    started = time.perf_counter()
    with connection.connection.cursor() as cursor, cursor.copy(sql) as copy:
        for _ in copy:
            pass
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("This benchmark needs PostgreSQL: set DATABASE_URL.")
    with harness.test_database():
        client = harness.signed_in(harness.member("bench-dave", AUDITORS))
        policy_set = PolicySet.objects.create(slug="production", name="Production")
        router = Router.objects.create(name="bench-edge", policy_set=policy_set, token_hash="0" * 64)
        insert_decisions(router, 1, 1000)
        floor = page_timings(client)
        started = time.perf_counter()
        insert_decisions(router, 1001, args.rows - 1000)
        print(f"decision records: 1,000 → {args.rows:,} (inserted in {time.perf_counter() - started:.1f} s)")
        for name, (large, large_queries) in page_timings(client).items():
            small, small_queries = floor[name]
            print(
                f"  {name:26s} 1,000: {small * 1000:7.1f} ms ({small_queries} queries)  "
                f"{args.rows:,}: {large * 1000:7.1f} ms ({large_queries} queries)  ratio {large / small:.1f}"
            )
        floor_seconds = copy_floor(args.rows)
        print(f"  COPY … TO STDOUT CSV      {args.rows / floor_seconds:10,.0f} rows/s (floor)")
        for fmt in ("csv", "jsonl"):
            seconds, streamed, growth = export(client, fmt)
            memory = f", resident peak +{growth / 1024:.1f} MiB" if growth >= 0 else ""
            print(
                f"  export.{fmt:5s}              {args.rows / seconds:10,.0f} rows/s, {streamed / 2**20:,.0f} MiB "
                f"in {seconds:.1f} s{memory}  ratio to COPY {seconds / floor_seconds:.1f}"
            )


if __name__ == "__main__":
    harness.main(main)
