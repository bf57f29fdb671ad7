"""The officer's inbox in the browser: a pending matrix-cell request shows in the inbox and in the nav
badge, and the officer approves it from the inbox."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from compliance.matrix import CellState, check
from compliance.models import MatrixCell
from registry.models import Status
from tests.e2e.test_model_approval import sign_in
from tests.e2e.watch import watch
from tests.factories import make_classification, make_model, make_provider, make_version


def test_officer_sees_a_cell_request_in_the_inbox_and_badge_and_approves_it_there(
    page: Page, live_server, alice, bob, screenshot
) -> None:
    version = make_version(
        bob,
        model=make_model(provider=make_provider(name="Acme", slug="acme"), slug="helper"),
        version="3",
        status=Status.APPROVED,
    )
    internal = make_classification("internal", 1)
    MatrixCell.for_pair(version, internal).request(bob, "Internal wiki answers")
    errors: list[str] = []
    watch(page, errors)

    sign_in(page, live_server.url, "alice")
    badge = page.locator("nav.mainnav #nav-badge")
    expect(badge).to_have_text("1")
    expect(badge).to_be_visible()
    page.locator("nav.mainnav").get_by_role("link", name="Approvals").click()
    expect(page).to_have_url(f"{live_server.url}/approvals/")
    row = page.locator("#inbox-cells tbody tr", has_text=f"{version.ref} × internal")
    expect(row).to_contain_text("bob")
    expect(row).to_contain_text("Internal wiki answers")
    screenshot(page, "inbox-cell-request")

    # Filtering to other kinds hides the cell; back to cells only, it is there.
    page.get_by_label("Change requests").check()
    expect(page.locator("#inbox-cells")).to_have_count(0)
    page.get_by_label("Change requests").uncheck()
    page.get_by_label("Matrix cells").check()
    expect(page).to_have_url(f"{live_server.url}/approvals/?q=&kind=cells")
    row = page.locator("#inbox-cells tbody tr", has_text=f"{version.ref} × internal")

    row.get_by_label(f"Justification for {version.ref} x internal").fill("Wiki content is internal only")
    row.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status")).to_contain_text(f"{version.ref} x internal: Approved by alice.")
    expect(page.locator("#inbox-cells")).to_contain_text("No matrix cell request awaits your decision.")
    expect(page.locator("nav.mainnav #nav-badge")).to_be_hidden()
    assert check(version, internal).state == CellState.USABLE
    assert errors == []


def test_the_nav_badge_follows_a_decision_made_in_the_matrix_without_a_reload(
    page: Page, live_server, alice, bob
) -> None:
    provider = make_provider(name="Acme", slug="acme")
    versions = [
        make_version(bob, model=make_model(provider=provider, slug=f"m{n}"), version="1", status=Status.APPROVED)
        for n in range(2)
    ]
    internal = make_classification("internal", 1)
    for version in versions:
        MatrixCell.for_pair(version, internal).request(bob, "Wiki")
    errors: list[str] = []
    watch(page, errors)

    sign_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/compliance/matrix/?state=awaiting")
    badge = page.locator("nav.mainnav #nav-badge")
    expect(badge).to_have_text("2")
    page.evaluate("window.__marker = 1")
    page.locator(f"#cell-{versions[0].pk}-internal").get_by_role("link").click()
    approve = page.locator("#cell-panel form#cell-approve")
    approve.get_by_label("Justification").fill("Internal wiki only")
    approve.get_by_role("button", name="Approve").click()
    expect(page.locator("#cell-panel #cell-state")).to_have_text("Usable")
    expect(badge).to_have_text("1")
    assert page.evaluate("window.__marker") == 1  # no reload
    assert errors == []
