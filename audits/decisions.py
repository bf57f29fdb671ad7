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
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Sum
from django.utils import timezone

from compliance.models import DataClassification, StorageRule
from portfolio.models import PolicyVersion, Router

from . import rollups
from .events import record as audit_record
from .judging import PolicyBook
from .models import DecisionRecord, DecisionRollup, Violation, ViolationKind
from .records import check_records

MAX_BATCH = 1000
MAX_BODY_BYTES = 32 * 1024 * 1024


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


def ingest(router: Router, records: Any, *, text_checked: bool = False) -> IngestResult:
    """Store a batch of decision records from ``router``; see the module docstring.

    ``text_checked``: no string in ``records`` can hold a NUL or a lone surrogate (the API knows it
    from the body), which lets a well-formed batch be validated in one call (``check_records``).
    """
    result = IngestResult()
    policy_set = router.policy_set.slug
    for raw in records:
        if isinstance(raw, dict) and isinstance(raw.get("policy_set"), str) and raw["policy_set"] != policy_set:
            raise ForeignPolicySet(raw["policy_set"])
    clean: list[tuple[int, dict]] = []
    for index, (raw, (record, errors)) in enumerate(
        zip(records, check_records(records, text_checked=text_checked), strict=True)
    ):
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


def _store(router: Router, policy_set: str, unique: dict[str, dict], result: IngestResult) -> None:
    with transaction.atomic():
        existing = set(
            DecisionRecord.objects.filter(router=router, request_id__in=list(unique)).values_list(
                "request_id", flat=True
            )
        )
        fresh = [record for request_id, record in unique.items() if request_id not in existing]
        duplicates = len(unique) - len(fresh)
        book = PolicyBook(policy_set, fresh) if fresh else None
        decisions: list[DecisionRecord] = []
        found: list[list[tuple[str, str]]] = []
        for record in fresh:
            classification = book.classifications.get(record["classification"])
            # Unknown classifications keep only digests: the safe default for data nobody has classified.
            keep = classification is not None and classification.storage == StorageRule.CONTENT
            model = book.models.get(record["model"])
            decision = DecisionRecord(
                received_at=book.until,  # what the book read is what Steward had when it received the batch
                router=router,
                policy_set=policy_set,
                request_id=record["request_id"],
                occurred_at=record["occurred_at"],
                task=record["task"],
                classification=record["classification"],
                model=record["model"],
                provider=model.model.provider.slug if model else record["model"].split("/", 1)[0][:50],
                tier=model.cost_tier if model else "",
                policy_version=record["policy_version"],
                fallback_used=record["fallback_used"],
                escalated=record["escalated"],
                latency_ms=record["latency_ms"],
                input_tokens=record["input_tokens"],
                output_tokens=record["output_tokens"],
                cost_micro_usd=record["cost_micro_usd"],
                input_content=record["input"] if keep else "",
                output_content=record["output"] if keep else "",
                input_sha256=_digest(record["input"]) or record["input_sha256"],
                output_sha256=_digest(record["output"]) or record["output_sha256"],
                content_stored=keep,
            )
            problems = book.violations(decision)
            decision.has_violation = bool(problems)
            decisions.append(decision)
            found.append(problems)
        stored = _write(decisions)
        duplicates += len(decisions) - len(stored)
        violations = [
            Violation(
                kind=kind,
                decision_id=stored[decision.request_id],
                policy_set=policy_set,
                task=decision.task,
                classification=decision.classification,
                detail=detail,
            )
            for decision, problems in zip(decisions, found, strict=True)
            if decision.request_id in stored
            for kind, detail in problems
        ]
        Violation.objects.bulk_create(violations, batch_size=500)
        rollups.add_batch(
            {name: getattr(d, name) for name in rollups.ROW_FIELDS} for d in decisions if d.request_id in stored
        )
    result.accepted += len(stored)
    result.duplicates += duplicates
    result.violations += len(violations)


def _write(decisions: list[DecisionRecord]) -> dict[str, int]:
    """Store the batch's new decisions; the ids of those stored, by request id.

    On PostgreSQL the rows go by ``COPY`` into a staging table of the transaction, then into the
    decision table in one statement that skips a (router, request id) already there: a batch posted
    twice at the same moment stores each record once, the second waiting on the first's rows.
    """
    if connection.vendor != "postgresql":
        DecisionRecord.objects.bulk_create(decisions, batch_size=500)
        return {decision.request_id: decision.pk for decision in decisions}
    fields = [f for f in DecisionRecord._meta.concrete_fields if not f.primary_key]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    table = connection.ops.quote_name(DecisionRecord._meta.db_table)
    router_column = connection.ops.quote_name(DecisionRecord._meta.get_field("router").column)
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMPORARY TABLE decision_staging ON COMMIT DROP AS SELECT {columns} FROM {table} WITH NO DATA"
        )
        with cursor.cursor.copy(f"COPY decision_staging ({columns}) FROM STDIN") as copy:
            for decision in decisions:
                copy.write_row([getattr(decision, f.attname) for f in fields])
        stored = _move_from_staging(cursor, table, columns, router_column)
        cursor.execute("DROP TABLE decision_staging")  # also inside an outer transaction (ON COMMIT is later)
        return stored


def _move_from_staging(cursor, table: str, columns: str, router_column: str) -> dict[str, int]:
    """The staging table's rows not yet stored, moved into the decision table: their ids by request id."""
    cursor.execute(
        f"INSERT INTO {table} ({columns}) SELECT {columns} FROM decision_staging"
        f" ON CONFLICT ({router_column}, request_id) DO NOTHING RETURNING request_id, id"
    )
    return dict(cursor.fetchall())


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
    """Blank the content of decision records older than their classification's retention; keep digests."""
    now = now or timezone.now()
    removed: dict[str, int] = {}
    for classification in DataClassification.objects.filter(retention_days__isnull=False):
        cutoff = now - dt.timedelta(days=classification.retention_days)
        count = DecisionRecord.objects.filter(
            classification=classification.slug,
            occurred_at__lt=cutoff,
            content_stored=True,
            content_removed_at__isnull=True,
        ).update(input_content="", output_content="", content_stored=False, content_removed_at=now)
        if count:
            removed[classification.slug] = count
    audit_record(
        "decisions.retention",
        object_type="audits.decisionrecord",
        object_repr="decision record content",
        after={"removed": removed, "at": now},
    )
    return removed
