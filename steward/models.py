"""Personal API tokens: how engineers and CI pipelines authenticate to the REST API."""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

TOKEN_PREFIX = "stw_"


def hash_token(raw: str) -> str:
    """Tokens are long random strings, so one round of SHA-256 is enough to store them safely."""
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    """A personal API token. Only its hash is stored; the token itself is shown once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, help_text="The first characters, to recognise a token.")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def issue(cls, user, name: str) -> tuple[ApiToken, str]:
        """Create a token for ``user``; returns the row and the raw token, which is never stored."""
        from audits.events import record

        raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with transaction.atomic():
            token = cls.objects.create(user=user, name=name, prefix=raw[:12], token_hash=hash_token(raw))
            record("api_token.issue", actor=user, obj=token, after={"name": name, "prefix": token.prefix})
        return token, raw

    @classmethod
    def user_for(cls, raw: str):
        """The active user a raw token belongs to, or None."""
        token = (
            cls.objects.select_related("user")
            .filter(token_hash=hash_token(raw), revoked_at__isnull=True, user__is_active=True)
            .first()
        )
        if token is None:
            return None
        now = timezone.now()
        # Record use at most once a minute, not on every request.
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            cls.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def revoke(self, by=None) -> None:
        from audits.events import record

        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            with transaction.atomic():
                self.save(update_fields=["revoked_at"])
                record("api_token.revoke", actor=by or self.user, obj=self, after={"revoked": True})
