"""Partitions of the decision tables on PostgreSQL: made ahead, and dropped when retention ends.

``audits_decisionrecord`` is partitioned by month of ``occurred_at`` (``audits_decisionrecord_pYYYYMM``)
and ``audits_decisioncontent`` by UTC day of ``expires_at`` (``audits_decisioncontent_pYYYYMMDD``),
each with a DEFAULT partition: back-dated decisions older than the monthly partitions, and content
without expiry (or expiring beyond the days made ahead), land there. ``create_partitions`` makes
them ahead (beat task ``audits.create_partitions``, daily, and after every ``migrate``); retention
drops the content partitions whose whole day ended and deletes the expired rows of the DEFAULT one.

SQLite keeps plain tables: there, creating partitions does nothing and retention deletes rows.
Both log what they removed in ``ContentDrop``, which is where "content removed at" comes from
(``audits.models.ContentRemovals``).
"""

from __future__ import annotations

import datetime as dt

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Count, Min
from django.utils import timezone

from .models import DAY, ContentDrop, DecisionContent, DecisionRecord, day_start

DECISIONS = DecisionRecord._meta.db_table
CONTENT = DecisionContent._meta.db_table
MONTHS_AHEAD = 3
DAYS_BEYOND_RETENTION = 7


def _month_start(moment: dt.datetime) -> dt.datetime:
    return day_start(moment).replace(day=1)


def _next_month(start: dt.datetime) -> dt.datetime:
    return (start + dt.timedelta(days=32)).replace(day=1)


def _literal(moment: dt.datetime) -> str:
    return f"'{moment.astimezone(dt.UTC).isoformat()}'"


def partitions_of(cursor, parent: str) -> set[str]:
    """The names of the partitions of ``parent`` (the DEFAULT one included)."""
    cursor.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
        [parent],
    )
    return {name for (name,) in cursor.fetchall()}


def _create(cursor, parent: str, key: str, name: str, start: dt.datetime, end: dt.datetime) -> None:
    """Create one partition; rows of its range already in the DEFAULT partition move into it."""
    bounds = f"FOR VALUES FROM ({_literal(start)}) TO ({_literal(end)})"
    within = f"{key} >= {_literal(start)} AND {key} < {_literal(end)}"
    cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {parent}_default WHERE {within})")
    if not cursor.fetchone()[0]:
        cursor.execute(f"CREATE TABLE {name} PARTITION OF {parent} {bounds}")
        return
    # PostgreSQL refuses a partition whose range the DEFAULT partition holds rows of: move them first.
    cursor.execute(f"CREATE TABLE {name} (LIKE {parent} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    cursor.execute(
        f"WITH moved AS (DELETE FROM {parent}_default WHERE {within} RETURNING *)"
        f" INSERT INTO {name} SELECT * FROM moved"
    )
    cursor.execute(f"ALTER TABLE {parent} ATTACH PARTITION {name} {bounds}")


def create_partitions(
    now: dt.datetime | None = None, since: dt.datetime | None = None, using: str = DEFAULT_DB_ALIAS
) -> list[str]:
    """Create the partitions missing ahead of ``now``: decisions for this month (or from ``since``'s
    month) through three months ahead, content for each day from today to today + the longest
    retention of any classification + 7 days. The names created; nothing on SQLite, nor before the
    tables are partitioned (migration 0010)."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return []
    now = now or timezone.now()
    created = []
    with transaction.atomic(using), connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NULL", [f"{CONTENT}_default"])
        if cursor.fetchone()[0]:
            return []
        cursor.execute("SELECT coalesce(max(retention_days), 0) FROM compliance_dataclassification")
        longest = cursor.fetchone()[0]
        existing = partitions_of(cursor, DECISIONS)
        start = _month_start(min(since or now, now))
        last = _month_start(now)
        for _ in range(MONTHS_AHEAD):
            last = _next_month(last)
        while start <= last:
            end = _next_month(start)
            name = f"{DECISIONS}_p{start:%Y%m}"
            if name not in existing:
                _create(cursor, DECISIONS, "occurred_at", name, start, end)
                created.append(name)
            start = end
        existing = partitions_of(cursor, CONTENT)
        start = day_start(now)
        for _ in range(longest + DAYS_BEYOND_RETENTION + 1):
            name = f"{CONTENT}_p{start:%Y%m%d}"
            if name not in existing:
                _create(cursor, CONTENT, "expires_at", name, start, start + DAY)
                created.append(name)
            start += DAY
    return created


def drop_content_before(cutoff: dt.datetime, now: dt.datetime, rows_by_day: dict[dt.date, int]) -> list[ContentDrop]:
    """Remove all content that expired before ``cutoff`` (a UTC day's start) and log each removed range.

    PostgreSQL: DROP of every content partition whose day ended by then (``rows_by_day``, from the
    tally, says how many rows each held), then DELETE of the expired rows of the DEFAULT partition
    (back-dated or beyond the partitions made ahead). SQLite: one DELETE. Call inside a transaction.
    """
    connection = connections[DEFAULT_DB_ALIAS]
    drops = []
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            for name in sorted(partitions_of(cursor, CONTENT)):
                if name.endswith("_default"):
                    continue
                start = dt.datetime.strptime(name.rsplit("_p", 1)[1], "%Y%m%d").replace(tzinfo=dt.UTC)
                if start + DAY > cutoff:
                    continue
                cursor.execute(f"DROP TABLE {name}")
                drops.append(
                    ContentDrop(
                        range_start=start, range_end=start + DAY, dropped_at=now, rows=rows_by_day.get(start.date(), 0)
                    )
                )
            cursor.execute(
                f"WITH gone AS (DELETE FROM {CONTENT}_default WHERE expires_at < %s RETURNING expires_at)"
                " SELECT count(*), min(expires_at) FROM gone",
                [cutoff],
            )
            count, first = cursor.fetchone()
    else:
        expired = DecisionContent.objects.filter(expires_at__lt=cutoff)
        summary = expired.aggregate(count=Count("pk"), first=Min("expires_at"))
        count, first = summary["count"], summary["first"]
        expired._raw_delete(expired.db)
    if count:
        drops.append(ContentDrop(range_start=first, range_end=cutoff, dropped_at=now, rows=count))
    ContentDrop.objects.bulk_create(drops)
    return drops
