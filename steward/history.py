"""Field-level change history of any governed object, from django-simple-history."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from django.db import models


def _shown(value: object) -> object:
    """Times to the second in UTC, like the rest of the history table."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    return value


def _tracked(record) -> list[models.Field]:
    # A time kept up to date on every save (``auto_now``) changes with everything and says nothing.
    return [field for field in record.tracked_fields if not getattr(field, "auto_now", False)]


def history_rows(obj: models.Model) -> list[dict]:
    """Changes to ``obj``, newest first: the history record (who, when, why) and its field changes.

    Non-editable fields such as a lifecycle status are included: they are what governance
    changes most. Values read as a person reads them: a status by its label, a person or another
    object by its name (one query per kind of object named), times to the second; a row whose
    values read the same before and after is no change and is left out.
    """
    records = list(obj.history.select_related("history_user").order_by("history_date", "history_id"))
    raw = []
    named: dict[type[models.Model], set] = defaultdict(set)
    for previous, record in zip([None, *records[:-1]], records, strict=True):
        if previous is None:
            raw.append((record, None))
            continue
        # Compared here rather than with diff_against, which skips non-editable fields.
        changes = [
            (field, old, new)
            for field in _tracked(record)
            if (old := getattr(previous, field.attname)) != (new := getattr(record, field.attname))
        ]
        for field, old, new in changes:
            if field.many_to_one:
                named[field.related_model].update(value for value in (old, new) if value is not None)
        raw.append((record, changes))
    names = {
        (model, pk): str(instance)
        for model, ids in named.items()
        for pk, instance in model.objects.in_bulk(ids).items()
    }

    def label(field: models.Field, value: object) -> object:
        if value is None or value == "":
            return value
        if field.many_to_one:
            return names.get((field.related_model, value), f"#{value} (deleted)")
        if field.flatchoices:
            return dict(field.flatchoices).get(value, value)
        return _shown(value)

    rows = []
    for record, changes in raw:
        if changes is None:
            shown = [{"field": "—", "old": "", "new": "created"}]
        else:
            shown = [
                {"field": field.verbose_name, "old": old, "new": new}
                for field, old, new in ((f, label(f, o), label(f, n)) for f, o, n in changes)
                if old != new
            ]
        if shown:
            rows.append({"record": record, "changes": shown})
    rows.reverse()
    return rows
