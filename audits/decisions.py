"""Ingesting routers' decision records, finding violations, enforcing retention.

A batch is validated record by record: good records are stored (content or only its digest,
by the classification's storage rule), bad ones are answered with their errors, repeats of a
request id from the same router are accepted once. Every stored record is judged as of the moment
it was made (``audits.judging``): against the policy version it names, as published then, and the
compliance matrix as Steward had it on record then.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from django.db import IntegrityError, connection, models, transaction
from django.db.models import Sum
from django.utils import timezone

from compliance.models import StorageRule
from portfolio.models import PolicyVersion, Router

from . import partitions, rollups
from .events import record as audit_record
from .judging import current_book
from .models import (
    ContentTally,
    DecisionContent,
    DecisionKey,
    DecisionRecord,
    DecisionRollup,
    Violation,
    ViolationKind,
    day_start,
)
from .records import check_records

MAX_BATCH = 1000
MAX_BODY_BYTES = 32 * 1024 * 1024
# The decision table's id sequence (PostgreSQL), from which ``_claim`` takes a batch's ids.
DECISION_IDS = "audits_decisionrecord_id_seq"


class ForeignPolicySet(Exception):
    """A batch names a policy set other than the router's own."""


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    violations: int = 0
    errors: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": len(self.errors),
            "violations": self.violations,
            "errors": self.errors,
        }


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest() if text else ""


def ingest(router: Router, records: Any, *, text_checked: bool = False, checked: bool = False) -> IngestResult:
    """Store a batch of decision records from ``router``; see the module docstring.

    ``text_checked``: no string in ``records`` can hold a NUL or a lone surrogate (the API knows it
    from the body), which lets a well-formed batch be validated in one call (``check_records``).
    ``checked``: ``records`` are clean values already (``records.check_body``).
    """
    result = IngestResult()
    policy_set = router.policy_set.slug
    for raw in records:
        if isinstance(raw, dict) and isinstance(raw.get("policy_set"), str) and raw["policy_set"] != policy_set:
            raise ForeignPolicySet(raw["policy_set"])
    clean: list[tuple[int, dict]] = []
    answers = [(record, {}) for record in records] if checked else check_records(records, text_checked=text_checked)
    for index, (raw, (record, errors)) in enumerate(zip(records, answers, strict=True)):
        if errors:
            request_id = raw.get("request_id") if isinstance(raw, dict) else None
            if not isinstance(request_id, str):
                request_id = None  # echo back only what identifies the record, never a nested value
            result.errors.append({"index": index, "request_id": request_id, "errors": errors})
        else:
            clean.append((index, record))
    # Repeats within the batch count once.
    unique: dict[str, dict] = {}
    for _, record in clean:
        if record["request_id"] in unique:
            result.duplicates += 1
        else:
            unique[record["request_id"]] = record
    if not unique:
        return result
    for attempt in range(2):
        try:
            _store(router, policy_set, unique, result)
            break
        except IntegrityError:
            # The same batch arrived twice at the same moment: read what the other stored, try again.
            if attempt:
                raise
    return result


# The columns ingest writes, by attribute name, in the tables' order.
DECISION_COLUMNS = tuple(f.attname for f in DecisionRecord._meta.concrete_fields)
CONTENT_COLUMNS = ("decision_id", "expires_at", "input_content", "output_content")
VIOLATION_COLUMNS = tuple(f.attname for f in Violation._meta.concrete_fields if not f.primary_key)


class _Decision(dict):
    """A decision record as ingest writes it: its columns by attribute name (``DECISION_COLUMNS``),
    which ``PolicyBook`` reads as attributes, and the record's content (``input``, ``output``) for
    the content table. Cheaper by far than a model instance per record."""

    __slots__ = ()


# Each column read as an attribute straight from the dict, not after a lookup that fails first.
for _name in DECISION_COLUMNS:
    setattr(_Decision, _name, property(itemgetter(_name)))


def _store(router: Router, policy_set: str, unique: dict[str, dict], result: IngestResult) -> None:
    """Claim the batch's keys, then write the records whose key this call inserted, with their content,
    violations, content tally and rollups: one transaction, a fixed number of queries on PostgreSQL."""
    with transaction.atomic():
        claimed = _claim(router, list(unique))
        fresh = [record for request_id, record in unique.items() if request_id in claimed]
        duplicates = len(unique) - len(fresh)
        decisions: list[_Decision] = []
        contents: list[tuple[_Decision, str, str]] = []
        found: list[list[tuple[str, str]]] = []
        book, received_at = current_book(policy_set, fresh) if fresh else (None, None)
        rules: dict[str, tuple[bool, dt.timedelta | None]] = {}  # by classification: keep content, for how long
        makers: dict[str, tuple[str, str]] = {}  # by model: provider and cost tier
        for record in fresh:
            rule = rules.get(record["classification"])
            if rule is None:
                classification = book.classifications.get(record["classification"])
                # Unknown classifications keep only digests: the safe default for data nobody has classified.
                keep = classification is not None and classification.storage == StorageRule.CONTENT
                # Retention as the classification has it now: editing it applies to records received afterwards.
                days = classification.retention_days if keep else None
                rule = rules[record["classification"]] = (keep, None if days is None else dt.timedelta(days=days))
            keep, retention = rule
            maker = makers.get(record["model"])
            if maker is None:
                model = book.models.get(record["model"])
                provider = model.model.provider.slug if model else record["model"].split("/", 1)[0][:50]
                maker = makers[record["model"]] = (provider, model.cost_tier if model else "")
            decision = _Decision(record)  # the record's values, under the columns' names
            decision.update(
                id=claimed[record["request_id"]],
                router_id=router.pk,
                policy_set=policy_set,
                received_at=received_at,
                provider=maker[0],
                tier=maker[1],
                input_sha256=_digest(record["input"]) or record["input_sha256"],
                output_sha256=_digest(record["output"]) or record["output_sha256"],
                content_stored=keep,
                content_expires_at=None if retention is None else record["occurred_at"] + retention,
                has_violation=False,
            )
            problems = book.violations(decision)
            decision["has_violation"] = bool(problems)
            decisions.append(decision)
            found.append(problems)
            if keep:
                contents.append((decision, record["input"], record["output"]))
        if decisions:
            _write(router, decisions)
            violations = [
                Violation(
                    kind=kind,
                    decision_id=decision["id"],
                    policy_set=policy_set,
                    task=decision["task"],
                    classification=decision["classification"],
                    detail=detail,
                    detected_at=received_at,
                )
                for decision, problems in zip(decisions, found, strict=True)
                for kind, detail in problems
            ]
            _write_dependents(contents, violations)
            rollups.add_batch(decisions)
            result.violations += len(violations)
    result.accepted += len(decisions)
    result.duplicates += duplicates


def _claim(router: Router, request_ids: list[str]) -> dict[str, int | None]:
    """The request ids of the batch not stored before, each with the id its decision gets.

    PostgreSQL: the keys go in first, in one statement that skips a (router, request id) already
    there and takes the decision ids from the sequence; a second worker posting the same batch at the
    same moment waits on the first's keys, then skips them. Keys are inserted in request id order, so
    two overlapping batches wait for each other instead of deadlocking. SQLite (one writer at a time):
    the ids come with the rows, and the keys go in after them (``_write``); a key stored meanwhile by
    another process fails the transaction, which ``ingest`` then runs again.
    """
    if connection.vendor != "postgresql":
        taken = set(
            DecisionKey.objects.filter(router=router, request_id__in=request_ids).values_list("request_id", flat=True)
        )
        return {request_id: None for request_id in request_ids if request_id not in taken}
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {DecisionKey._meta.db_table} (router_id, request_id, decision_id)"
            f" SELECT %s, request_id, nextval('{DECISION_IDS}') FROM json_array_elements_text(%s::json) AS request_id"
            " ORDER BY request_id ON CONFLICT DO NOTHING RETURNING request_id, decision_id",
            [router.pk, json.dumps(request_ids)],  # one JSON text: cheaper to send than an array of strings
        )
        return dict(cursor.fetchall())


def _write(router: Router, decisions: list[_Decision]) -> None:
    """Store the claimed decisions: PostgreSQL by ``COPY`` straight into the (partitioned) table with
    the ids ``_claim`` took; SQLite by ``bulk_create`` (which gives each its id), then their keys."""
    if connection.vendor != "postgresql":
        stored = DecisionRecord.objects.bulk_create(
            [DecisionRecord(**{name: d[name] for name in DECISION_COLUMNS}) for d in decisions], batch_size=500
        )
        for decision, record in zip(decisions, stored, strict=True):
            decision["id"] = record.pk
        DecisionKey.objects.bulk_create(
            [DecisionKey(router=router, request_id=d["request_id"], decision_id=d["id"]) for d in decisions],
            batch_size=500,
        )
        return
    row = itemgetter(*DECISION_COLUMNS)
    with connection.cursor() as cursor:
        _copy(cursor, DecisionRecord, DECISION_COLUMNS, map(row, decisions))


def _write_dependents(contents: list[tuple[_Decision, str, str]], violations: list[Violation]) -> None:
    """The stored decisions' kept content, their violations, and the tally of content expiring per day."""
    kept = [(decision["id"], decision["content_expires_at"], i, o) for decision, i, o in contents]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            if kept:
                _copy(cursor, DecisionContent, CONTENT_COLUMNS, kept)
            if violations:
                rows = ([getattr(v, name) for name in VIOLATION_COLUMNS] for v in violations)
                _copy(cursor, Violation, VIOLATION_COLUMNS, rows)
    else:
        DecisionContent.objects.bulk_create(
            [DecisionContent(**dict(zip(CONTENT_COLUMNS, row, strict=True))) for row in kept], batch_size=500
        )
        Violation.objects.bulk_create(violations, batch_size=500)
    tally = Counter(
        (decision["content_expires_at"].astimezone(dt.UTC).date(), decision["classification"])
        for decision, _, _ in contents
        if decision["content_expires_at"] is not None
    )
    if tally:
        table = ContentTally._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (day, classification, rows) VALUES {', '.join(['(%s, %s, %s)'] * len(tally))}"
                f" ON CONFLICT (day, classification) DO UPDATE SET rows = {table}.rows + excluded.rows",
                [value for key in sorted(tally) for value in (*key, tally[key])],  # in key order: no deadlock
            )


def _copy(cursor, model: type[models.Model], columns: tuple[str, ...], rows: Iterable[Sequence]) -> None:
    """``COPY`` the rows (values of ``columns``, attribute names of the model's fields) into the model's
    table, logged like any query when Django logs them (``connection.queries``, query-count tests)."""
    table = connection.ops.quote_name(model._meta.db_table)
    column_of = {f.attname: f.column for f in model._meta.concrete_fields}
    names = ", ".join(connection.ops.quote_name(column_of[name]) for name in columns)
    sql = f"COPY {table} ({names}) FROM STDIN"
    logged = getattr(cursor, "debug_sql", None)
    with logged(sql) if logged else nullcontext(), cursor.cursor.copy(sql) as copy:
        for row in rows:
            copy.write_row(row)


# --- scheduled checks ---------------------------------------------------------------------------

ESCALATION_WINDOW = dt.timedelta(hours=1)
ESCALATION_MIN_DECISIONS = 20


def check_escalation_rates(now: dt.datetime | None = None, window: dt.timedelta = ESCALATION_WINDOW) -> int:
    """Record a violation for each route whose escalation rate over the window exceeds its cap.

    Read from the hourly rollups, never the records: the window is widened to whole hours, from the
    top of the hour ``window`` before ``now`` to ``now`` (the current hour's rollup holds its records
    so far). The rollups are grouped by policy version, so each version's decisions are counted under
    the route of that version, and a route's figures over the versions in use are held to the
    tightest of their caps.
    """
    now = now or timezone.now()
    start = rollups.hour_of(now - window)
    counts = {
        (policy_set, task, classification, version): (total, escalated)
        for policy_set, task, classification, version, total, escalated in DecisionRollup.objects.filter(
            hour__gte=start, hour__lte=now
        )
        .values_list("policy_set", "task", "classification", "policy_version")
        .annotate(total=Sum("requests"), escalated=Sum("escalations"))
        .order_by()
    }
    versions = {
        (v.policy_set.slug, v.number): v
        for v in PolicyVersion.objects.select_related("policy_set").filter(
            number__in={key[3] for key in counts}, policy_set__slug__in={key[0] for key in counts}
        )
    }
    totals: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 10_001])
    for (policy_set, task, classification, number), (total, escalated) in counts.items():
        version = versions.get((policy_set, number))
        route = version.route_for(task, classification) if version else None
        if route is None or route.escalation is None:
            continue
        bucket = totals[(policy_set, task, classification)]
        bucket[0] += total
        bucket[1] += escalated
        bucket[2] = min(bucket[2], route.escalation.max_rate_bp)
    created = 0
    for (policy_set, task, classification), (total, escalated, cap) in totals.items():
        if total < ESCALATION_MIN_DECISIONS:
            continue
        rate = escalated * 10_000 // total
        if rate <= cap:
            continue
        already = Violation.objects.filter(
            kind=ViolationKind.ESCALATION_RATE,
            policy_set=policy_set,
            task=task,
            classification=classification,
            window_end__gt=start,
        ).exists()
        if already:
            continue
        Violation.objects.create(
            kind=ViolationKind.ESCALATION_RATE,
            policy_set=policy_set,
            task=task,
            classification=classification,
            detail=(
                f"{task} / {classification} escalated {escalated} of {total} decisions ({rate} bp) from "
                f"{start:%Y-%m-%d %H:%M} to {now:%H:%M} UTC, above the cap of {cap} bp"
            ),
            window_start=start,
            window_end=now,
            detected_at=now,
        )
        created += 1
    return created


def remove_expired_content(now: dt.datetime | None = None) -> dict[str, int]:
    """Remove the kept content whose retention ended before today (UTC), keeping metadata and digests.

    On PostgreSQL the content partitions of the days that ended are dropped whole (no row is
    rewritten) and the expired rows of the DEFAULT partition deleted; on SQLite the rows are deleted.
    Each removed range is logged (``ContentDrop``: what "content removed at" reads); the counts by
    classification come from the tally kept at ingest. Returns those counts.
    """
    now = now or timezone.now()
    cutoff = day_start(now)
    with transaction.atomic():
        expired = ContentTally.objects.filter(day__lt=cutoff.date())
        removed: dict[str, int] = defaultdict(int)
        by_day: dict[dt.date, int] = defaultdict(int)
        for day, classification, rows in expired.order_by("day", "classification").values_list(
            "day", "classification", "rows"
        ):
            removed[classification] += rows
            by_day[day] += rows
        partitions.drop_content_before(cutoff, now, by_day)
        expired.delete()
    removed = {slug: count for slug, count in sorted(removed.items()) if count}
    audit_record(
        "decisions.retention",
        object_type="audits.decisionrecord",
        object_repr="decision record content",
        after={"removed": removed, "at": now},
    )
    return removed
