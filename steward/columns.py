"""What a column can hold, read from the model field, so that input is checked against the database's
own bounds in one place instead of a second hand-kept list.

Integer ranges are those of the column types Steward's migrations create on PostgreSQL (a
``PositiveIntegerField`` is a 32-bit ``integer``), whatever database a process runs on: SQLite would
store more, and a check that passed there would fail on the production database.
"""

from __future__ import annotations

from django.db import models
from django.db.backends.base.operations import BaseDatabaseOperations

NUL = "\x00"


def field_of(model: type[models.Model], name: str) -> models.Field:
    return model._meta.get_field(name)


def integer_range(model: type[models.Model], name: str) -> tuple[int, int]:
    """The smallest and largest integer the column ``model.name`` holds."""
    field = field_of(model, name)
    return BaseDatabaseOperations.integer_field_ranges[field.get_internal_type()]


def max_length(model: type[models.Model], name: str) -> int | None:
    """The character column's length (None for text without a limit)."""
    return field_of(model, name).max_length


def unstorable_text(value: str) -> str | None:
    """Why ``value`` cannot be stored in a text column, or None when it can.

    PostgreSQL text holds no NUL character, and a lone surrogate (which JSON's ``\\ud800`` escapes
    can produce) has no UTF-8 encoding.
    """
    if NUL in value:
        return "Must not contain a NUL character (\\u0000): no text column can store one."
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "Must be valid Unicode text: a lone surrogate (\\ud800 to \\udfff) cannot be stored."
    return None
