"""Paging for every list: page sizes from the request, and keyset pages for tables of millions.

Keyset pages (``?older=`` / ``?newer=`` cursors on the listing's order) never use OFFSET nor a COUNT
per page, so the ten-thousandth page of millions of rows costs what the first does.
"""

from __future__ import annotations

import datetime as dt
import functools
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.db.models import Q, QuerySet
from django.http import HttpRequest, QueryDict
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination

PAGE_SIZE = 25
MAX_PAGE_SIZE = 500


def page_size(request: HttpRequest, default: int = PAGE_SIZE) -> int:
    """Rows per page from ``?per_page=`` (1 to MAX_PAGE_SIZE), else ``default``."""
    try:
        size = int(request.GET.get("per_page", default))
    except ValueError:
        return default
    return max(1, min(size, MAX_PAGE_SIZE))


WHOLE_NUMBER = re.compile(r"[0-9]{1,18}")


class ApiPagination(LimitOffsetPagination):
    """``?limit=`` (1 to MAX_PAGE_SIZE) and ``?offset=`` for every API list; anything else is a 400
    naming the parameter, never a silent default nor a LIMIT the database cannot hold."""

    max_limit = MAX_PAGE_SIZE

    def _whole_number(self, request, name: str, least: int, most: int | None) -> int | None:
        raw = request.query_params.get(name)
        if raw is None or raw == "":
            return None
        value = int(raw) if WHOLE_NUMBER.fullmatch(raw) else None
        if value is None or value < least or (most is not None and value > most):
            rule = f"from {least} to {most}" if most is not None else f"{least} or more"
            raise ValidationError({name: [f"Must be a whole number {rule}; got {raw[:40]!r}."]})
        return value

    def get_limit(self, request) -> int:
        limit = self._whole_number(request, self.limit_query_param, 1, self.max_limit)
        return self.default_limit if limit is None else limit

    def get_offset(self, request) -> int:
        return self._whole_number(request, self.offset_query_param, 0, None) or 0

    def get_schema_operation_parameters(self, view) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.limit_query_param:
                parameter["schema"].update({"minimum": 1, "maximum": self.max_limit, "default": self.default_limit})
            elif parameter["name"] == self.offset_query_param:
                parameter["schema"].update({"minimum": 0, "maximum": 10**18 - 1})
        return parameters


# --- keyset pages ---------------------------------------------------------------------------------

CURSORS = ("older", "newer")
KEYSET_PAGE_SIZE = 50

# A listing's order: (field, parse the field's cursor text) pairs, unique as a whole.
Key = tuple[tuple[str, Callable[[str], Any]], ...]


@dataclass
class KeysetPage:
    rows: list
    newer: str  # the cursor of the page before this one ("" on the first page)
    older: str  # the cursor of the page after this one ("" on the last page)

    @property
    def has_other_pages(self) -> bool:
        return bool(self.newer or self.older)


def _cursor(row: Any, key: Key) -> str:
    values = [getattr(row, field) for field, _ in key]
    return "~".join(value.isoformat() if isinstance(value, dt.datetime) else str(value) for value in values)


def _parse_cursor(text: str, key: Key) -> list | None:
    parts = text.split("~")
    if len(parts) != len(key):
        return None
    try:
        values = [parse(part) for (_, parse), part in zip(key, parts, strict=True)]
    except ValueError:
        return None
    return None if any(value is None for value in values) else values


def _beyond(key: Key, values: list, lookup: str) -> Q:
    """Rows past ``values`` in the key's lexicographic order (``lt``: older, ``gt``: newer).

    The leading column's bound (``<=`` / ``>=``) is repeated outside the OR so that its index
    serves the range: without it PostgreSQL reads the index from the start for a deep page.
    """
    conditions = []
    for position, (field, _) in enumerate(key):
        equal = {name: value for (name, _), value in zip(key[:position], values, strict=False)}
        conditions.append(Q(**equal, **{f"{field}__{lookup}": values[position]}))
    beyond = functools.reduce(operator.or_, conditions)
    if len(key) > 1:
        beyond &= Q(**{f"{key[0][0]}__{lookup}e": values[0]})
    return beyond


def keyset_page(queryset: QuerySet, key: Key, request: HttpRequest, size: int = KEYSET_PAGE_SIZE) -> KeysetPage:
    """One page of ``queryset``, newest first by ``key`` (unique as a whole), from the request's cursor."""
    descending = [f"-{field}" for field, _ in key]
    ascending = [field for field, _ in key]
    older = _parse_cursor(request.GET.get("older", ""), key)
    newer = None if older else _parse_cursor(request.GET.get("newer", ""), key)
    if newer is not None:
        rows = list(queryset.filter(_beyond(key, newer, "gt")).order_by(*ascending)[: size + 1])
        more = len(rows) > size
        rows = rows[:size][::-1]
        return KeysetPage(rows, _cursor(rows[0], key) if more and rows else "", _cursor(rows[-1], key) if rows else "")
    if older is not None:
        queryset = queryset.filter(_beyond(key, older, "lt"))
    rows = list(queryset.order_by(*descending)[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return KeysetPage(
        rows,
        _cursor(rows[0], key) if older is not None and rows else "",
        _cursor(rows[-1], key) if more else "",
    )


def query_without_cursors(request: HttpRequest, data: QueryDict | None = None, drop: Iterable[str] = CURSORS) -> str:
    """The request's filters as a query string, without cursors (and without empty values)."""
    data = data if data is not None else request.GET
    return urlencode([(k, v) for k, values in data.lists() for v in values if v != "" and k not in drop])
