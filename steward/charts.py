"""Plotly figures for the pages: described in Python, drawn by our own copy of plotly.js.

A figure travels to the page as JSON inside ``<script type="application/json">`` (not executed,
so the Content-Security-Policy holds) and ``static/steward/steward.js`` draws it. Figures are
plain dicts in plotly.js's own schema: building them through plotly's Python classes validates
every attribute and costs more than the rest of a page.
"""

from __future__ import annotations

import datetime as dt
import json
import math

STATUS_COLOURS = {
    "proposed": "#d29922",
    "approved": "#2da44e",
    "rejected": "#cf222e",
    "restricted": "#bc4c00",
    "deprecated": "#8c959f",
    "retired": "#57606a",
    "withdrawn": "#afb8c1",
}

TIER_COLOURS = {"small": "#54aeff", "medium": "#0969da", "large": "#0a3069"}

BASE_LAYOUT = {
    "margin": {"l": 40, "r": 10, "t": 30, "b": 40},
    "font": {"family": "system-ui, sans-serif"},
}


# The shortest time axis drawn: one run (or a few within minutes) would otherwise get ticks a
# fraction of a millisecond apart.
SHORTEST_TIME_RANGE = dt.timedelta(days=1)


def figure_json(data: list[dict], layout: dict) -> str:
    """A plotly.js figure (traces and layout) as JSON, with Steward's common layout.

    Both axes grow their margins to fit their labels (``automargin``), so that a long category
    such as a provider's name is never clipped.
    """
    axes = {axis: {"automargin": True, **layout.get(axis, {})} for axis in ("xaxis", "yaxis")}
    return json.dumps({"data": data, "layout": {**BASE_LAYOUT, **layout, **axes}})


def count_axis(most: int | float, title: str = "") -> dict:
    """A y axis for counts: whole-number ticks from zero (never 0.5), visible even when all are zero."""
    most = max(most, 0)
    return {
        **({"title": {"text": title}} if title else {}),
        "rangemode": "tozero",
        "range": [0, max(most, 1) * 1.1],
        "tick0": 0,
        "dtick": max(1, math.ceil(most / 6)),
        "tickformat": "d",
    }


def time_axis(moments: list[dt.datetime], title: str = "") -> dict:
    """A date axis over ``moments``, at least a day wide (centred on them when they are closer)."""
    axis: dict = {"type": "date", **({"title": {"text": title}} if title else {})}
    if moments:
        first, last = min(moments), max(moments)
        pad = max(SHORTEST_TIME_RANGE - (last - first), dt.timedelta(0)) / 2
        axis["range"] = [(first - pad).isoformat(), (last + pad).isoformat()]
    return axis


def bar_chart(
    categories: list[str],
    series: dict[str, list[int | float]],
    title: str,
    *,
    barmode: str = "stack",
    colours: dict[str, str] | None = None,
    height: int = 360,
    layout: dict | None = None,
    counts: bool = False,
) -> str:
    """Bars per category, one trace per series, stacked or grouped; ``counts`` gives the values
    axis whole-number ticks (see ``count_axis``)."""
    colours = colours or {}
    data = [
        {"type": "bar", "name": name, "x": categories, "y": values}
        | ({"marker": {"color": colours[name]}} if name in colours else {})
        for name, values in series.items()
    ]
    layout = dict(layout or {})
    if counts:
        totals = [sum(column) for column in zip(*series.values(), strict=True)] if barmode == "stack" else []
        most = max(totals or [value for values in series.values() for value in values], default=0)
        layout["yaxis"] = {**count_axis(most), **layout.get("yaxis", {})}
    return figure_json(
        data,
        {
            "barmode": barmode,
            "title": {"text": title},
            "legend": {"orientation": "h", "y": -0.2, "traceorder": "normal"},
            "height": height,
            **layout,
        },
    )
