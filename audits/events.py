"""Appending to the audit trail: the one entry point every app may call.

``record`` is the one way in: every governance action calls it inside the action's own
transaction, so an action and its audit event are written together or not at all. Checkpoints and
verification (``audits.verification``) read what this writes.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import decimal
import hashlib
import logging
from typing import Any

from django.db import models, transaction
from django.utils import timezone

from steward_client.canonical import canonical_json

from .models import AuditChainHead, AuditEvent

logger = logging.getLogger(__name__)

GENESIS = "0" * 64

# The id of the HTTP request being served, set by steward.middleware.RequestIdMiddleware.
current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("steward_request_id", default="")


def _plain(value: Any) -> Any:
    """Values as the hash sees them: JSON types only (times as RFC 3339, decimals and floats as text)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_plain(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float | decimal.Decimal):
        return str(value)
    if isinstance(value, models.Model):
        return str(value.pk)
    if value is None or isinstance(value, str | int | bool):
        return value
    return str(value)


def _content(event: AuditEvent) -> dict:
    """The fields an event's hash covers."""
    return {
        "seq": event.seq,
        "at": _plain(event.at),
        "actor_id": event.actor_id,
        "actor_name": event.actor_name,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "object_repr": event.object_repr,
        "before": _plain(event.before),
        "after": _plain(event.after),
        "comment": event.comment,
        "request_id": event.request_id,
    }


def event_hash(prev_hash: str, event: AuditEvent) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + canonical_json(_content(event))).hexdigest()


def snapshot(obj: models.Model, fields: list[str]) -> dict:
    """Selected fields of ``obj`` as plain values, for an event's before and after."""
    return {field: _plain(getattr(obj, field)) for field in fields}


def record(
    action: str,
    *,
    actor=None,
    obj: models.Model | None = None,
    object_type: str = "",
    object_id: str = "",
    object_repr: str = "",
    before: dict | None = None,
    after: dict | None = None,
    comment: str = "",
) -> AuditEvent:
    """Append an event to the chain. Call it inside the transaction of the action it records."""
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or str(obj.pk)
        object_repr = object_repr or str(obj)[:300]
    with transaction.atomic():
        head, _ = AuditChainHead.objects.select_for_update().get_or_create(pk=1)
        event = AuditEvent(
            seq=head.last_seq + 1,
            at=timezone.now(),
            actor_id=actor.pk if actor is not None and actor.pk is not None else None,
            actor_name=actor.get_username() if actor is not None and actor.pk is not None else "",
            action=action,
            object_type=object_type,
            object_id=object_id,
            object_repr=object_repr[:300],
            before=_plain(before) if before is not None else None,
            after=_plain(after) if after is not None else None,
            comment=comment or "",
            request_id=current_request_id.get(),
            prev_hash=head.last_hash,
        )
        event.hash = event_hash(head.last_hash, event)
        event.save()
        head.last_seq = event.seq
        head.last_hash = event.hash
        head.save(update_fields=["last_seq", "last_hash"])
    return event
