"""Plotly figures of the dashboard."""

from __future__ import annotations

from collections import Counter

from django.db.models import Count

from registry.models import ModelVersion, Status
from steward.charts import STATUS_COLOURS, bar_chart


def versions_by_provider_chart() -> str:
    """Stacked bars: each provider's model versions by lifecycle status."""
    rows = (
        ModelVersion.objects.values("model__provider__name", "status")
        .annotate(n=Count("id"))
        .order_by("model__provider__name")
    )
    providers = sorted({row["model__provider__name"] for row in rows})
    counts = Counter({(row["model__provider__name"], row["status"]): row["n"] for row in rows})
    series = {
        status.label: [counts[(provider, status.value)] for provider in providers]
        for status in Status
        if any(counts[(provider, status.value)] for provider in providers)
    }
    colours = {status.label: STATUS_COLOURS[status.value] for status in Status}
    return bar_chart(providers, series, "Model versions by provider and status", colours=colours, counts=True)
