"""Audits: the hash-chained, append-only audit trail and its signed checkpoints; decision records
from routers; violations.

Audit events are written only by ``audits.events.record`` and never changed: database triggers
refuse UPDATE, DELETE and TRUNCATE on the table and keep the chain head moving forward only
(PostgreSQL and SQLite), and each event's hash covers the previous event's hash, so
``manage.py verify_audit_chain`` finds any row changed behind the triggers' back. Someone who can
switch the triggers off could recompute every later hash; the signed checkpoints, also written to a
log outside the database, are what still disagrees then.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from django.db import models
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property


class AuditEvent(models.Model):
    """One governance action: who did what to which object, before and after, and why."""

    seq = models.BigIntegerField(unique=True, help_text="Position in the chain, without gaps.")
    at = models.DateTimeField(default=timezone.now, db_index=True)
    # Plain ids, not foreign keys: deleting a user must not rewrite the trail.
    actor_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=60, db_index=True)
    object_type = models.CharField(max_length=60, blank=True, db_index=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=300, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    comment = models.TextField(blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["-seq"]
        indexes = [models.Index(fields=["object_type", "object_id"])]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.object_repr} by {self.actor_name or 'system'}"


class AuditChainHead(models.Model):
    """The chain's newest link: one row, locked while an event is appended so links never fork."""

    last_seq = models.BigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default="0" * 64)

    def __str__(self) -> str:
        return f"audit chain at #{self.last_seq}"


class AuditKey(models.Model):
    """The Ed25519 key that signs audit checkpoints. Like the policy signing keys, its private half
    is stored only encrypted with the key-encryption key (``STEWARD_KEK``)."""

    keyid = models.CharField(max_length=64, unique=True, help_text="Hex SHA-256 of the raw public key.")
    public_key = models.CharField(max_length=64, help_text="The raw 32-byte public key, hex.")
    private_key_encrypted = models.BinaryField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"audit key {self.keyid[:12]}…"


class AuditCheckpoint(models.Model):
    """A signed statement that the audit trail held ``count`` events ending in hash ``head`` at
    ``made_at``. ``envelope`` holds the exact DSSE bytes, which are also appended to the checkpoint
    log outside the database; ``reason`` (why it was made) is not signed."""

    number = models.PositiveBigIntegerField(unique=True)
    count = models.BigIntegerField(help_text="Events in the chain: the seq of its newest event.")
    head = models.CharField(max_length=64, help_text="The hash of event #count (the genesis hash for 0).")
    made_at = models.DateTimeField()
    keyid = models.CharField(max_length=64)
    envelope = models.BinaryField()
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-number"]

    def __str__(self) -> str:
        return f"checkpoint #{self.number} at {self.made_at:%Y-%m-%d %H:%M:%S}Z ({self.count} events)"


class VerificationKind(models.TextChoices):
    INCREMENTAL = "incremental", "Incremental, from the last verified checkpoint"
    FULL = "full", "Full walk of the chain"


class AuditVerification(models.Model):
    """The result of one verification of the chain against its checkpoints: what the audit page
    shows, and where the next incremental verification starts (``checkpoint`` of the last good one)."""

    kind = models.CharField(max_length=12, choices=VerificationKind.choices)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(db_index=True)
    ok = models.BooleanField()
    from_seq = models.BigIntegerField(help_text="The first event walked.")
    through_seq = models.BigIntegerField(help_text="Verified up to this event.")
    through_hash = models.CharField(max_length=64)
    checkpoint = models.ForeignKey(
        AuditCheckpoint,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The newest checkpoint the chain was found to match.",
    )
    checkpoints_checked = models.PositiveIntegerField(default=0)
    broken_seq = models.BigIntegerField(null=True, blank=True)
    reason = models.TextField(blank=True)
    proved_by = models.CharField(max_length=300, blank=True, help_text="The checkpoint that proves the reason.")
    notes = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-finished_at", "-pk"]

    def __str__(self) -> str:
        state = "intact" if self.ok else f"broken at #{self.broken_seq}"
        return f"{self.kind} verification at {self.finished_at:%Y-%m-%d %H:%M:%S}Z: {state}"


class DecisionRecord(models.Model):
    """What a router decided for one request, under which policy version, with which model.

    Content is kept (in ``DecisionContent``) or reduced to its SHA-256 digest by the classification's
    storage rule, and removed after the classification's retention period; the digests and metadata
    stay. On PostgreSQL the table is partitioned by month of ``occurred_at`` (see migration 0010 and
    ``audits.partitions``); ``DecisionKey`` holds the (router, request id) that makes ingest idempotent.
    """

    # No foreign key in the database, here or on the key table: a check per row would cost ingest more
    # than the rest of its key claim. Routers are revoked, never deleted, and deleting one that has
    # decisions is refused (PROTECT).
    router = models.ForeignKey(
        "portfolio.Router", on_delete=models.PROTECT, related_name="decisions", db_constraint=False
    )
    policy_set = models.CharField(max_length=40)
    request_id = models.CharField(max_length=128)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now)
    task = models.CharField(max_length=60)
    classification = models.CharField(max_length=50)
    model = models.CharField(max_length=200)
    provider = models.CharField(max_length=50, blank=True)
    tier = models.CharField(max_length=30, blank=True)
    policy_version = models.PositiveIntegerField()
    fallback_used = models.BooleanField(default=False)
    escalated = models.BooleanField(default=False)
    latency_ms = models.PositiveIntegerField()
    input_tokens = models.PositiveIntegerField()
    output_tokens = models.PositiveIntegerField()
    cost_micro_usd = models.BigIntegerField()
    input_sha256 = models.CharField(max_length=64, blank=True)
    output_sha256 = models.CharField(max_length=64, blank=True)
    content_stored = models.BooleanField(
        default=False, help_text="True when the content was kept at ingest (it stays True after retention removed it)."
    )
    content_expires_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When retention removes the kept content: occurred_at plus the classification's retention at ingest.",
    )
    has_violation = models.BooleanField(default=False)

    class Meta:
        ordering = ["-occurred_at", "-pk"]
        # Why each index exists: the docstring of migration 0010.
        indexes = [
            models.Index(fields=["-occurred_at", "-id"], name="decision_newest_first"),
            models.Index(fields=["policy_set", "task", "occurred_at"]),
            models.Index(
                fields=["-occurred_at", "-id"], condition=models.Q(has_violation=True), name="decision_flagged"
            ),
            # The global search finds a decision by its request id alone, whichever router sent it.
            models.Index(fields=["request_id"], name="audits_decision_request_id"),
        ]

    def __str__(self) -> str:
        return f"{self.request_id}: {self.task}/{self.classification} → {self.model}"

    def get_absolute_url(self) -> str:
        return reverse("audits:decision", args=[self.pk])

    def read_content(self) -> DecisionContent | None:
        """The kept input and output text, or None (digest only, or removed by retention).

        One query, which names the expiry too, so PostgreSQL reads only the partition holding it."""
        if not self.content_stored:
            return None
        return DecisionContent.objects.filter(decision_id=self.pk, expires_at=self.content_expires_at).first()

    @cached_property
    def content_removed_at(self) -> dt.datetime | None:
        """When retention removed the kept content (from the log of removed ranges), or None."""
        return ContentRemovals().removed_at(self)


class DecisionContent(models.Model):
    """The input and output text of a decision whose classification keeps content.

    Apart from the decision so that retention drops whole partitions (PostgreSQL: one per day of
    ``expires_at``, and a DEFAULT partition for content without expiry) instead of rewriting rows.
    ``expires_at`` is the decision's ``content_expires_at``.
    """

    decision = models.OneToOneField(
        DecisionRecord, on_delete=models.CASCADE, primary_key=True, db_constraint=False, related_name="content"
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    input_content = models.TextField(blank=True)
    output_content = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"content of decision #{self.decision_id}"


class DecisionKey(models.Model):
    """The (router, request id) of every stored decision: what makes ingest idempotent.

    Ingest inserts a batch's keys first and writes only the decisions whose key it inserted, so two
    workers posting the same batch at the same moment store each record once."""

    pk = models.CompositePrimaryKey("router", "request_id")
    # No foreign key check per row (see ``DecisionRecord.router``) and no index of its own: the primary
    # key begins with it.
    router = models.ForeignKey(
        "portfolio.Router", on_delete=models.PROTECT, related_name="+", db_constraint=False, db_index=False
    )
    request_id = models.CharField(max_length=128)
    decision_id = models.BigIntegerField()

    def __str__(self) -> str:
        return f"{self.request_id} of router #{self.router_id}: decision #{self.decision_id}"


class ContentDrop(models.Model):
    """A range of content expiry times whose content retention removed, and when.

    The decision keeps ``content_stored`` and ``content_expires_at``: a record's content was removed
    at the first drop covering its expiry made after the record arrived."""

    range_start = models.DateTimeField()
    range_end = models.DateTimeField()
    dropped_at = models.DateTimeField()
    rows = models.BigIntegerField()

    class Meta:
        ordering = ["dropped_at", "pk"]

    def __str__(self) -> str:
        return f"content expiring {self.range_start:%Y-%m-%d %H:%M} to {self.range_end:%Y-%m-%d %H:%M} dropped"


DAY = dt.timedelta(days=1)


def day_start(moment: dt.datetime) -> dt.datetime:
    """The first instant of the UTC day of ``moment``: a daily rollup's ``day``; content partitions
    begin and end there."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


class ContentRemovals:
    """When retention removed decisions' kept content, from the log of removed ranges (read once).

    A record's content was removed by the first drop covering its ``content_expires_at`` made after
    the record arrived: a record received after its range's partition was dropped waited in the
    DEFAULT partition for a later retention run.
    """

    def __init__(self) -> None:
        self.days: dict[dt.date, list[dt.datetime]] = defaultdict(list)  # one-day partitions dropped
        self.spans: list[tuple[dt.datetime, dt.datetime, dt.datetime]] = []  # other ranges removed
        self.end: dt.datetime | None = None
        for start, end, at in ContentDrop.objects.values_list("range_start", "range_end", "dropped_at"):
            if end - start == DAY and start == day_start(start):
                self.days[start.astimezone(dt.UTC).date()].append(at)
            else:
                self.spans.append((start, end, at))
            self.end = end if self.end is None else max(self.end, end)

    def at(self, stored: bool, expires_at: dt.datetime | None, received_at: dt.datetime) -> dt.datetime | None:
        if not stored or expires_at is None or self.end is None or expires_at >= self.end:
            return None
        candidates = [at for at in self.days.get(expires_at.astimezone(dt.UTC).date(), ()) if at >= received_at]
        candidates += [at for start, end, at in self.spans if start <= expires_at < end and at >= received_at]
        return min(candidates, default=None)

    def removed_at(self, decision: DecisionRecord) -> dt.datetime | None:
        return self.at(decision.content_stored, decision.content_expires_at, decision.received_at)


class ContentTally(models.Model):
    """How many decisions' kept content expires on each (UTC) day, by classification, kept at ingest:
    retention reports what it removed by classification without reading the content it drops."""

    day = models.DateField()
    classification = models.CharField(max_length=50)
    rows = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "classification"], name="content_tally_day_class")]

    def __str__(self) -> str:
        return f"{self.rows} {self.classification} expiring {self.day}"


class ViolationKind(models.TextChoices):
    MODEL_NOT_ALLOWED = "model-not-allowed", "Model not allowed by the policy"
    UNKNOWN_POLICY = "unknown-policy", "Unknown policy version"
    EXPIRED_POLICY = "expired-policy", "Expired policy version"
    UNPUBLISHED_POLICY = "unpublished-policy", "Policy version not yet published"
    SUPERSEDED_POLICY = "superseded-policy", "Policy version superseded beyond the grace window"
    NOT_USABLE = "not-usable", "Model not usable in the compliance matrix"
    ESCALATION_RATE = "escalation-rate", "Escalation rate above the route's cap"


class Violation(models.Model):
    """A rule broken by a router's decision (or, for escalation rates, by a route over a window)."""

    kind = models.CharField(max_length=30, choices=ViolationKind.choices, db_index=True)
    # No foreign key constraint into a partitioned table; ingest writes both in one transaction.
    decision = models.ForeignKey(
        DecisionRecord,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="violations",
        db_constraint=False,
    )
    policy_set = models.CharField(max_length=40)
    task = models.CharField(max_length=60, blank=True)
    classification = models.CharField(max_length=50, blank=True)
    detail = models.TextField()
    detected_at = models.DateTimeField(default=timezone.now, db_index=True)
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-detected_at"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.detail}"


# What one rollup row sums over, beside its hour (audits.rollups reads it as GROUP).
ROLLUP_GROUP = ("policy_set", "task", "classification", "model", "provider", "tier", "policy_version", "has_violation")


class RollupSums(models.Model):
    """One group's sums over a period (``ROLLUP_GROUP`` beside the period), kept at ingest."""

    policy_set = models.CharField(max_length=40)
    task = models.CharField(max_length=60)
    classification = models.CharField(max_length=50)
    model = models.CharField(max_length=200)
    provider = models.CharField(max_length=50, blank=True)
    tier = models.CharField(max_length=30, blank=True)
    policy_version = models.PositiveIntegerField(default=0)
    has_violation = models.BooleanField(default=False)
    requests = models.BigIntegerField(default=0)
    cost_micro_usd = models.BigIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    fallbacks = models.BigIntegerField(default=0)
    escalations = models.BigIntegerField(default=0)
    violations = models.BigIntegerField(default=0)
    latency = models.JSONField(default=dict, help_text="Sparse log-bucket latency sketch: bucket index -> count.")

    class Meta:
        abstract = True


class DecisionRollup(RollupSums):
    """Hourly sums of decision records per group (``audits.rollups.GROUP``), kept at ingest; every chart
    and total about decisions reads these, and so does the change-impact preview."""

    hour = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["hour", *ROLLUP_GROUP],
                name="decision_rollup_group_hour",
            )
        ]
        indexes = [
            models.Index(fields=["policy_set", "hour"], name="decision_rollup_set_hour"),
            # Charts and totals sum these over a time range from the index alone (migration 0008).
            models.Index(
                fields=["hour"],
                include=[
                    *ROLLUP_GROUP,
                    "requests",
                    "cost_micro_usd",
                    "escalations",
                    "violations",
                ],
                name="decision_rollup_hour_sums",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}:00 {self.policy_set} {self.task} {self.model}: {self.requests}"


class DecisionDayRollup(RollupSums):
    """The same sums per UTC day, kept at ingest beside the hourly ones: a window of whole days (the
    change-impact preview's fourteen) reads a twenty-fourth of the rows, each sketch merged once."""

    day = models.DateTimeField(help_text="The day's first instant, midnight UTC.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", *ROLLUP_GROUP], name="decision_day_rollup_group")]
        indexes = [models.Index(fields=["policy_set", "day"], name="decision_day_rollup_set_day")]

    def __str__(self) -> str:
        return f"{self.day:%Y-%m-%d} {self.policy_set} {self.task} {self.model}: {self.requests}"
