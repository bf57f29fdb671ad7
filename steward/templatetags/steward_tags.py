"""Template helpers: money in micro-USD, token counts, sortable table headers."""

from __future__ import annotations

from decimal import Decimal

from django import template
from django.utils.html import format_html

register = template.Library()


@register.filter
def usd_per_million(micro_usd: int | None) -> str:
    """2_500_000 micro-USD → "$2.50"; sub-cent prices keep their digits ("$0.075")."""
    if micro_usd is None:
        return "—"
    dollars = Decimal(micro_usd) / Decimal(1_000_000)
    text = f"{dollars:,.6f}".rstrip("0")
    whole, _, fraction = text.partition(".")
    return f"${whole}.{fraction.ljust(2, '0')}"


@register.filter
def tokens(count: int | None) -> str:
    """128000 → "128k", 1048576 → "1M"."""
    if not count:
        return "—"
    if count >= 1_000_000:
        return f"{count / 1_000_000:.3g}M"
    if count >= 1000:
        return f"{count / 1000:.4g}k"
    return str(count)


@register.simple_tag
def sort_header(key: str, label: str, current: str, query: str, target: str = "version-table", align: str = "") -> str:
    """A column header that sorts by ``key``, toggling the direction, and keeps the other filters.

    The sorted column says so to assistive technology (``aria-sort``). With a ``target``, htmx swaps
    that element only; with ``target=""`` the link loads the page. ``align="num"`` right-aligns it.
    """
    params = "&".join(p for p in query.split("&") if p and not p.startswith("sort="))
    ascending, descending = current == key, current == f"-{key}"
    target_sort = f"-{key}" if ascending else key
    arrow = " ▲" if ascending else " ▼" if descending else ""
    href = f"?{params}{'&' if params else ''}sort={target_sort}"
    aria = format_html(' aria-sort="{}"', "ascending" if ascending else "descending") if ascending or descending else ""
    css = format_html(' class="{}"', align) if align else ""
    swap = (
        format_html(' hx-get="{}" hx-target="#{}" hx-swap="outerHTML" hx-push-url="true"', href, target)
        if target
        else ""
    )
    return format_html('<th{}{}><a href="{}"{}>{}{}</a></th>', css, aria, href, swap, label, arrow)


@register.filter
def duration(seconds) -> str:
    """Seconds (or a timedelta) in words: 42 → "42 s", 125 → "2 min 5 s", 7260 → "2 h 1 min"; None → "—"."""
    if hasattr(seconds, "total_seconds"):
        seconds = seconds.total_seconds()
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


@register.filter
def basis_points(value: int | None) -> str:
    """6846 → "68.46 %", −303 → "−3.03 %" (a real minus sign); None → "—"."""
    if value is None:
        return "—"
    text = f"{abs(value) / 100:g} %"
    return f"−{text}" if value < 0 else text
