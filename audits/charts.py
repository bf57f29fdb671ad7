"""Charts of decision records: volume and cost per day by tier, provider or model, escalation rate
by task, violations found per day by kind.

The decision charts read the daily rollups (``DecisionDayRollup``), never the records: each figure
is one query summing a group's days in the database (``values`` + ``annotate``), one row per group
and day whatever the number of records. The violations chart reads the violations by when
they were found (their own columns, no join to the records).
"""

from __future__ import annotations

from collections import defaultdict

from django.db.models import Count, QuerySet, Sum
from django.db.models.functions import TruncDay

from registry.models import known_tiers
from steward.charts import TIER_COLOURS, bar_chart, figure_json

from .models import DecisionDayRollup, Violation, ViolationKind

# By what the daily bars are stacked; the default shows dependence on one provider at a glance.
GROUPINGS = {"provider": "provider", "tier": "tier", "model": "model"}
DEFAULT_GROUPING = "provider"
MOST_MODELS = 8  # more models than this and the rest are stacked as "other"
KIND_COLOURS = {
    ViolationKind.MODEL_NOT_ALLOWED: "#cf222e",
    ViolationKind.UNKNOWN_POLICY: "#8250df",
    ViolationKind.EXPIRED_POLICY: "#bc4c00",
    ViolationKind.UNPUBLISHED_POLICY: "#a475f9",
    ViolationKind.SUPERSEDED_POLICY: "#e16f24",
    ViolationKind.NOT_USABLE: "#d29922",
    ViolationKind.ESCALATION_RATE: "#0969da",
}
HEIGHT = 320
DAY_AXIS = {"xaxis": {"type": "date", "tickformat": "%b %d"}}


def _daily(rows: list[dict], group: str, measure: str, order: list[str]) -> tuple[list[str], dict[str, list]]:
    days = sorted({row["day"] for row in rows})
    index = {day: position for position, day in enumerate(days)}
    series: dict[str, list] = defaultdict(lambda: [0] * len(days))
    for row in rows:
        series[row[group]][index[row["day"]]] += row[measure]
    return [day.date().isoformat() for day in days], {name: series[name] for name in order if name in series}


def decision_charts(
    rollups: QuerySet[DecisionDayRollup], grouping: str, violations: QuerySet[Violation] | None
) -> dict:
    """The explorer's figures as plotly JSON: decisions and cost per day, stacked by ``grouping``;
    escalation rate by task (from ``rollups``); violations found per day by kind (from ``violations``,
    not drawn when None)."""
    return {
        **daily_charts(rollups, grouping),
        "escalation": escalation_chart(rollups),
        "violations": violations_chart(violations) if violations is not None else None,
    }


def daily_charts(rollups: QuerySet[DecisionDayRollup], grouping: str) -> dict:
    """Decisions and cost per day stacked by ``grouping`` (one query), and whether there were none."""
    group = GROUPINGS.get(grouping, GROUPINGS[DEFAULT_GROUPING])
    rows = list(
        rollups.values("day", group).annotate(n=Sum("requests"), cost=Sum("cost_micro_usd")).order_by("day", group)
    )
    totals: dict[str, int] = defaultdict(int)
    for row in rows:
        row[group] = row[group] or "(none)"
        row["usd"] = (row["cost"] or 0) / 1_000_000
        totals[row[group]] += row["n"]
    order = sorted(totals, key=lambda name: (-totals[name], name))
    if group == "tier":
        ranks = known_tiers()
        order = sorted(totals, key=lambda tier: (ranks.index(tier) if tier in ranks else len(ranks), tier))
    elif group == "model" and len(order) > MOST_MODELS:
        kept = set(order[: MOST_MODELS - 1])
        for row in rows:
            if row[group] not in kept:
                row[group] = "other"
        order = [*order[: MOST_MODELS - 1], "other"]
    colours = TIER_COLOURS if group == "tier" else None
    days, counts = _daily(rows, group, "n", order)
    _, cost = _daily(rows, group, "usd", order)
    layout, height = dict(DAY_AXIS), HEIGHT
    if group == "model":
        # Model refs are long: their legend takes a line each, so the chart grows to keep its bars readable.
        height += 18 * len(order)
        layout["legend"] = {"orientation": "h", "y": -0.12, "traceorder": "normal", "font": {"size": 11}}
    return {
        "decisions": bar_chart(
            days,
            counts,
            f"Decisions per day by {group}",
            colours=colours,
            height=height,
            layout={**layout, "yaxis": {"title": {"text": "decisions"}, "rangemode": "tozero"}},
        ),
        "cost": bar_chart(
            days,
            cost,
            f"Cost per day by {group} (USD)",
            colours=colours,
            height=height,
            layout={**layout, "yaxis": {"title": {"text": "USD"}, "tickprefix": "$", "rangemode": "tozero"}},
        ),
        "empty": not rows,
    }


def escalation_chart(rollups: QuerySet[DecisionDayRollup]) -> str:
    rows = rollups.order_by().values("task").annotate(n=Sum("requests"), escalated=Sum("escalations"))
    # Basis points, as the policy's caps are written; shown as percent. Highest at the top.
    rates = sorted(
        ((row["task"], row["escalated"] * 10_000 // row["n"], row["n"]) for row in rows if row["n"]),
        key=lambda item: (item[1], item[0]),
    )
    data = [
        {
            "type": "bar",
            "orientation": "h",
            "name": "escalation rate",
            "y": [task for task, _, _ in rates],
            "x": [bp / 100 for _, bp, _ in rates],
            "customdata": [[bp, n] for _, bp, n in rates],
            "hovertemplate": "%{y}: %{x:.2f}% (%{customdata[0]} bp of %{customdata[1]} decisions)<extra></extra>",
            "marker": {"color": "#bc4c00"},
        }
    ]
    return figure_json(
        data,
        {
            "title": {"text": "Escalation rate by task (%)"},
            "height": HEIGHT,
            "showlegend": False,
            "xaxis": {"title": {"text": "% of decisions escalated"}, "ticksuffix": "%", "rangemode": "tozero"},
            "yaxis": {"automargin": True},
        },
    )


def violations_chart(violations: QuerySet[Violation]) -> str:
    """Violations found per day by kind (see ``filters.violations_for``)."""
    rows = list(
        violations.annotate(day=TruncDay("detected_at"))
        .values("day", "kind")
        .annotate(n=Count("pk"))
        .order_by("day", "kind")
    )
    days, series = _daily(rows, "kind", "n", list(ViolationKind.values))
    labels = dict(ViolationKind.choices)
    return bar_chart(
        days,
        {labels[kind]: values for kind, values in series.items()},
        "Violations found per day by kind",
        colours={labels[kind]: colour for kind, colour in KIND_COLOURS.items()},
        height=HEIGHT,
        layout={**DAY_AXIS, "yaxis": {"title": {"text": "violations"}, "rangemode": "tozero"}},
    )
