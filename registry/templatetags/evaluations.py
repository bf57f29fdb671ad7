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
