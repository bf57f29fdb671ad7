"""Reviewing a change with its impact, in the browser: alice opens a change request that moves ticket
triage to mistral-small, reads the impact on the last 14 days of traffic (figures and charts), finds
that it crosses production's provider-share threshold, ticks the acknowledgement and approves."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from portfolio.impact import default_window
from portfolio.models import PolicySet, Review
from portfolio.publishing import start_change
from tests.e2e.watch import watch
from tests.factories import publish_through_review
from tests.portfolio.conftest import PRODUCTION_V1, build_world, make_people
from tests.portfolio.test_impact import PROPOSAL, seed_window


def test_alice_reads_the_impact_acknowledges_the_threshold_and_approves(page: Page, live_server, screenshot) -> None:
    people = make_people()
    build_world(people)
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    alice.set_password("correct-horse-battery")
    alice.save()
    production = PolicySet.objects.get(slug="production")
    publish_through_review(production, PRODUCTION_V1, bob, [alice, carol])
    seed_window(*default_window())
    production.threshold_provider_share_percent = 60
    production.save()
    change = start_change(production, bob, "Triage on mistral-small", "Cheaper.", PROPOSAL)
    change.submit(bob)

    errors: list[str] = []
    watch(page, errors)
    base = live_server.url
    page.goto(f"{base}/login/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("correct-horse-battery")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".who")).to_contain_text("alice")

    page.goto(f"{base}{change.get_absolute_url()}")
    panel = page.locator("#impact")
    expect(panel.get_by_role("heading", name="Impact on the last 14 days of traffic")).to_be_visible()
    expect(page.locator("#impact-cost")).to_contain_text("$0.293836 → $0.284929 (−3.03 %)")
    expect(page.locator("#impact-largest")).to_contain_text("openai 62.46 % → mistral 68.46 %")
    expect(page.locator("#impact-routes")).to_contain_text("no traffic in the window")
    for chart in ("impact-traffic-chart", "impact-cost-chart", "impact-provider-chart"):
        expect(page.locator(f'[data-figure="{chart}"] .main-svg').first).to_be_visible()
    expect(page.locator("#impact-headline")).to_contain_text("101 requests a day change model")
    screenshot(page, "impact-panel")

    # Approving without the acknowledgement is refused, naming the threshold.
    page.get_by_role("button", name="Approve").click()
    expect(page.locator("#acknowledgements .error")).to_contain_text(
        "Acknowledge before approving: mistral would carry 68.46 % of the traffic, above the 60 % threshold."
    )
    assert not Review.objects.filter(change_request=change, decision="approve").exists()

    page.get_by_label("I acknowledge: mistral would carry 68.46 % of the traffic, above the 60 % threshold").check()
    page.get_by_role("button", name="Approve").click()
    expect(page.locator("#approval-count")).to_contain_text("1 of 2")
    expect(page.locator("#reviews")).to_contain_text("Acknowledged: mistral would carry 68.46 % of the traffic")
    review = Review.objects.get(change_request=change, reviewer=alice, decision="approve")
    assert review.acknowledged == ["mistral would carry 68.46 % of the traffic, above the 60 % threshold"]
    # The one failed response is the refused approval (400); nothing else failed.
    assert errors == [f"400 {base}/policies/changes/{change.pk}/review/"]
