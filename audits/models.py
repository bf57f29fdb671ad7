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

from django.db import models
from django.urls import reverse
from django.utils import timezone


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

    Content is kept or reduced to its SHA-256 digest by the classification's storage rule, and
    removed after the classification's retention period (the digests and metadata stay).
    """

    router = models.ForeignKey("portfolio.Router", on_delete=models.PROTECT, related_name="decisions")
    policy_set = models.CharField(max_length=40, db_index=True)
    request_id = models.CharField(max_length=128)
    occurred_at = models.DateTimeField(db_index=True)
    received_at = models.DateTimeField(default=timezone.now)
    task = models.CharField(max_length=60, db_index=True)
    classification = models.CharField(max_length=50, db_index=True)
    model = models.CharField(max_length=200, db_index=True)
    provider = models.CharField(max_length=50, blank=True, db_index=True)
    tier = models.CharField(max_length=30, blank=True)
    policy_version = models.PositiveIntegerField(db_index=True)
    fallback_used = models.BooleanField(default=False)
    escalated = models.BooleanField(default=False)
    latency_ms = models.PositiveIntegerField()
    input_tokens = models.PositiveIntegerField()
    output_tokens = models.PositiveIntegerField()
    cost_micro_usd = models.BigIntegerField()
    input_content = models.TextField(blank=True)
    output_content = models.TextField(blank=True)
    input_sha256 = models.CharField(max_length=64, blank=True)
    output_sha256 = models.CharField(max_length=64, blank=True)
    content_stored = models.BooleanField(default=False, help_text="False when only digests were kept.")
    content_removed_at = models.DateTimeField(null=True, blank=True)
    has_violation = models.BooleanField(default=False, db_index=True)

    class Meta:
        ordering = ["-occurred_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["router", "request_id"], name="one_decision_per_router_request"),
        ]
        indexes = [
            models.Index(fields=["policy_set", "task", "occurred_at"]),
            # The global search finds a decision by its request id alone, whichever router sent it.
            models.Index(fields=["request_id"], name="audits_decision_request_id"),
        ]

    def __str__(self) -> str:
        return f"{self.request_id}: {self.task}/{self.classification} → {self.model}"

    def get_absolute_url(self) -> str:
        return reverse("audits:decision", args=[self.pk])


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
    decision = models.ForeignKey(
        DecisionRecord, on_delete=models.CASCADE, null=True, blank=True, related_name="violations"
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
