"""Audit events for actions that have no domain function of their own: sign-ins, and edits of the
reference data (providers, models, certifications, classifications, tiers, tasks, policy sets);
and a checkpoint of the trail at every publish."""

from __future__ import annotations

from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db.models.signals import post_save
from simple_history.models import HistoricalRecords

from portfolio.signals import policy_published

from .events import record, snapshot
from .verification import make_checkpoint

# label → the fields an edit event shows.
REFERENCE_MODELS: dict[str, list[str]] = {
    "registry.provider": ["name", "slug", "website", "regions"],
    "registry.model": ["provider_id", "name", "slug", "family", "modality", "context_window", "capabilities"],
    "compliance.certification": ["name", "slug"],
    "compliance.certificationholding": [
        "certification_id",
        "provider_id",
        "model_version_id",
        "effect",
        "valid_from",
        "valid_until",
        "evidence_url",
        "evidence_file",
    ],
    "compliance.dataclassification": ["slug", "name", "level", "allowed_regions", "storage"],
    "portfolio.costtier": ["slug", "rank", "price_ceiling_micro_usd"],
    "portfolio.task": ["slug", "default_classification_id", "tier_id", "typical_input_tokens", "typical_output_tokens"],
    "portfolio.policyset": [
        "slug",
        "required_approvals",
        "require_provider_diversity",
        "auto_publish",
        "policy_lifetime_days",
    ],
}


def _actor(instance):
    """Whoever is saving: the domain function's ``_history_user``, else the signed-in person."""
    actor = getattr(instance, "_history_user", None)
    if actor is None:
        request = getattr(HistoricalRecords.context, "request", None)
        user = getattr(request, "user", None)
        actor = user if user is not None and user.is_authenticated else None
    return actor


def reference_saved(sender, instance, created: bool, raw: bool = False, **kwargs) -> None:
    if raw:
        return  # fixtures being loaded
    fields = REFERENCE_MODELS[sender._meta.label_lower]
    record(
        f"{sender._meta.model_name}.{'create' if created else 'change'}",
        actor=_actor(instance),
        obj=instance,
        after=snapshot(instance, fields),
    )


def signed_in(sender, request, user, **kwargs) -> None:
    record("auth.sign_in", actor=user, object_type="auth.user", object_id=str(user.pk), object_repr=user.get_username())


def sign_in_failed(sender, credentials: dict, request=None, **kwargs) -> None:
    username = str(credentials.get("username", ""))[:150]
    record(
        "auth.sign_in_failed",
        object_type="auth.user",
        object_repr=username,
        after={"username": username, "ip": request.META.get("REMOTE_ADDR", "") if request else ""},
    )


def locked_out(sender, request=None, username: str = "", ip_address: str = "", **kwargs) -> None:
    record(
        "auth.lockout",
        object_type="auth.user",
        object_repr=str(username or "")[:150],
        after={"username": str(username or "")[:150], "ip": ip_address or ""},
        comment="too many failed sign-ins",
    )


def checkpoint_after_publish(sender, version, **kwargs) -> None:
    """Every publish and re-sign is anchored at once, by a checkpoint that counts its audit event."""
    done = "re-signed" if version.provenance == "re-signed" else "published"
    make_checkpoint(f"{version.policy_set.slug} v{version.number} {done}")


def connect() -> None:
    from axes.signals import user_locked_out
    from django.apps import apps

    for label in REFERENCE_MODELS:
        post_save.connect(reference_saved, sender=apps.get_model(label), dispatch_uid=f"audit-{label}")
    user_logged_in.connect(signed_in, dispatch_uid="audit-sign-in")
    user_login_failed.connect(sign_in_failed, dispatch_uid="audit-sign-in-failed")
    user_locked_out.connect(locked_out, dispatch_uid="audit-lockout")
    policy_published.connect(checkpoint_after_publish, dispatch_uid="audit-checkpoint-on-publish")
