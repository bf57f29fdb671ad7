"""Notifications: what Steward tells a person by email and by webhook, and how they asked to be told.

A ``Notification`` is one thing worth telling one person (something awaits their decision, their
proposal was decided, a certification expires …), made at most once per ``key``. A ``Delivery``
carries one notification, or a digest of several, over one channel: an email, or a POST to one of
the person's webhooks. Deliveries are sent by Celery tasks that retry with backoff.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import models, transaction
from django.utils import timezone

from audits import events as audit
from steward import kek


class Kind(models.TextChoices):
    AWAITING_DECISION = "awaiting-decision", "Something awaits my decision"
    DECIDED = "decided", "My proposal or change request was decided"
    NEEDS_REBASE = "needs-rebase", "My change request needs a rebase"
    CERTIFICATION_EXPIRING = "certification-expiring", "A certification expires within 30 days"
    CERTIFICATION_EXPIRED = "certification-expired", "A certification has expired"
    VIOLATION = "violation", "A violation was found"
    POLICY_EXPIRING = "policy-expiring", "A policy set is close to expiry"
    ROUTER_TROUBLE = "router-trouble", "A router is stale or cannot report"
    EVALUATION_FAILED = "evaluation-failed", "A scheduled evaluation failed a gate"


ALL_KINDS = list(Kind.values)


def _all_kinds() -> list[str]:
    return list(ALL_KINDS)


class Preference(models.Model):
    """How one person wants to be told: which kinds by email and by webhook, at once or in a daily digest.

    Without a row, a person gets every kind they are concerned by, by email and webhook, at once.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preference"
    )
    email_kinds = models.JSONField(default=_all_kinds, blank=True)
    webhook_kinds = models.JSONField(default=_all_kinds, blank=True)
    digest = models.BooleanField(default=False, help_text="Collect notifications into one message a day.")
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"notification preference of {self.user}"

    def clean(self) -> None:
        for field in ("email_kinds", "webhook_kinds"):
            unknown = sorted(set(getattr(self, field)) - set(ALL_KINDS))
            if unknown:
                raise ValidationError({field: [f"Unknown notification kinds: {', '.join(unknown)}."]})

    @classmethod
    def for_user(cls, user) -> Preference:
        """The person's preference (unsaved defaults when they never chose)."""
        return cls.objects.filter(user=user).first() or cls(user=user)

    def wants(self, channel: str, kind: str) -> bool:
        return kind in (self.email_kinds if channel == Channel.EMAIL else self.webhook_kinds)

    def change(self, by, *, email_kinds: list[str], webhook_kinds: list[str], digest: bool, comment: str = "") -> None:
        """Save new choices, audited (an unsubscribe link changes them with ``by`` the person themselves)."""
        before = {"email_kinds": self.email_kinds, "webhook_kinds": self.webhook_kinds, "digest": self.digest}
        self.email_kinds = [k for k in ALL_KINDS if k in email_kinds]
        self.webhook_kinds = [k for k in ALL_KINDS if k in webhook_kinds]
        self.digest = digest
        self.updated_at = timezone.now()
        self.full_clean(exclude=["user"])
        with transaction.atomic():
            self.save()
            audit.record(
                "notification_preference.change",
                actor=by,
                obj=self,
                before=before,
                after={"email_kinds": self.email_kinds, "webhook_kinds": self.webhook_kinds, "digest": self.digest},
                comment=comment,
            )


class WebhookFormat(models.TextChoices):
    SLACK = "slack", "Slack (incoming webhook)"
    TEAMS = "teams", "Microsoft Teams (incoming webhook)"


webhook_url_validator = URLValidator(schemes=["http", "https"])


class Webhook(models.Model):
    """A URL that gets a person's notifications as JSON (Slack or Teams shaped), signed with HMAC-SHA256.

    The signing secret is shown once when the webhook is made and stored only encrypted with the
    key-encryption key (it must be read back to sign, so a hash would not do).
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhooks")
    name = models.CharField(max_length=100)
    url = models.URLField(max_length=500, validators=[webhook_url_validator])
    format = models.CharField(max_length=10, choices=WebhookFormat.choices, default=WebhookFormat.SLACK)
    secret_encrypted = models.BinaryField(editable=False)
    secret_prefix = models.CharField(max_length=12, editable=False, help_text="The first characters, to recognise it.")
    created_at = models.DateTimeField(default=timezone.now)
    removed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.name} ({self.url})"

    @classmethod
    def create(cls, user, name: str, url: str, format: str = WebhookFormat.SLACK) -> tuple[Webhook, str]:
        """A new webhook for ``user``; returns it and its raw signing secret, which is never shown again."""
        raw = "whsec_" + secrets.token_urlsafe(32)
        webhook = cls(user=user, name=name.strip(), url=url.strip(), format=format, secret_prefix=raw[:12])
        webhook.secret_encrypted = kek.encrypt(raw.encode())
        webhook.full_clean(exclude=["user", "secret_encrypted"])
        with transaction.atomic():
            webhook.save()
            audit.record(
                "webhook.create",
                actor=user,
                obj=webhook,
                after={"name": webhook.name, "url": webhook.url, "format": format, "prefix": webhook.secret_prefix},
            )
        return webhook, raw

    def remove(self, by) -> None:
        if self.removed_at is None:
            self.removed_at = timezone.now()
            with transaction.atomic():
                self.save(update_fields=["removed_at"])
                audit.record("webhook.remove", actor=by, obj=self, before={"active": True}, after={"active": False})

    def signature(self, timestamp: str, body: bytes) -> str:
        """``sha256=<hex>``: HMAC-SHA256 with the secret over ``<timestamp>.<body>`` (docs/notifications.md)."""
        secret = kek.decrypt(self.secret_encrypted)
        return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class Notification(models.Model):
    """One thing worth telling one person, made at most once per (person, key)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=30, choices=Kind.choices)
    key = models.CharField(max_length=200, help_text="What it is about, so that it is made once.")
    subject = models.CharField(max_length=300)
    body = models.TextField(blank=True)
    link = models.CharField(max_length=500, blank=True, help_text="A path on Steward (made absolute when sent).")
    created_at = models.DateTimeField(default=timezone.now)
    # Set when the notification went out at once or into a digest (so that no digest sends it again).
    dispatched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="one_notification_per_key")]
        indexes = [models.Index(fields=["dispatched_at", "user"])]

    def __str__(self) -> str:
        return self.subject


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Webhook"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class Delivery(models.Model):
    """One message over one channel: a notification, or a digest of several."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, null=True, blank=True, related_name="deliveries")
    notifications = models.ManyToManyField(Notification, related_name="deliveries")
    is_digest = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "deliveries"

    def __str__(self) -> str:
        return f"{self.channel} to {self.user} ({self.status})"


class SweepMark(models.Model):
    """How far the sweep has read a growing table (violations), so that each row is told once."""

    name = models.CharField(max_length=50, unique=True)
    last_id = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} up to {self.last_id}"
