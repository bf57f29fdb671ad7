"""Plotly figures of portfolio's pages: provider shares of a policy's routes, the fleet's versions,
and cost against score per task (the section portfolio adds to the registry's suites page)."""

from __future__ import annotations

from collections import Counter

from django.http import HttpRequest
from django.template.loader import render_to_string

from steward.charts import bar_chart, figure_json

from .models import Task
from .recommendations import Standing, pareto_frontier, standings_by_task

PROVIDER_COLOURS = ["#0969da", "#1a7f37", "#bf8700", "#8250df", "#cf222e", "#1b7c83", "#bc4c00", "#57606a"]


def provider_concentration(rows: list) -> tuple[list[dict], str]:
    """Each provider's share of the routes (as primary), as rows and as a plotly pie chart."""
    counts = Counter(row.provider for row in rows)
    shares = [
        {"provider": provider, "route_count": n, "percent": round(100 * n / len(rows))}
        for provider, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]
    chart = figure_json(
        [
            {
                "type": "pie",
                "labels": [share["provider"] for share in shares],
                "values": [share["route_count"] for share in shares],
                "hole": 0.45,
                "sort": False,
                # Shares on the slices, names in the legend: a name inside or beside a slice is
                # cut off ("Azure OpenA…") when the slice or the chart is small.
                "textinfo": "percent",
                "textposition": "inside",
                "automargin": True,
                "hovertemplate": "%{label}: %{value} route(s), %{percent}<extra></extra>",
                "marker": {"colors": PROVIDER_COLOURS[: len(shares)]},
            }
        ],
        {
            "title": {"text": "Routes per provider (primary model)"},
            "height": 320,
            "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
            "showlegend": True,
            "legend": {"orientation": "h", "y": -0.05, "yanchor": "top"},
        },
    )
    return shares, chart


def fleet_chart(rows: list[dict]) -> str:
    """How many active routers run each version, per policy set."""
    counts = Counter(
        (
            row["router"].policy_set.slug,
            f"v{row['router'].applied_version}" if row["router"].applied_version else "none yet",
        )
        for row in rows
        if row["router"].is_active
    )
    sets = sorted({policy_set for policy_set, _ in counts})
    versions = sorted(
        {version for _, version in counts}, key=lambda v: (v == "none yet", int(v[1:]) if v[1:].isdigit() else 0)
    )
    return bar_chart(
        sets,
        {version: [counts[(s, version)] for s in sets] for version in versions},
        "Which policy version the fleet runs",
        height=300,
        counts=True,
        layout={"yaxis": {"title": {"text": "routers"}}},
    )


def cost_score_figure(task, standings: list[Standing]) -> str:
    """Cost per 1,000 requests against score for one task's versions, with the Pareto frontier as a line."""
    frontier = pareto_frontier(standings)
    on_frontier = {s.version.pk for s in frontier}
    highest_cost = max(s.cost_per_1k_micro_usd for s in standings) / 1_000_000 or 0.001
    lowest_score = min(s.score_bp for s in standings) / 100

    def trace(points: list[Standing], name: str, colour: str) -> dict:
        return {
            "type": "scatter",
            "mode": "markers+text",
            "name": name,
            "x": [s.cost_per_1k_micro_usd / 1_000_000 for s in points],
            "y": [s.score_bp / 100 for s in points],
            "text": [s.version.ref for s in points],
            "textposition": "top center",
            "marker": {"size": 11, "color": colour},
            "hovertemplate": "%{text}<br>$%{x:.4f} per 1,000 requests<br>score %{y:.1f}<extra></extra>",
        }

    others = sorted(
        (s for s in standings if s.version.pk not in on_frontier),
        key=lambda s: (s.cost_per_1k_micro_usd, s.version.ref),
    )
    data = [
        {
            "type": "scatter",
            "mode": "lines",
            "name": "Pareto frontier",
            "x": [s.cost_per_1k_micro_usd / 1_000_000 for s in frontier],
            "y": [s.score_bp / 100 for s in frontier],
            "line": {"color": "#1a7f37", "width": 2, "dash": "dot"},
            "hoverinfo": "skip",
        },
        trace(frontier, "On the frontier", "#1a7f37"),
    ]
    if others:
        data.append(trace(others, "Dominated", "#8c959f"))
    return figure_json(
        data,
        {
            "title": {"text": f"{task.slug}: cost against score"},
            # Room on the right and at the top for the labels of the dearest and best versions.
            "margin": {"l": 50, "r": 30, "t": 50, "b": 40},
            "xaxis": {"title": {"text": "USD per 1,000 requests"}, "range": [0, highest_cost * 1.25]},
            "yaxis": {"title": {"text": "score (latest runs, out of 100)"}, "range": [lowest_score - 5, 105]},
            "legend": {"orientation": "h", "y": -0.25},
            "height": 380,
        },
    )


def task_charts(standings: dict[int, dict[int, Standing]]) -> list[dict]:
    tasks = Task.objects.filter(pk__in=list(standings)).order_by("slug")
    return [
        {
            "task": task,
            "id": f"pareto-{task.slug}",
            "figure": cost_score_figure(task, list(standings[task.pk].values())),
        }
        for task in tasks
    ]


def task_standings_panel(request: HttpRequest) -> str:
    """The suites page's section on cost against score per task (``SUITE_LIST_PANELS``)."""
    context = {"task_charts": task_charts(standings_by_task())}
    return render_to_string("portfolio/_task_standings.html", context, request)


def impact_charts(result: dict) -> dict[str, str]:
    """The impact panel's figures: requests and cost a day by model, before and after, for the routes
    the change touches; and each provider's share of the traffic before and after."""
    changed = [route for route in result["routes"] if route["change"] != "unchanged" and route["has_traffic"]]
    categories = [
        f"{route['task']} / {route['classification']} {side}" for route in changed for side in ("before", "after")
    ]
    models = sorted({m["model"] for route in changed for side in ("before", "after") for m in route[side]["by_model"]})

    def per_model(figure: str, scale: float = 1) -> dict[str, list[float]]:
        series = {}
        for ref in models:
            values = []
            for route in changed:
                for side in ("before", "after"):
                    entry = next((m for m in route[side]["by_model"] if m["model"] == ref), None)
                    values.append(entry[figure] / scale if entry else 0)
            series[ref] = values
        return series

    providers = sorted({share["provider"] for side in ("before", "after") for share in result["providers"][side]})
    shares = {
        provider: [
            next((s["share_bp"] / 100 for s in result["providers"][side] if s["provider"] == provider), 0)
            for side in ("before", "after")
        ]
        for provider in providers
    }
    return {
        "traffic": bar_chart(categories, per_model("requests_per_day"), "Requests a day by model, changed routes"),
        "cost": bar_chart(
            categories,
            per_model("cost_per_day_micro_usd", 1_000_000),
            "Cost a day by model (USD), changed routes",
            layout={"yaxis": {"title": {"text": "USD a day"}}},
        ),
        "providers": bar_chart(
            ["before", "after"],
            shares,
            "Share of traffic per provider (%)",
            colours=dict(zip(providers, PROVIDER_COLOURS, strict=False)),
            height=300,
            layout={"yaxis": {"range": [0, 100], "title": {"text": "% of requests"}}},
        ),
    }
