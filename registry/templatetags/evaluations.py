"""Template helpers for evaluations: scores in points, durations in words."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def points(score_bp: int | float | None) -> str:
    """A score in basis points as points out of 100: 9166 → "91.7"; None (or nothing) → "—"."""
    if not isinstance(score_bp, int | float):
        return "—"
    return f"{score_bp / 100:.1f}"


@register.filter
def duration(seconds: int | float | None) -> str:
    """Seconds in words: 42 → "42 s", 125 → "2 min 5 s", 7260 → "2 h 1 min"; None (or nothing) → "—"."""
    if not isinstance(seconds, int | float):
        return "—"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"
