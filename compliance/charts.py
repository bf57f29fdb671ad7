"""Plotly figures of the compliance pages: the matrix's coverage by classification and tier."""

from __future__ import annotations

from collections import Counter

from registry.models import known_tiers
from steward.charts import TIER_COLOURS, bar_chart, count_axis

from .matrix import Matrix
from .models import DataClassification


def coverage_chart(matrix: Matrix, rows: list, classifications: list[DataClassification]) -> str:
    """Grouped bars: usable model versions per classification, one series per cost tier."""
    order = known_tiers()
    tiers = sorted(
        {version.cost_tier for version in matrix.versions},
        key=lambda tier: (order.index(tier) if tier in order else len(order), tier),
    )
    usable = Counter(
        (version.cost_tier, classification.pk)
        for version, cells in rows
        for classification, verdict in cells
        if verdict.usable
    )
    slugs = [c.slug for c in classifications]
    return bar_chart(
        slugs,
        {tier: [usable[(tier, c.pk)] for c in classifications] for tier in tiers},
        "Usable model versions per classification and cost tier",
        barmode="group",
        colours=TIER_COLOURS,
        height=260,
        layout={
            "yaxis": count_axis(max(usable.values(), default=0), "usable versions"),
            "legend": {"orientation": "h", "y": -0.25, "title": {"text": "tier "}},
        },
    )
