"""The impact preview where people meet it: the change request's page, its approve form and thresholds,
the API (the change request's impact and the what-if for CI), and predicted against actual."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.test import Client

from audits.models import AuditEvent
from audits.rollups import add_batch
from portfolio.impact import record_outcomes, revision_impact
from portfolio.models import ChangeRequest, ChangeStatus, ImpactOutcome, Review
from portfolio.publishing import publish, start_change
from portfolio.tasks import record_impact_outcomes
from tests.factories import decision_rows

from .test_impact import PROPOSAL, SMALL
from .test_impact import scored as scored  # noqa: F401 - the fixture, for the quality threshold
from .test_impact import window as window  # noqa: F401 - the fixture: the seeded 14 days

pytestmark = pytest.mark.django_db


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def change(world, window, bob):  # noqa: F811
    change = start_change(world.production, bob, "Triage on mistral-small", "Cheaper.", PROPOSAL)
    change.submit(bob)
    return change


def thresholds(policy_set, **values) -> None:
    for name, value in values.items():
        setattr(policy_set, f"threshold_{name}", value)
    policy_set.save()


def test_the_page_shows_the_impact_beside_the_route_changes(change, alice, django_assert_max_num_queries):
    client = signed_in(alice)
    body = client.get(change.get_absolute_url()).content.decode()
    assert "Impact on the last 14 days of traffic" in body
    assert body.index('id="route-changes"') < body.index('id="impact"')
    # Cost a day: 293,836 → 284,929 µUSD (−3.03 %); mistral-small would carry 68.46 %.
    assert "$0.293836 → <strong>$0.284929</strong> (−3.03 %)" in body
    assert "mistral 68.46 %" in body
    assert "code-review / internal" in body and "no traffic in the window" in body
    for chart in ("impact-traffic-chart", "impact-cost-chart", "impact-provider-chart"):
        assert f'data-figure="{chart}"' in body and f'id="{chart}"' in body
    # The approve form carries the headline.
    assert 'id="impact-headline"' in body and "101 requests a day change model" in body
    # Worked out once per revision: later views read it back.
    with django_assert_max_num_queries(45):
        again = client.get(change.get_absolute_url())
    assert again.status_code == 200
    assert ChangeRequest.objects.get(pk=change.pk).latest_revision().impact is not None


def test_a_new_revision_has_an_impact_of_its_own(change, bob, alice):
    first = revision_impact(change.latest_revision())
    change.add_revision(bob, PROPOSAL.replace("max_rate_bp: 500", "max_rate_bp: 400"))
    latest = change.latest_revision()
    assert latest.impact is None
    assert revision_impact(latest)["routes"] == first["routes"]
    signed_in(alice).get(change.get_absolute_url())
    latest.refresh_from_db()
    assert latest.impact is not None


def test_the_api_answers_the_panels_figures_and_the_what_if_the_same(change, alice, bob, dave):
    signed_in(alice).get(change.get_absolute_url())  # the panel works the figures out and keeps them
    panel = change.latest_revision()
    panel.refresh_from_db()
    answer = signed_in(dave).get(f"/api/v1/change-requests/{change.pk}/impact")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert (body["change_request"], body["revision"]) == (change.pk, panel.number)
    for name in ("totals", "providers", "no_traffic", "unknown_models", "window"):
        assert body[name] == panel.impact[name]
    assert body["totals"]["after"]["cost_per_day_micro_usd"] == 284_929
    assert body["compliance"] == {"requests": 0}

    count = ChangeRequest.objects.count()
    what_if = signed_in(bob).post(
        "/api/v1/policy-sets/production/impact", json.dumps({"policy": PROPOSAL}), content_type="application/json"
    )
    assert what_if.status_code == 200, what_if.content
    as_yaml = signed_in(bob).post("/api/v1/policy-sets/production/impact", PROPOSAL, content_type="application/yaml")
    assert as_yaml.status_code == 200, as_yaml.content
    for other in (what_if.json(), as_yaml.json()):
        for name in ("totals", "providers", "routes", "no_traffic", "unknown_models", "window", "compliance"):
            assert other[name] == body[name], name
    assert ChangeRequest.objects.count() == count


def test_the_what_if_refuses_a_document_with_errors(world, bob):
    client = signed_in(bob)
    answer = client.post(
        "/api/v1/policy-sets/production/impact",
        json.dumps({"policy": PROPOSAL.replace(SMALL, "nobody/nothing@1")}),
        content_type="application/json",
    )
    assert answer.status_code == 400
    assert any("unknown model 'nobody/nothing@1'" in message for message in answer.json()["policy"])
    assert client.post("/api/v1/policy-sets/production/impact", "{", content_type="application/json").status_code == 400
    missing = client.post("/api/v1/policy-sets/production/impact", "{}", content_type="application/json")
    assert missing.status_code == 400 and "policy" in missing.json()


def test_roles_on_the_impact_endpoints(change, erin):
    anonymous = Client()
    assert anonymous.get(f"/api/v1/change-requests/{change.pk}/impact").status_code == 401
    assert (
        anonymous.post("/api/v1/policy-sets/production/impact", PROPOSAL, content_type="application/yaml").status_code
        == 401
    )
    nobody = signed_in(erin)
    assert nobody.get(f"/api/v1/change-requests/{change.pk}/impact").status_code == 403
    assert (
        nobody.post("/api/v1/policy-sets/production/impact", PROPOSAL, content_type="application/yaml").status_code
        == 403
    )


def test_only_officers_set_thresholds(world, alice, bob):
    data = {
        "threshold_cost_increase_percent": "20",
        "threshold_quality_drop_bp": "200",
        "threshold_provider_share_percent": "60",
    }
    assert signed_in(bob).post("/policies/production/thresholds/", data).status_code == 403
    bad = signed_in(alice).post("/policies/production/thresholds/", {**data, "threshold_provider_share_percent": "101"})
    assert bad.status_code == 400
    assert "Ensure this value is less than or equal to 100." in bad.content.decode()
    world.production.refresh_from_db()
    assert world.production.threshold_cost_increase_percent is None
    assert signed_in(alice).post("/policies/production/thresholds/", data).status_code == 302
    world.production.refresh_from_db()
    assert (
        world.production.threshold_cost_increase_percent,
        world.production.threshold_quality_drop_bp,
        world.production.threshold_provider_share_percent,
    ) == (20, 200, 60)
    event = AuditEvent.objects.filter(action="policy_set.thresholds").latest("seq")
    assert event.after["threshold_provider_share_percent"] == 60


def test_a_crossing_cannot_be_approved_without_its_acknowledgement(scored, change, alice, carol):  # noqa: F811
    thresholds(scored.production, quality_drop_bp=200, provider_share_percent=60)
    client = signed_in(carol)
    page = client.get(change.get_absolute_url()).content.decode()
    assert 'name="acknowledge" value="quality"' in page and 'name="acknowledge" value="provider"' in page
    review = f"/policies/changes/{change.pk}/review/"
    refused = client.post(review, {"decision": "approve", "comment": "Fine.", "acknowledge": ["provider"]})
    assert refused.status_code == 400
    assert "Acknowledge before approving: Quality drops more than 2 points" in refused.content.decode()
    assert not Review.objects.filter(change_request=change, decision="approve").exists()

    approved = client.post(review, {"decision": "approve", "comment": "Fine.", "acknowledge": ["quality", "provider"]})
    assert approved.status_code == 302
    review_row = Review.objects.get(change_request=change, reviewer=carol, decision="approve")
    assert review_row.acknowledged == [
        "Quality drops more than 2 points: ticket-triage / internal on triage-accuracy (3)",
        "mistral would carry 68.46 % of the traffic, above the 60 % threshold",
    ]
    event = AuditEvent.objects.filter(action="change_request.review.approve").latest("seq")
    assert event.after["acknowledged"] == review_row.acknowledged
    assert "Acknowledged: mistral would carry 68.46 %" in client.get(change.get_absolute_url()).content.decode()

    # Over the API, the second officer names the crossings too.
    api = signed_in(alice)
    url = f"/api/v1/change-requests/{change.pk}/reviews"
    without = api.post(url, json.dumps({"decision": "approve"}), content_type="application/json")
    assert without.status_code == 400 and "acknowledge" in without.json()
    ok = api.post(
        url,
        json.dumps({"decision": "approve", "acknowledge": ["quality", "provider"]}),
        content_type="application/json",
    )
    assert ok.status_code == 201, ok.content
    assert ok.json()["status"] == ChangeStatus.APPROVED
    assert ok.json()["reviews"][-1]["acknowledged"] == review_row.acknowledged


def test_predicted_against_actual_appears_seven_days_after_publishing(change, alice, carol, dave, world):
    signed_in(alice).get(change.get_absolute_url())
    change.review(alice, "approve", "ok")
    change.review(carol, "approve", "ok")
    version = publish(change, alice)
    page = signed_in(dave).get(change.get_absolute_url()).content.decode()
    assert 'id="outcome-pending"' in page
    assert record_impact_outcomes.apply().get() == []  # the beat task: nothing is due yet

    since = version.published_at.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    # The week after: 700 requests on mistral-small (100 a day).
    rows = decision_rows(
        350, "ticket-triage", "internal", SMALL, "mistral", 1000, 200, 300, since + dt.timedelta(hours=5)
    )
    rows += decision_rows(
        350, "ticket-triage", "internal", SMALL, "mistral", 1000, 200, 300, since + dt.timedelta(days=6)
    )
    # After the seven days: not counted.
    rows += decision_rows(
        99, "ticket-triage", "internal", SMALL, "mistral", 1000, 200, 300, since + dt.timedelta(days=7)
    )
    add_batch(rows)

    assert record_outcomes(now=since + dt.timedelta(days=6, hours=23)) == []  # not seven whole days yet
    eight_days_on = version.published_at + dt.timedelta(days=8)
    # The world's first versions (published with it) are due as well.
    assert change.pk in {o.change_request_id for o in record_outcomes(now=eight_days_on)}
    assert record_outcomes(now=eight_days_on) == []  # once per change request
    outcome = ImpactOutcome.objects.get(change_request=change)
    assert (outcome.since, outcome.until) == (since, since + dt.timedelta(days=7))
    triage = next(r for r in outcome.figures["routes"] if r["task"] == "ticket-triage")
    # 700 requests over 7 days; 700k in x 0.1 + 140k out x 0.4 = 126,000 µUSD, 18,000 a day.
    assert (triage["requests_per_day"], triage["before"]["cost_per_day_micro_usd"]) == (100, 18_000)

    page = signed_in(dave).get(change.get_absolute_url()).content.decode()
    assert "Predicted against actual" in page
    # Predicted 1,564 / 14 = 112 a day on the route, 29,929 µUSD a day; actual 100 and 18,000.
    assert "112 / 100" in page and "29929 / 18000" in page
