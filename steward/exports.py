"""Streaming exports shared by every app: CSV rows without holding the file in memory."""

from __future__ import annotations


class Echo:
    """A file-like object that hands back what ``csv.writer`` writes, for streaming."""

    def write(self, value: str) -> str:
        return value


def spreadsheet_safe(value: str) -> str:
    """Text a spreadsheet will not run as a formula (people's and routers' text ends up in exports)."""
    return f"'{value}" if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
