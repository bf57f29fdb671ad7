"""Charts read well, as the pages embed them: a time axis at least a day wide and a latency axis
from zero with one run, a line per suite, whole-number axes for counts, labels that grow their
margins instead of being clipped, and a pie's names in its legend."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from portfolio.feed import register_router
from portfolio.models import PolicySet
from tests.factories import make_model, make_provider, make_version
from tests.portfolio.test_fleet import seeded  # noqa: F401  (a fixture)
from tests.registry.test_evaluation_pages import completed_run, demo_version, make_suite

pytestmark = pytest.mark.django_db


def embedded_figure(page, script_id: str) -> dict:
    """The figure a page carries in ``<script id=... type="application/json">`` (a JSON string of JSON)."""
    body = page.content.decode()
    return json.loads(
        json.loads(body.split(f'<script id="{script_id}" type="application/json">')[1].split("</script>")[0])
    )


def axis_days(axis: dict) -> float:
    first, last = (dt.datetime.fromisoformat(moment) for moment in axis["range"])
    return (last - first) / dt.timedelta(days=1)


def test_one_run_draws_a_point_in_a_day_on_a_latency_axis_from_zero(bob, client_for) -> None:
    version = demo_version(bob)
    run = completed_run(make_suite("triage"), version, 9000)

    page = client_for(bob).get(f"/registry/versions/{version.pk}/")

    for chart in ("score-chart", "latency-chart"):
        figure = embedded_figure(page, chart)
        x_axis = figure["layout"]["xaxis"]
        assert x_axis["type"] == "date" and axis_days(x_axis) == 1, chart
        first, last = (dt.datetime.fromisoformat(moment) for moment in x_axis["range"])
        assert first < run.finished_at < last, "the run sits inside the axis"
        assert figure["layout"]["yaxis"]["automargin"] is True
    latency = embedded_figure(page, "latency-chart")
    assert [trace["y"] for trace in latency["data"]] == [[120], [300]]
    low, high = latency["layout"]["yaxis"]["range"]
    assert low == 0 and high > 300, "the point is on the axis, not on an empty -1..6"


def test_latency_and_score_over_time_draw_a_line_per_suite(bob, client_for) -> None:
    version = demo_version(bob)
    triage, refusals = make_suite("triage"), make_suite("refusals", category="safety")
    completed_run(triage, version, 8000, ago_minutes=60 * 24 * 3, latency_p50_ms=100, latency_p95_ms=200)
    completed_run(triage, version, 9000, ago_minutes=30, latency_p50_ms=110, latency_p95_ms=210)
    completed_run(refusals, version, 7000, ago_minutes=20, latency_p50_ms=900, latency_p95_ms=1500)

    page = client_for(bob).get(f"/registry/versions/{version.pk}/")

    latency = {trace["name"]: trace for trace in embedded_figure(page, "latency-chart")["data"]}
    assert {name: trace["y"] for name, trace in latency.items()} == {
        "Triage p50": [100, 110],
        "Triage p95": [200, 210],
        "Refusals p50": [900],
        "Refusals p95": [1500],
    }
    assert latency["Triage p50"]["line"]["color"] == latency["Triage p95"]["line"]["color"]
    assert latency["Triage p50"]["line"]["color"] != latency["Refusals p50"]["line"]["color"]
    score = {trace["name"]: trace["y"] for trace in embedded_figure(page, "score-chart")["data"]}
    assert score == {"Triage": [80.0, 90.0], "Refusals": [70.0]}
    x_axis = embedded_figure(page, "latency-chart")["layout"]["xaxis"]
    assert 2.9 < axis_days(x_axis) < 3.1, "runs days apart keep their own range"


def test_the_dashboard_counts_versions_on_a_whole_number_axis_and_never_clips_a_provider(alice, bob, client_for):
    make_version(bob, model=make_model(provider=make_provider(name="Azure OpenAI", slug="azure-openai")))

    figure = embedded_figure(client_for(alice).get("/"), "versions-chart")

    assert "Azure OpenAI" in figure["data"][0]["x"]
    assert figure["layout"]["xaxis"]["automargin"] is True
    y_axis = figure["layout"]["yaxis"]
    assert y_axis["tickformat"] == "d" and y_axis["dtick"] == 1 and y_axis["tick0"] == 0
    assert y_axis["range"][0] == 0 and y_axis["range"][1] >= 1


def test_the_fleet_chart_counts_routers_in_whole_numbers(seeded, client_for) -> None:  # noqa: F811
    register_router(PolicySet.objects.get(slug="production"), "edge-one", seeded["alice"])

    figure = embedded_figure(client_for(seeded["dave"]).get("/policies/fleet/"), "fleet-chart")

    y_axis = figure["layout"]["yaxis"]
    assert y_axis["tickformat"] == "d" and isinstance(y_axis["dtick"], int) and y_axis["dtick"] >= 1
    assert y_axis["rangemode"] == "tozero" and y_axis["title"]["text"] == "routers"
    assert figure["layout"]["xaxis"]["automargin"] is True


def test_the_provider_pie_names_providers_in_its_legend_not_on_its_slices(seeded, client_for) -> None:  # noqa: F811
    production = PolicySet.objects.get(slug="production")
    current = production.versions.order_by("-number").first()

    page = client_for(seeded["dave"]).get(f"/policies/production/versions/{current.number}/")

    figure = embedded_figure(page, "provider-chart")
    [pie] = figure["data"]
    assert pie["type"] == "pie" and pie["labels"]
    assert pie["textinfo"] == "percent" and pie["automargin"] is True
    assert figure["layout"]["showlegend"] is True
