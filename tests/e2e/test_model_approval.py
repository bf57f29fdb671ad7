"""What people do in the browser: propose a model version, approve it, filter the registry, read
the dashboard chart."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from registry.models import ModelVersion, Status
from tests.factories import make_model, make_provider, make_versions

PASSWORD = "correct-horse-battery"


def sign_in(page: Page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".who")).to_contain_text(username)


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in to Steward")).to_be_visible()


def test_engineer_proposes_and_officer_approves_a_version(page: Page, live_server, alice, bob, screenshot) -> None:
    provider = make_provider(name="Mistral AI", slug="mistral", regions=["eu-west-1"])
    make_model(provider=provider, name="Mistral Large", slug="mistral-large", family="mistral")
    make_model(provider=provider, name="Mistral Small", slug="mistral-small", family="mistral")

    sign_in(page, live_server.url, "bob")
    page.get_by_role("link", name="Registry").click()
    page.get_by_role("link", name="Propose a version").click()
    expect(page).to_have_url(f"{live_server.url}/registry/propose/")
    page.get_by_label("Model", exact=True).select_option(label="Mistral AI — Mistral Large (mistral/mistral-large)")
    page.get_by_label("Version", exact=True).fill("2411")
    page.get_by_label("Region").fill("eu-west-1")
    page.get_by_label("Base URL").fill("https://api.mistral.ai/v1")
    page.get_by_label("Provider model id").fill("mistral-large-2411")
    page.get_by_label("API key environment variable").fill("MISTRAL_API_KEY")
    page.get_by_label("Input price (USD per 1M tokens)").fill("2.00")
    page.get_by_label("Output price (USD per 1M tokens)").fill("6.00")
    page.get_by_label("Cost tier").select_option("large")
    page.get_by_label("Notes").fill("Needed for contract review in the EU.")
    page.get_by_role("button", name="Submit proposal").click()

    version = ModelVersion.objects.get(ref="mistral/mistral-large@2411")
    expect(page).to_have_url(f"{live_server.url}{version.get_absolute_url()}")
    expect(page.locator("#version-status")).to_have_text("Proposed")
    expect(page.get_by_role("status")).to_contain_text("mistral/mistral-large@2411 proposed")
    assert (version.input_price_micro_usd, version.output_price_micro_usd) == (2_000_000, 6_000_000)
    assert version.proposed_by == bob
    sign_out(page)

    sign_in(page, live_server.url, "alice")
    page.locator("nav.mainnav").get_by_role("link", name="Approvals").click()
    expect(page).to_have_url(f"{live_server.url}/approvals/")
    row = page.locator("table.data tbody tr", has_text="mistral/mistral-large@2411")
    expect(row).to_contain_text("bob")
    row.get_by_role("link", name="mistral/mistral-large@2411").click()
    page.get_by_label("Comment").fill("EU residency confirmed; prices checked against the contract.")
    page.get_by_role("button", name="Approve").click()

    expect(page.locator("#version-status")).to_have_text("Approved")
    approval = page.locator("#timeline li", has_text="approve")
    expect(approval).to_contain_text("alice")
    expect(approval).to_contain_text("proposed → approved")
    expect(approval.locator(".comment")).to_have_text("EU residency confirmed; prices checked against the contract.")
    status_change = page.locator("#history tbody tr", has_text="Approved")
    expect(status_change).to_contain_text("alice")
    expect(status_change).to_contain_text("approve: EU residency confirmed")
    screenshot(page, "version-approved")

    version.refresh_from_db()
    assert version.status == Status.APPROVED
    assert version.transitions.get(action="approve").actor == alice


def test_status_filter_updates_the_table_without_reloading(page: Page, live_server, bob) -> None:
    approved = sum(v.status == Status.APPROVED for v in make_versions(8, bob))
    assert 0 < approved < 8
    sign_in(page, live_server.url, "bob")
    page.goto(f"{live_server.url}/registry/")
    rows = page.locator("#versions tbody tr")
    expect(rows).to_have_count(8)
    page.evaluate("window.__marker = 1")

    page.locator("select[name=status]").select_option("approved")

    expect(rows).to_have_count(approved)
    expect(page.locator("#versions tbody .badge")).to_have_text(["Approved"] * approved)
    expect(page).to_have_url(re.compile(r"[?&]status=approved(&|$)"))
    assert page.evaluate("window.__marker") == 1, "the page reloaded instead of swapping the table"


def test_dashboard_draws_the_chart_without_policy_violations(page: Page, live_server, alice, bob, screenshot) -> None:
    make_versions(12, bob)
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))

    sign_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/")

    expect(page.locator("[data-figure] .main-svg").first).to_be_visible()
    expect(page.locator("[data-figure] .legendtext")).to_have_count(3)  # proposed, approved, deprecated
    screenshot(page, "dashboard")
    assert [e for e in errors if "Content Security Policy" in e] == []
    assert errors == []
