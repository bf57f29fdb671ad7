"""The compliance matrix in the browser: an officer approves a cell from its panel and the cell turns
"Usable" without a reload; an engineer has no approve control and the endpoint refuses them."""

from __future__ import annotations

import datetime as dt

import pytest
from playwright.sync_api import Page, expect

from compliance.matrix import CellState, check
from compliance.models import Certification, CertificationHolding, DataClassification, MatrixCell
from registry.models import Status
from tests.e2e.test_model_approval import sign_in
from tests.e2e.watch import watch
from tests.factories import make_model, make_provider, make_version, make_versions


def certification(slug: str, name: str) -> Certification:
    # A transactional test flushes the catalogue that the data migration created.
    return Certification.objects.get_or_create(slug=slug, defaults={"name": name})[0]


@pytest.fixture
def matrix(alice, bob):
    """An approved EU version: eligible for pii-eu (GDPR DPA held), ineligible for phi (no HIPAA BAA)."""
    gdpr = certification("gdpr-dpa", "GDPR DPA")
    pii_eu = DataClassification.objects.create(
        slug="pii-eu", name="EU personal data", level=3, allowed_regions=["eu-*"]
    )
    pii_eu.required_certifications.set([gdpr])
    phi = DataClassification.objects.create(slug="phi", name="Health data", level=4)
    phi.required_certifications.set([certification("hipaa-baa", "HIPAA BAA")])
    provider = make_provider(name="Mistral AI", slug="mistral")
    CertificationHolding.objects.create(
        provider=provider,
        certification=gdpr,
        valid_from=dt.date(2025, 1, 1),
        valid_until=dt.date.today() + dt.timedelta(days=365),
        evidence_url="https://trust.example.com/dpa.pdf",
        recorded_by=alice,
    )
    version = make_version(
        bob,
        model=make_model(provider=provider, slug="mistral-large"),
        version="2411",
        status=Status.APPROVED,
        region="eu-west-1",
    )
    return version, pii_eu, phi


def test_officer_approves_a_cell_and_it_turns_usable_without_a_reload(
    page: Page, live_server, alice, bob, matrix, screenshot
) -> None:
    version, pii_eu, phi = matrix
    make_versions(6, bob)
    MatrixCell.for_pair(version, pii_eu).request(bob, "EU ticket triage")
    errors: list[str] = []
    watch(page, errors)

    sign_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/compliance/matrix/")
    expect(page.locator("[data-figure] .main-svg").first).to_be_visible()
    page.evaluate("window.__marker = 1")
    cell = page.locator(f"#cell-{version.pk}-pii-eu")
    expect(cell).to_have_attribute("data-state", CellState.AWAITING)
    expect(cell).to_have_text("Eligible, awaiting approval")
    expect(page.locator(f"#cell-{version.pk}-phi")).to_have_attribute(
        "title", f"{version.ref} × phi: no HIPAA BAA; not approved for this classification (not requested)"
    )

    cell.get_by_role("link").click()
    panel = page.locator("#cell-panel")
    expect(panel.get_by_role("heading", name=f"{version.ref} × pii-eu")).to_be_visible()
    expect(panel.locator("#cell-reasons")).to_contain_text("awaiting an officer's approval")
    expect(panel).to_contain_text("EU ticket triage")
    approve = panel.locator("form#cell-approve")

    # A refusal is shown in the panel and changes nothing.
    approve.get_by_role("button", name="Approve").click()
    expect(approve.locator(".error")).to_have_text("A justification is required to approve a cell.")
    expect(cell).to_have_attribute("data-state", CellState.AWAITING)

    approve = panel.locator("form#cell-approve")
    approve.get_by_label("Justification").fill("DPA signed; EU residency confirmed.")
    approve.get_by_role("button", name="Approve").click()

    expect(cell).to_have_attribute("data-state", CellState.USABLE)
    expect(cell).to_have_text("Usable")
    expect(panel.get_by_role("status")).to_have_text("Approved by alice.")
    expect(panel.locator("#cell-state")).to_have_text("Usable")
    expect(panel.locator("#cell-history")).to_contain_text("approve: DPA signed; EU residency confirmed.")
    expect(panel.locator("form#cell-suspend")).to_be_visible()
    assert page.evaluate("window.__marker") == 1, "the page reloaded instead of swapping the cell"
    screenshot(page, "matrix-approved")

    cell_row = MatrixCell.objects.get(model_version=version, classification=pii_eu)
    assert cell_row.decision == "approved" and cell_row.decided_by == alice
    assert check(version, pii_eu).usable
    assert errors == []


def test_engineer_has_no_approve_control_and_the_endpoint_refuses_them(page: Page, live_server, bob, matrix) -> None:
    version, pii_eu, _ = matrix
    sign_in(page, live_server.url, "bob")
    page.goto(f"{live_server.url}/compliance/matrix/")
    cell = page.locator(f"#cell-{version.pk}-pii-eu")
    expect(cell).to_have_attribute("data-state", CellState.NOT_REQUESTED)
    cell.get_by_role("link").click()

    panel = page.locator("#cell-panel")
    expect(panel.locator("form#cell-request")).to_be_visible()
    expect(panel.get_by_role("button", name="Approve")).to_have_count(0)
    expect(panel.locator("form#cell-approve, form#cell-deny, form#cell-suspend")).to_have_count(0)

    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    response = page.request.post(
        f"{live_server.url}/compliance/matrix/cell/{version.pk}/pii-eu/approve/",
        form={"justification": "I approve my own wish"},
        headers={"X-CSRFToken": token, "HX-Request": "true"},
    )
    assert response.status == 403
    assert not MatrixCell.objects.exists()
    assert check(version, pii_eu).state == CellState.NOT_REQUESTED
    page.evaluate("window.__marker = 1")

    # What bob may do, he can: request the cell from the panel.
    panel.locator("form#cell-request").get_by_label("Note").fill("Needed for EU ticket triage.")
    panel.get_by_role("button", name="Request").click()
    expect(cell).to_have_attribute("data-state", CellState.AWAITING)
    assert page.evaluate("window.__marker") == 1
    assert MatrixCell.objects.get().requested_by.username == "bob"


def test_filters_update_the_matrix_and_its_chart_without_reloading(page: Page, live_server, bob, matrix) -> None:
    make_versions(8, bob)  # 3 proposed, 5 approved
    sign_in(page, live_server.url, "bob")
    page.goto(f"{live_server.url}/compliance/matrix/")
    rows = page.locator("#matrix tbody tr")
    expect(rows).to_have_count(9)
    page.evaluate("window.__marker = 1")

    page.locator("select[name=status]").select_option("approved")

    expect(rows).to_have_count(6)
    expect(page.locator("#matrix tbody .badge")).to_have_text(["Approved"] * 6)
    expect(page.locator("[data-figure] .main-svg").first).to_be_visible()
    expect(page.locator("#matrix-csv")).to_have_attribute("href", "/compliance/matrix.csv?status=approved")
    assert page.evaluate("window.__marker") == 1


def test_a_cell_panel_has_its_own_url_takes_the_focus_and_back_returns(
    page: Page, live_server, alice, bob, matrix
) -> None:
    version, pii_eu, _ = matrix
    make_versions(3, bob)
    errors: list[str] = []
    watch(page, errors)
    sign_in(page, live_server.url, "alice")
    matrix_url = f"{live_server.url}/compliance/matrix/"
    cell_url = f"{live_server.url}/compliance/matrix/cell/{version.pk}/pii-eu/"
    page.goto(matrix_url)
    expect(page.locator("#coverage .main-svg").first).to_be_visible()
    page.evaluate("window.__marker = 1")
    panel = page.locator("#cell-panel")
    heading = panel.get_by_role("heading", name=f"{version.ref} × pii-eu")

    page.locator(f"#cell-{version.pk}-pii-eu").get_by_role("link").click()

    expect(heading).to_be_visible()
    expect(page).to_have_url(cell_url)
    expect(heading).to_be_focused()
    assert page.evaluate("document.getElementById('cell-panel').contains(document.activeElement)")
    assert page.evaluate("window.__marker") == 1, "the panel opened in place, without a reload"

    page.go_back()
    expect(page).to_have_url(matrix_url)
    expect(panel).to_contain_text("Select a cell")
    expect(heading).to_have_count(0)
    expect(page.locator("#coverage .main-svg").first).to_be_visible()

    page.go_forward()
    expect(page).to_have_url(cell_url)
    expect(heading).to_be_visible()
    expect(page.locator(f"#cell-{version.pk}-pii-eu")).to_be_visible()  # the whole page, not the panel alone

    page.reload()
    expect(heading).to_be_visible()
    expect(page.locator(f"#cell-{version.pk}-pii-eu")).to_be_visible()
    expect(page.locator("#coverage .main-svg").first).to_be_visible()
    expect(panel.locator("form#cell-approve")).to_be_visible()
    assert page.evaluate("window.__marker") is None, "a reload of the cell's URL"
    assert errors == []


def usable_counts(page: Page) -> dict:
    """What the coverage chart draws now: tier → {classification: usable versions} (plotly's own data)."""
    return page.evaluate(
        """() => Object.fromEntries(document.querySelector('#coverage .coverage-chart').data.map(
            trace => [trace.name, Object.fromEntries(trace.x.map((x, i) => [x, trace.y[i]]))]))"""
    )


def test_the_coverage_chart_redraws_after_a_cell_is_approved_and_suspended(
    page: Page, live_server, alice, bob, matrix
) -> None:
    version, pii_eu, _ = matrix
    MatrixCell.for_pair(version, pii_eu).request(bob, "EU ticket triage")
    errors: list[str] = []
    watch(page, errors)
    sign_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/compliance/matrix/")
    expect(page.locator("#coverage .main-svg").first).to_be_visible()
    assert usable_counts(page)[version.cost_tier]["pii-eu"] == 0
    page.evaluate("window.__marker = 1")
    panel = page.locator("#cell-panel")

    page.locator(f"#cell-{version.pk}-pii-eu").get_by_role("link").click()
    panel.locator("form#cell-approve").get_by_label("Justification").fill("DPA signed.")
    panel.locator("form#cell-approve").get_by_role("button", name="Approve").click()

    expect(panel.get_by_role("status")).to_have_text("Approved by alice.")
    page.wait_for_function(
        "tier => document.querySelector('#coverage .coverage-chart').data"
        ".find(trace => trace.name === tier).y[0] === 1",
        arg=version.cost_tier,
    )
    assert usable_counts(page)[version.cost_tier]["pii-eu"] == 1

    panel.locator("form#cell-suspend").get_by_label("Reason").fill("Incident 42.")
    panel.locator("form#cell-suspend").get_by_role("button", name="Suspend").click()

    expect(panel.get_by_role("status")).to_have_text("Suspended by alice.")
    page.wait_for_function(
        "tier => document.querySelector('#coverage .coverage-chart').data"
        ".find(trace => trace.name === tier).y[0] === 0",
        arg=version.cost_tier,
    )
    assert page.evaluate("window.__marker") == 1, "the chart changed without a reload"
    assert errors == []
