"""Audits: the hash-chained, append-only audit trail; decision records from routers; violations.

Audit events are written only by ``audits.events.record`` and never changed: database triggers
refuse UPDATE and DELETE on the table (PostgreSQL and SQLite), and each event's hash covers the
previous event's hash, so ``manage.py verify_audit_chain`` finds any row changed behind the
triggers' back.
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
        indexes = [models.Index(fields=["policy_set", "task", "occurred_at"])]

    def __str__(self) -> str:
        return f"{self.request_id}: {self.task}/{self.classification} → {self.model}"

    def get_absolute_url(self) -> str:
        return reverse("audits:decision", args=[self.pk])


class ViolationKind(models.TextChoices):
    MODEL_NOT_ALLOWED = "model-not-allowed", "Model not allowed by the policy"
    UNKNOWN_POLICY = "unknown-policy", "Unknown policy version"
    EXPIRED_POLICY = "expired-policy", "Expired policy version"
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
