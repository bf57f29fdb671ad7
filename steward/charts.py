"""Plotly figures for the pages: described in Python, drawn by our own copy of plotly.js.

A figure travels to the page as JSON inside ``<script type="application/json">`` (not executed,
so the Content-Security-Policy holds) and ``static/steward/steward.js`` draws it. Figures are
plain dicts in plotly.js's own schema: building them through plotly's Python classes validates
every attribute and costs more than the rest of a page.
"""

from __future__ import annotations

import json

STATUS_COLOURS = {
    "proposed": "#d29922",
    "approved": "#2da44e",
    "rejected": "#cf222e",
    "restricted": "#bc4c00",
    "deprecated": "#8c959f",
    "retired": "#57606a",
}

TIER_COLOURS = {"small": "#54aeff", "medium": "#0969da", "large": "#0a3069"}

BASE_LAYOUT = {
    "margin": {"l": 40, "r": 10, "t": 30, "b": 40},
    "font": {"family": "system-ui, sans-serif"},
}


def figure_json(data: list[dict], layout: dict) -> str:
    """A plotly.js figure (traces and layout) as JSON, with Steward's common layout."""
    return json.dumps({"data": data, "layout": {**BASE_LAYOUT, **layout}})


def bar_chart(
    categories: list[str],
    series: dict[str, list[int | float]],
    title: str,
    *,
    barmode: str = "stack",
    colours: dict[str, str] | None = None,
    height: int = 360,
    layout: dict | None = None,
) -> str:
    """Bars per category, one trace per series, stacked or grouped."""
    colours = colours or {}
    data = [
        {"type": "bar", "name": name, "x": categories, "y": values}
        | ({"marker": {"color": colours[name]}} if name in colours else {})
        for name, values in series.items()
    ]
    return figure_json(
        data,
        {
            "barmode": barmode,
            "title": {"text": title},
            "legend": {"orientation": "h", "y": -0.2, "traceorder": "normal"},
            "height": height,
            **(layout or {}),
        },
    )
