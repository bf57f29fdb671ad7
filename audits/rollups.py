"""Hourly and daily decision rollups kept at ingest, and the latency sketch they carry.

Ingest adds each stored record to its hour's rollup and to its UTC day's, in the same transaction. The
hourly rows answer any range of hours (the charts, the explorer's totals); a window of whole days reads
the daily rows, and only its ragged hours at either end from the hourly ones (``traffic``).

The sketch is a sparse histogram over logarithmic buckets (DDSketch-style, 1 % relative accuracy): a
bucket index maps to a count, so two sketches merge by adding counts, exactly, whatever the grouping or
time range of the rows they came from.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.db.models import Q, Value

from audits.models import DAY, ROLLUP_GROUP, DecisionDayRollup, DecisionRecord, DecisionRollup, day_start

RELATIVE_ACCURACY = 0.01
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(GAMMA)
# Bucket 0 holds 0 ms; buckets 1..MAX_INDEX cover 1 ms to a little over a day; longer latencies clamp.
MAX_INDEX = math.ceil(math.log(86_400_000) / _LOG_GAMMA) + 2

# A record's group: what the explorer filters by, and the policy version (the escalation-rate check
# judges each version's routes by their own caps; a set publishes a few versions a month, so an hour
# has one or two) and whether the record broke a rule (the explorer's "violations: yes / no").
GROUP = ROLLUP_GROUP
TEXT_GROUP = GROUP[:6]
GROUP_TYPES = ("text",) * len(TEXT_GROUP) + ("integer", "boolean")  # PostgreSQL's, for the upsert
SUMS = ("requests", "cost_micro_usd", "input_tokens", "output_tokens", "fallbacks", "escalations", "violations")


def bucket(ms: float) -> int:
    if ms <= 0:
        return 0
    return min(MAX_INDEX, max(1, math.ceil(math.log(ms) / _LOG_GAMMA) + 1))


def bucket_value(index: int) -> float:
    if index <= 0:
        return 0.0
    return 2 * GAMMA ** (index - 1) / (GAMMA + 1)


class LatencySketch:
    """Mergeable latency sketch: quantiles within RELATIVE_ACCURACY of the true value (up to a day)."""

    __slots__ = ("buckets",)

    def __init__(self, buckets: dict | None = None) -> None:
        self.buckets: dict[int, int] = {}
        for key, value in (buckets or {}).items():
            if value:
                self.buckets[int(key)] = self.buckets.get(int(key), 0) + int(value)

    @property
    def count(self) -> int:
        return sum(self.buckets.values())

    def add(self, ms: float, n: int = 1) -> None:
        index = bucket(ms)
        self.buckets[index] = self.buckets.get(index, 0) + n

    def merge(self, other: LatencySketch) -> LatencySketch:
        for index, n in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + n
        return self

    def quantile(self, q: float) -> float:
        total = self.count
        if not total:
            return 0.0
        rank = q * (total - 1)
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen > rank:
                return bucket_value(index)
        return bucket_value(max(self.buckets))

    def to_json(self) -> dict[str, int]:
        return {str(index): n for index, n in sorted(self.buckets.items())}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LatencySketch) and self.buckets == other.buckets

    def __repr__(self) -> str:
        return f"LatencySketch(count={self.count})"


def hour_of(moment: datetime) -> datetime:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.replace(minute=0, second=0, microsecond=0)


def add_batch(rows: Iterable[dict]) -> None:
    """Add stored decision records to their hourly and daily rollups; ingest calls this with only the
    records it inserted, inside its transaction."""
    hours = _groups(rows)
    _write(DecisionRollup, "hour", hours)
    _write(DecisionDayRollup, "day", _by_day(hours))


def _groups(rows: Iterable[dict]) -> dict[tuple, dict]:
    """Decision records (their fields as dicts) summed per hour and group: key (hour, *GROUP)."""
    groups: dict[tuple, dict] = {}
    buckets: dict[int, int] = {}  # by latency: a batch's latencies repeat
    for row in rows:
        key = (
            hour_of(row["occurred_at"]),
            *(row.get(name) or "" for name in TEXT_GROUP),
            row.get("policy_version") or 0,  # 0: a caller that does not know it (the rollup's default)
            bool(row.get("has_violation")),
        )
        entry = groups.get(key)
        if entry is None:
            entry = groups[key] = {name: 0 for name in SUMS} | {"latency": {}}
        entry["requests"] += 1
        entry["cost_micro_usd"] += row["cost_micro_usd"]
        entry["input_tokens"] += row["input_tokens"]
        entry["output_tokens"] += row["output_tokens"]
        entry["fallbacks"] += bool(row["fallback_used"])
        entry["escalations"] += bool(row["escalated"])
        entry["violations"] += bool(row.get("has_violation"))
        latency = entry["latency"]
        index = buckets.get(row["latency_ms"])
        if index is None:
            index = buckets[row["latency_ms"]] = bucket(row["latency_ms"])
        latency[index] = latency.get(index, 0) + 1
    return groups


def _by_day(groups: dict[tuple, dict]) -> dict[tuple, dict]:
    """Groups keyed by (period, *GROUP), folded into their UTC days."""
    days: dict[tuple, dict] = {}
    for key, entry in groups.items():
        day_key = (day_start(key[0]), *key[1:])
        into = days.get(day_key)
        if into is None:
            days[day_key] = {name: entry[name] for name in SUMS} | {"latency": dict(entry["latency"])}
            continue
        for name in SUMS:
            into[name] += entry[name]
        _add_counts(into["latency"], entry["latency"])
    return days


def _add_counts(into: dict[int, int], counts: dict) -> None:
    """A sketch's bucket counts (keys as ints or, from JSON, strings) added to ``into``."""
    for index, n in counts.items():
        index = int(index)
        into[index] = into.get(index, 0) + n


def _write(rollup_model, column: str, groups: dict[tuple, dict]) -> None:
    """Add summed groups, keyed by (period, *GROUP), to their rows of ``rollup_model`` (period ``column``).

    Groups are added in key order, so two workers adding to the same groups wait for each other instead
    of deadlocking: on PostgreSQL in one ``INSERT … ON CONFLICT DO UPDATE`` that adds the sums and merges
    the sketches (their bucket counts added key by key); elsewhere rows are created if missing, locked
    and updated.
    """
    if not groups:
        return
    keys = sorted(groups)
    if connection.vendor == "postgresql":
        _upsert(rollup_model._meta.db_table, column, keys, groups)
        return
    names = (column, *GROUP)
    with transaction.atomic():
        rollup_model.objects.bulk_create(
            [rollup_model(**dict(zip(names, key, strict=True))) for key in keys],
            ignore_conflicts=True,
            batch_size=500,
        )
        periods = {key[0] for key in keys}
        sets = {key[1] for key in keys}
        locked = (
            rollup_model.objects.select_for_update()
            .filter(**{f"{column}__in": periods}, policy_set__in=sets)
            .order_by(*names)
        )
        changed = []
        for rollup in locked:
            key = tuple(getattr(rollup, name) for name in names)
            entry = groups.get(key)
            if entry is None:
                continue
            for name in SUMS:
                setattr(rollup, name, getattr(rollup, name) + entry[name])
            rollup.latency = LatencySketch(rollup.latency).merge(LatencySketch(entry["latency"])).to_json()
            changed.append(rollup)
        rollup_model.objects.bulk_update(changed, [*SUMS, "latency"], batch_size=500)


def _upsert(table: str, column: str, keys: list[tuple], groups: dict[tuple, dict]) -> None:
    """The groups' sums added to their rows of ``table`` in one statement, rows taken in ``keys`` order.

    The groups travel as one JSON document, a list per row, which PostgreSQL takes apart: an array
    parameter per column would have each sketch's JSON escaped inside an array literal, quote by
    quote, costing more than the rest of the upsert."""
    columns = (column, *GROUP, *SUMS, "latency")
    types = ("timestamptz", *GROUP_TYPES, *["bigint"] * len(SUMS), "jsonb")
    rows = [
        [key[0].isoformat(), *key[1:], *(groups[key][name] for name in SUMS), groups[key]["latency"]] for key in keys
    ]
    values = ", ".join(
        f"row -> {i}" if kind == "jsonb" else f"row ->> {i}" if kind == "text" else f"(row ->> {i})::{kind}"
        for i, kind in enumerate(types)
    )
    added = ", ".join(f"{name} = rollup.{name} + excluded.{name}" for name in SUMS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} AS rollup ({', '.join(columns)})"
            f" SELECT {values} FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS batch (row, n)"
            " ORDER BY n"
            f" ON CONFLICT ({', '.join((column, *GROUP))}) DO UPDATE SET {added},"
            # Each of the batch's buckets added to the row's count of it (looked up, not unpacked), and
            # the sums written over the row's sketch: the work grows with the batch, not with the row.
            " latency = rollup.latency || coalesce((SELECT jsonb_object_agg(bucket,"
            " coalesce((rollup.latency ->> bucket)::bigint, 0) + n::bigint)"
            " FROM jsonb_each_text(excluded.latency) AS counts (bucket, n)), '{}')",
            [json.dumps(rows, separators=(",", ":"))],
        )


# The fields of a decision record that its rollup reads.
ROW_FIELDS = ("occurred_at", *GROUP, "latency_ms", "cost_micro_usd", "input_tokens", "output_tokens")
ROW_FIELDS += ("fallback_used", "escalated")


def rebuild(decision_model=DecisionRecord, rollup_model=DecisionRollup, day_model=DecisionDayRollup) -> None:
    """Replace every rollup by those of the stored records (a migration passes its historical models,
    and ``day_model=None`` where the daily table does not exist yet).

    On PostgreSQL one ``INSERT … SELECT … GROUP BY``: records per hour, group and latency bucket (the
    bucket by ``bucket``'s formula, in the same double precision), then those summed per hour and
    group with the buckets gathered into the sketch. Elsewhere ``add_batch``'s path, in chunks. The
    daily rollups are then made from the hourly ones (``rebuild_days``).
    """
    if connection.vendor != "postgresql":
        rollup_model.objects.all().delete()
        batch: list[dict] = []
        for row in decision_model.objects.order_by("pk").values(*ROW_FIELDS).iterator(chunk_size=5000):
            batch.append(row)
            if len(batch) >= 5000:
                _write(rollup_model, "hour", _groups(batch))
                batch = []
        _write(rollup_model, "hour", _groups(batch))
    else:
        _rebuild_hours(decision_model, rollup_model)
    if day_model is not None:
        rebuild_days(rollup_model, day_model)


def _rebuild_hours(decision_model, rollup_model) -> None:
    group = ", ".join(GROUP)
    positions = ", ".join(str(n) for n in range(2, 3 + len(GROUP)))
    bucket_sql = (
        f"CASE WHEN latency_ms <= 0 THEN 0 ELSE LEAST({MAX_INDEX}, GREATEST(1,"
        " CEIL(LN(latency_ms::float8) / %s)::int + 1)) END"
    )
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {rollup_model._meta.db_table}")  # a DELETE would leave every old row dead
        cursor.execute(
            f"""
            INSERT INTO {rollup_model._meta.db_table} (hour, {group}, {", ".join(SUMS)}, latency)
            SELECT hour, {group}, {", ".join(f"SUM({name})" for name in SUMS)}, jsonb_object_agg(bucket::text, requests)
            FROM (
                SELECT date_trunc('hour', occurred_at, 'UTC') AS hour, {group}, {bucket_sql} AS bucket,
                       COUNT(*) AS requests, SUM(cost_micro_usd) AS cost_micro_usd,
                       SUM(input_tokens) AS input_tokens, SUM(output_tokens) AS output_tokens,
                       COUNT(*) FILTER (WHERE fallback_used) AS fallbacks,
                       COUNT(*) FILTER (WHERE escalated) AS escalations,
                       COUNT(*) FILTER (WHERE has_violation) AS violations
                FROM {decision_model._meta.db_table}
                GROUP BY 1, {positions}
            ) AS buckets
            GROUP BY hour, {group}
            """,
            [_LOG_GAMMA],
        )


def rebuild_days(rollup_model=DecisionRollup, day_model=DecisionDayRollup) -> None:
    """Replace every daily rollup by the sum of its day's hourly ones (sketches merged bucket by bucket).

    On PostgreSQL one statement: the sums per day and group, joined to the sketches' bucket counts per
    day, group and bucket gathered back into one sketch. Elsewhere ``_by_day`` over the hourly rows.
    """
    if connection.vendor != "postgresql":
        day_model.objects.all().delete()
        hours: dict[tuple, dict] = {}
        for row in rollup_model.objects.values("hour", *GROUP, *SUMS, "latency").iterator(chunk_size=5000):
            hours[(row["hour"], *(row[name] for name in GROUP))] = row
        _write(day_model, "day", _by_day(hours))
        return
    hourly, daily = rollup_model._meta.db_table, day_model._meta.db_table
    group = ", ".join(GROUP)
    positions = ", ".join(str(n) for n in range(2, 2 + len(GROUP)))
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {daily}")
        cursor.execute(
            f"""
            WITH sums AS (
                SELECT date_trunc('day', hour, 'UTC') AS day, {group},
                       {", ".join(f"SUM({name}) AS {name}" for name in SUMS)}
                FROM {hourly} GROUP BY 1, {positions}
            ), sketches AS (
                SELECT day, {group}, jsonb_object_agg(bucket, n) AS latency
                FROM (
                    SELECT date_trunc('day', hour, 'UTC') AS day, {group}, counts.key AS bucket,
                           SUM(counts.value::bigint) AS n
                    FROM {hourly}, jsonb_each_text(latency) AS counts
                    GROUP BY 1, {positions}, counts.key
                ) AS buckets
                GROUP BY day, {group}
            )
            INSERT INTO {daily} (day, {group}, {", ".join(SUMS)}, latency)
            SELECT day, {group}, {", ".join(SUMS)}, COALESCE(sketches.latency, '{{}}'::jsonb)
            FROM sums LEFT JOIN sketches USING (day, {group})
            """
        )


@dataclass
class Traffic:
    key: dict
    requests: int = 0
    cost_micro_usd: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    fallbacks: int = 0
    escalations: int = 0
    violations: int = 0
    latency: LatencySketch = field(default_factory=LatencySketch)


HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Reading:
    """Where the rows of a range of hours come from: whole days (``days``: [first, last) midnights, either
    end open), single days read whole (``day_rows``), and hours added (``plus``) or taken away
    (``minus``) as [low, high) ranges; a day mostly inside the range is its daily row less the hours
    outside, so no day costs more than twelve hourly rows."""

    days: tuple[datetime | None, datetime | None] | None
    day_rows: tuple[datetime, ...] = ()
    plus: tuple[tuple[datetime, datetime], ...] = ()
    minus: tuple[tuple[datetime, datetime], ...] = ()


def reading(start: datetime | None, end: datetime | None, now: datetime | None = None) -> Reading:
    """How to read the hours [start, end) (hour-aligned, either end open) from daily and hourly rollups.

    A day the range covers part of is read the cheaper way: its hours inside the range, or its daily row
    less its hours outside; hours after the current one hold no rows yet and cost nothing (so today, up
    to the current hour, is its daily row less that hour).
    """
    if start is not None and end is not None and end <= start:
        return Reading(days=None)
    current = hour_of(now or datetime.now(UTC))

    def cost(low: datetime, high: datetime) -> int:  # hours of hourly rows read
        return max(0, (min(high, current + HOUR) - low) // HOUR)

    partial: list[tuple[datetime, datetime]] = []
    first = start
    if start is not None and start != day_start(start):
        first = day_start(start) + DAY
        partial.append((start, first if end is None else min(end, first)))
    last = end
    if end is not None and end != day_start(end) and (first is None or day_start(end) >= first):
        last = day_start(end)
        partial.append((last, end))
    days = (first, last) if first is None or last is None or first < last else None
    day_rows: list[datetime] = []
    plus: list[tuple[datetime, datetime]] = []
    minus: list[tuple[datetime, datetime]] = []
    for low, high in partial:
        day = day_start(low)
        outside = [part for part in ((day, low), (high, day + DAY)) if part[0] < part[1]]
        if cost(low, high) <= 1 + sum(cost(*part) for part in outside):
            plus.append((low, high))
        else:
            day_rows.append(day)
            minus.extend(outside)
    return Reading(days, tuple(day_rows), tuple(plus), tuple(minus))


def traffic(
    policy_set: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    by: tuple[str, ...] = ("task", "classification", "model", "provider"),
    **filters,
) -> list[Traffic]:
    """Summed figures per group over [since, until) hours, with merged latency sketches; one query.

    `by` names any of the group fields, plus "day" (the UTC date) or "hour". Unless grouped by hour,
    the range is read as ``reading`` says: whole UTC days from the daily rollups, the hours of a day
    the range covers a little of from the hourly ones, and a day it covers mostly as its daily row less
    the hourly rows outside the range (sums and sketch counts subtract exactly). One ``UNION ALL``.
    """
    fields = [name for name in by if name not in ("day", "hour")]
    values = (*fields, *SUMS, "latency")
    start = hour_of(since) if since is not None else None
    end = until if until is None or until == hour_of(until) else hour_of(until) + HOUR

    def rows_of(model, column: str, sign: int, where: Q):
        queryset = model.objects.filter(where, **filters)
        if policy_set is not None:
            queryset = queryset.filter(policy_set=policy_set)
        return queryset.annotate(sign=Value(sign)).values_list(column, *values, "sign")

    def hours(ranges) -> Q:
        where = Q()
        for low, high in ranges:
            where |= Q(hour__gte=low, hour__lt=high)
        return where

    if "hour" in by:
        where = Q()
        if start is not None:
            where &= Q(hour__gte=start)
        if end is not None:
            where &= Q(hour__lt=end)
        parts = [rows_of(DecisionRollup, "hour", 1, where)]
    else:
        plan = reading(start, end)
        where = Q(day__in=plan.day_rows)
        if plan.days is not None:
            low, high = plan.days
            if low is None and high is None:
                where = Q()  # every day (an empty Q would vanish from an OR)
            elif low is None:
                where |= Q(day__lt=high)
            elif high is None:
                where |= Q(day__gte=low)
            else:
                where |= Q(day__gte=low, day__lt=high)
        parts = [rows_of(DecisionDayRollup, "day", 1, where)]
        if plan.plus:
            parts.append(rows_of(DecisionRollup, "hour", 1, hours(plan.plus)))
        if plan.minus:
            parts.append(rows_of(DecisionRollup, "hour", -1, hours(plan.minus)))
    rows = parts[0].union(*parts[1:], all=True) if len(parts) > 1 else parts[0]

    out: dict[tuple, Traffic] = {}
    width = len(fields)
    counts: dict[tuple, dict[str, int]] = {}
    for row in rows.iterator(chunk_size=2000):
        period, sign = row[0], row[-1]
        named = dict(zip(fields, row[1 : 1 + width], strict=True))
        named["day"], named["hour"] = period.date(), period
        key = tuple(named[name] for name in by)
        item = out.get(key)
        if item is None:
            item = out[key] = Traffic(key={name: named[name] for name in by})
            counts[key] = {}
        for name, value in zip(SUMS, row[1 + width : -2], strict=True):
            setattr(item, name, getattr(item, name) + sign * value)
        into = counts[key]
        get = into.get
        if sign > 0:
            for index, n in row[-2].items():
                into[index] = get(index, 0) + n
        else:
            for index, n in row[-2].items():
                into[index] = get(index, 0) - n
    for key, item in list(out.items()):
        item.latency.buckets = {int(index): n for index, n in counts[key].items() if n}
        if not item.requests:  # a group whose day lay outside the range but for the hours taken away
            del out[key]
    return [out[key] for key in sorted(out, key=lambda k: tuple(str(part) for part in k))]
