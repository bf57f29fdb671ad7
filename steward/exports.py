"""Streaming exports shared by every app: CSV rows without holding the file in memory."""

from __future__ import annotations


class Echo:
    """A file-like object that hands back what ``csv.writer`` writes, for streaming."""

    def write(self, value: str) -> str:
        return value


# What a spreadsheet may read as the start of a formula; such a cell gets a leading apostrophe.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: str) -> str:
    """Text a spreadsheet will not run as a formula (people's and routers' text ends up in exports)."""
    return f"'{value}" if value[:1] in FORMULA_STARTS else value
