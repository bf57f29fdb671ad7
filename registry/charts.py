"""Plotly figures of the registry's pages: a version's score and latency over time."""

from __future__ import annotations

from steward.charts import figure_json

from .evaluation.runs import latest_runs
from .models import EvaluationRun, ModelVersion, RunStatus

VERSION_CHART_RUNS = 500


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
    score_data = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": name,
            "x": [run.finished_at.isoformat() for run in suite_runs],
            "y": [run.score_bp / 100 if run.score_bp is not None else None for run in suite_runs],
            "text": [f"run #{run.pk}" for run in suite_runs],
            "hovertemplate": "%{text}: %{y:.1f}<extra>" + name + "</extra>",
        }
        for name, suite_runs in by_suite.items()
    ]
    timed = [run for run in runs if run.latency_p50_ms is not None]
    latency_data = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": label,
            "x": [run.finished_at.isoformat() for run in timed],
            "y": [getattr(run, field) for run in timed],
            "text": [f"run #{run.pk} {run.suite.slug}" for run in timed],
            "hovertemplate": "%{text}: %{y} ms<extra>" + label + "</extra>",
        }
        for label, field in (("p50", "latency_p50_ms"), ("p95", "latency_p95_ms"))
    ]
    legend = {"orientation": "h", "y": -0.25}
    return {
        "latest_runs": latest,
        "score_chart": figure_json(
            score_data,
            {
                "title": {"text": "Score over time"},
                "yaxis": {"title": {"text": "score (out of 100)"}, "range": [0, 101]},
                "legend": legend,
                "height": 340,
            },
        ),
        "latency_chart": figure_json(
            latency_data,
            {
                "title": {"text": "Latency over time"},
                "yaxis": {"title": {"text": "ms"}, "rangemode": "tozero"},
                "legend": legend,
                "height": 340,
            },
        ),
    }
