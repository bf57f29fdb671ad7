"""Field-level change history of any governed object, from django-simple-history."""

from __future__ import annotations

import datetime as dt

from django.db import models


def _shown(value: object) -> object:
    """Times to the second in UTC, like the rest of the history table."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    return value


def history_rows(obj: models.Model) -> list[dict]:
    """Changes to ``obj``, newest first: the history record (who, when, why) and its field changes.

    Non-editable fields such as a lifecycle status are included: they are what governance
    changes most.
    """
    records = list(obj.history.select_related("history_user").order_by("history_date", "history_id"))
    rows = []
    for previous, record in zip([None, *records[:-1]], records, strict=True):
        if previous is None:
            changes = [{"field": "—", "old": "", "new": "created"}]
        else:
            # Compared here rather than with diff_against, which skips non-editable fields.
            changes = [
                {"field": field.verbose_name, "old": _shown(old), "new": _shown(new)}
                for field in record.tracked_fields
                if (old := getattr(previous, field.attname)) != (new := getattr(record, field.attname))
            ]
        if changes:
            rows.append({"record": record, "changes": changes})
    rows.reverse()
    return rows
