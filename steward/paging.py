"""Paging for every list: page sizes from the request, and keyset pages for tables of millions."""

from __future__ import annotations

from django.http import HttpRequest

PAGE_SIZE = 25
MAX_PAGE_SIZE = 500


def page_size(request: HttpRequest, default: int = PAGE_SIZE) -> int:
    """Rows per page from ``?per_page=`` (1 to MAX_PAGE_SIZE), else ``default``."""
    try:
        size = int(request.GET.get("per_page", default))
    except ValueError:
        return default
    return max(1, min(size, MAX_PAGE_SIZE))
