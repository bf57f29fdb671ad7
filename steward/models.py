"""Personal API tokens: how engineers and CI pipelines authenticate to the REST API."""

from __future__ import annotations

import datetime as dt
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
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: the token does not expire.")
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def issue(cls, user, name: str, expires_in_days: int | None = None) -> tuple[ApiToken, str]:
        """Create a token for ``user``, valid for ``expires_in_days`` (None: until revoked); returns the
        row and the raw token, which is never stored."""
        from audits.events import record

        raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = timezone.now()
        expires_at = now + dt.timedelta(days=expires_in_days) if expires_in_days else None
        with transaction.atomic():
            token = cls.objects.create(
                user=user,
                name=name,
                prefix=raw[:12],
                token_hash=hash_token(raw),
                created_at=now,
                expires_at=expires_at,
            )
            record(
                "api_token.issue",
                actor=user,
                obj=token,
                after={"name": name, "prefix": token.prefix, "expires_at": expires_at},
            )
        return token, raw

    @classmethod
    def user_for(cls, raw: str):
        """The active user a raw token belongs to, or None (unknown, revoked or expired)."""
        now = timezone.now()
        token = (
            cls.objects.select_related("user")
            .filter(token_hash=hash_token(raw), revoked_at__isnull=True, user__is_active=True)
            .filter(models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now))
            .first()
        )
        if token is None:
            return None
        # Record use at most once a minute, not on every request.
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            cls.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and not self.is_expired

    def revoke(self, by=None) -> None:
        from audits.events import record

        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            with transaction.atomic():
                self.save(update_fields=["revoked_at"])
                record("api_token.revoke", actor=by or self.user, obj=self, after={"revoked": True})
