"""Plotly figures of the registry's pages: a version's score and latency over time."""

from __future__ import annotations

from steward.charts import figure_json, time_axis

from .evaluation.runs import latest_runs
from .models import EvaluationRun, ModelVersion, RunStatus

VERSION_CHART_RUNS = 500
SUITE_COLOURS = ["#0969da", "#1a7f37", "#bf8700", "#8250df", "#cf222e", "#1b7c83", "#bc4c00", "#57606a"]


def version_figures(version: ModelVersion) -> dict:
    """The latest score per suite with its figures, and the score and latency charts over time."""
    runs = list(
        EvaluationRun.objects.filter(model_version=version, status=RunStatus.COMPLETED)
        .select_related("suite")
        .order_by("-finished_at")[:VERSION_CHART_RUNS]
    )
    runs.reverse()
    latest = latest_runs(version)
    if not runs:
        return {"latest_runs": latest, "score_chart": None, "latency_chart": None}
    by_suite: dict[str, list[EvaluationRun]] = {}
    for run in runs:
        by_suite.setdefault(run.suite.name, []).append(run)
    # One line per suite in both charts, in the suite's colour; latency p50 solid and p95 dotted.
    score_data, latency_data = [], []
    for index, (name, suite_runs) in enumerate(by_suite.items()):
        colour = SUITE_COLOURS[index % len(SUITE_COLOURS)]
        score_data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": name,
                "x": [run.finished_at.isoformat() for run in suite_runs],
                "y": [run.score_bp / 100 if run.score_bp is not None else None for run in suite_runs],
                "line": {"color": colour},
                "marker": {"color": colour},
                "text": [f"run #{run.pk}" for run in suite_runs],
                "hovertemplate": "%{text}: %{y:.1f}<extra>" + name + "</extra>",
            }
        )
        timed = [run for run in suite_runs if run.latency_p50_ms is not None]
        if not timed:
            continue
        for label, field, dash in (("p50", "latency_p50_ms", "solid"), ("p95", "latency_p95_ms", "dot")):
            latency_data.append(
                {
                    "type": "scatter",
                    "mode": "lines+markers",
                    "name": f"{name} {label}",
                    "legendgroup": name,
                    "x": [run.finished_at.isoformat() for run in timed],
                    "y": [getattr(run, field) for run in timed],
                    "line": {"color": colour, "dash": dash},
                    "marker": {"color": colour},
                    "text": [f"run #{run.pk}" for run in timed],
                    "hovertemplate": "%{text}: %{y} ms<extra>" + f"{name} {label}" + "</extra>",
                }
            )
    slowest = max((run.latency_p95_ms or run.latency_p50_ms or 0 for run in runs), default=0)
    # A time axis at least a day wide, so one run is a point in a day, not ticks a millisecond apart.
    x_axis = time_axis([run.finished_at for run in runs])
    legend = {"orientation": "h", "y": -0.25}
    return {
        "latest_runs": latest,
        "score_chart": figure_json(
            score_data,
            {
                "title": {"text": "Score over time"},
                "xaxis": x_axis,
                "yaxis": {"title": {"text": "score (out of 100)"}, "range": [0, 101]},
                "legend": legend,
                "height": 340,
            },
        ),
        "latency_chart": figure_json(
            latency_data,
            {
                "title": {"text": "Latency over time, per suite"},
                "xaxis": x_axis,
                # From zero to above the slowest run, whatever the number of points.
                "yaxis": {"title": {"text": "ms"}, "range": [0, max(slowest, 1) * 1.15]},
                "legend": legend,
                "height": 340,
            },
        ),
    }
