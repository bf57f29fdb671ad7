"""Plotly figures for the pages: built in Python, drawn by our own copy of plotly.js.

A figure travels to the page as JSON inside ``<script type="application/json">`` (not executed,
so the Content-Security-Policy holds) and ``static/steward/charts.js`` draws it.
"""

from __future__ import annotations

import json

import plotly.graph_objects as go
from plotly.utils import PlotlyJSONEncoder

STATUS_COLOURS = {
    "proposed": "#d29922",
    "approved": "#2da44e",
    "rejected": "#cf222e",
    "restricted": "#bc4c00",
    "deprecated": "#8c959f",
    "retired": "#57606a",
}


def figure_json(figure: go.Figure) -> str:
    layout = {"margin": {"l": 40, "r": 10, "t": 30, "b": 40}, "font": {"family": "system-ui, sans-serif"}}
    figure.update_layout(**layout)
    return json.dumps(figure.to_plotly_json(), cls=PlotlyJSONEncoder)


def stacked_bars(
    categories: list[str], series: dict[str, list[int]], title: str, colours: dict[str, str] | None = None
) -> str:
    """One bar per category, stacked by series (e.g. versions per provider, stacked by status)."""
    colours = colours or {}
    figure = go.Figure(
        data=[
            go.Bar(name=name, x=categories, y=values, marker_color=colours.get(name)) for name, values in series.items()
        ]
    )
    figure.update_layout(
        barmode="stack", title=title, legend={"orientation": "h", "y": -0.2, "traceorder": "normal"}, height=360
    )
    return figure_json(figure)
