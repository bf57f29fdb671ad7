"""Hourly decision rollups kept at ingest, and the latency sketch they carry.

The sketch is a sparse histogram over logarithmic buckets (DDSketch-style, 1 % relative accuracy): a
bucket index maps to a count, so two sketches merge by adding counts, exactly, whatever the grouping or
time range of the rows they came from.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db import connection, transaction

from audits.models import ROLLUP_GROUP, DecisionRecord, DecisionRollup

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
    """Add stored decision records to their hourly rollups; ingest calls this with only inserted records."""
    _add(DecisionRollup, rows)


def _add(rollup_model, rows: Iterable[dict]) -> None:
    """Add decision records (their fields as dicts) to their hourly rollups.

    Called inside ingest's transaction with only the records it inserted. Groups are summed here first
    (one row per group and hour), then added in key order, so two workers adding to the same groups
    wait for each other instead of deadlocking: on PostgreSQL in one ``INSERT … ON CONFLICT DO UPDATE``
    that adds the sums and merges the sketches (their bucket counts added key by key); elsewhere rows
    are created if missing, locked and updated.
    """
    groups: dict[tuple, dict] = {}
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
        index = bucket(row["latency_ms"])
        latency[index] = latency.get(index, 0) + 1
    if not groups:
        return
    keys = sorted(groups)
    if connection.vendor == "postgresql":
        _upsert(rollup_model._meta.db_table, keys, groups)
        return
    names = ("hour", *GROUP)
    with transaction.atomic():
        rollup_model.objects.bulk_create(
            [rollup_model(**dict(zip(names, key, strict=True))) for key in keys],
            ignore_conflicts=True,
            batch_size=500,
        )
        hours = {key[0] for key in keys}
        sets = {key[1] for key in keys}
        locked = rollup_model.objects.select_for_update().filter(hour__in=hours, policy_set__in=sets).order_by(*names)
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


def _upsert(table: str, keys: list[tuple], groups: dict[tuple, dict]) -> None:
    """The groups' sums added to their rows of ``table`` in one statement, rows taken in ``keys`` order."""
    columns = ("hour", *GROUP, *SUMS, "latency")
    types = ("timestamptz", *GROUP_TYPES, *["bigint"] * len(SUMS), "jsonb")
    arrays = [
        [key[0] for key in keys],
        *([key[position] for key in keys] for position in range(1, 1 + len(GROUP))),
        *([groups[key][name] for key in keys] for name in SUMS),
        [json.dumps(groups[key]["latency"]) for key in keys],
    ]
    unnest = ", ".join(f"%s::{kind}[]" for kind in types)
    added = ", ".join(f"{name} = rollup.{name} + excluded.{name}" for name in SUMS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} AS rollup ({', '.join(columns)})"
            f" SELECT {', '.join(columns)} FROM unnest({unnest}) WITH ORDINALITY AS batch ({', '.join(columns)}, n)"
            " ORDER BY n"
            f" ON CONFLICT ({', '.join(('hour', *GROUP))}) DO UPDATE SET {added},"
            " latency = (SELECT jsonb_object_agg(bucket, total) FROM (SELECT bucket, sum(n::bigint) AS total"
            " FROM (SELECT * FROM jsonb_each_text(rollup.latency) UNION ALL"
            " SELECT * FROM jsonb_each_text(excluded.latency)) AS counts (bucket, n) GROUP BY bucket) AS sums)",
            arrays,
        )


# The fields of a decision record that its rollup reads.
ROW_FIELDS = ("occurred_at", *GROUP, "latency_ms", "cost_micro_usd", "input_tokens", "output_tokens")
ROW_FIELDS += ("fallback_used", "escalated")


def rebuild(decision_model=DecisionRecord, rollup_model=DecisionRollup) -> None:
    """Replace every rollup by those of the stored records (a migration passes its historical models).

    On PostgreSQL one ``INSERT … SELECT … GROUP BY``: records per hour, group and latency bucket (the
    bucket by ``bucket``'s formula, in the same double precision), then those summed per hour and
    group with the buckets gathered into the sketch. Elsewhere ``add_batch``'s path, in chunks.
    """
    if connection.vendor != "postgresql":
        rollup_model.objects.all().delete()
        batch: list[dict] = []
        for row in decision_model.objects.order_by("pk").values(*ROW_FIELDS).iterator(chunk_size=5000):
            batch.append(row)
            if len(batch) >= 5000:
                _add(rollup_model, batch)
                batch = []
        _add(rollup_model, batch)
        return
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


def traffic(
    policy_set: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    by: tuple[str, ...] = ("task", "classification", "model", "provider"),
    **filters,
) -> list[Traffic]:
    """Summed figures per group over [since, until) hours, with merged latency sketches; one query.

    `by` names any of the group fields, plus "day" (the UTC date) or "hour".
    """
    queryset = DecisionRollup.objects.filter(**filters)
    if policy_set is not None:
        queryset = queryset.filter(policy_set=policy_set)
    if since is not None:
        queryset = queryset.filter(hour__gte=hour_of(since))
    if until is not None:
        queryset = queryset.filter(hour__lt=until)
    fields = [name for name in by if name not in ("day", "hour")]
    out: dict[tuple, Traffic] = {}
    for row in queryset.values_list("hour", *fields, *SUMS, "latency").iterator(chunk_size=2000):
        hour, group, sums, latency = row[0], row[1 : 1 + len(fields)], row[1 + len(fields) : -1], row[-1]
        named = dict(zip(fields, group, strict=True))
        values = {**named, "day": hour.date(), "hour": hour}
        key = tuple(values[name] for name in by)
        item = out.get(key)
        if item is None:
            item = out[key] = Traffic(key={name: values[name] for name in by})
        for name, value in zip(SUMS, sums, strict=True):
            setattr(item, name, getattr(item, name) + value)
        item.latency.merge(LatencySketch(latency))
    return [out[key] for key in sorted(out, key=lambda k: tuple(str(part) for part in k))]
