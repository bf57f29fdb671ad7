"""Suspending a matrix cell that production routes through: the panel lists the route, and the suspend
form warns (naming the route) and asks for confirmation before anything changes."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from compliance.matrix import CellState, check
from compliance.models import DataClassification
from tests.e2e.test_model_approval import sign_in
from tests.e2e.watch import watch
from tests.factories import routed_world


def test_suspending_a_cell_used_by_production_warns_first(
    page: Page, live_server, alice, carol, bob, screenshot
) -> None:
    world = routed_world(alice, carol, bob)
    small = world["versions"]["a"]
    internal = DataClassification.objects.get(slug="internal")
    errors: list[str] = []
    watch(page, errors)

    sign_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/compliance/matrix/")
    page.locator(f"#cell-{small.pk}-internal").get_by_role("link").click()
    panel = page.locator("#cell-panel")
    expect(panel.locator("#cell-uses")).to_contain_text("production v1: ticket-triage / internal (primary)")

    suspend = panel.locator("form#cell-suspend")
    suspend.get_by_label("Reason").fill("Provider incident: answers leak between tenants")
    suspend.get_by_role("button", name="Suspend").click()
    warning = panel.locator("#suspend-warning")
    expect(warning).to_be_visible()
    expect(warning).to_contain_text("Published policies route through this cell.")
    expect(warning).to_contain_text("production v1: ticket-triage / internal (primary)")
    expect(panel.locator("#cell-state")).to_have_text("Usable")
    assert check(small, internal).state == CellState.USABLE
    screenshot(page, "suspend-warning")

    panel.locator("form#cell-suspend").get_by_role("button", name="Suspend anyway").click()
    expect(panel.locator("#cell-state")).to_have_text("Suspended")
    expect(page.locator(f"#cell-{small.pk}-internal")).to_have_attribute("data-state", CellState.SUSPENDED)
    assert check(small, internal).state == CellState.SUSPENDED
    assert errors == []
