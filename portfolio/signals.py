"""What portfolio announces to the floors above it (audits makes a checkpoint of the audit trail)."""

from __future__ import annotations

from django.db import transaction
from django.dispatch import Signal

# Sent once a new policy version is committed and signed, by publishing or re-signing:
# ``sender`` is PolicyVersion, ``version`` the new version.
policy_published = Signal()


def announce_published(version) -> None:
    """Send ``policy_published`` for ``version`` once the current transaction commits.

    Sent robustly: a receiver that fails is logged and never undoes or fails the publish.
    """
    transaction.on_commit(lambda: policy_published.send_robust(sender=type(version), version=version))
