"""In the browser: bob finds a version in the run form by typing, and withdrawing his proposal asks
him first (dismissing changes nothing)."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from registry.models import Status
from tests.e2e.test_model_approval import sign_in
from tests.e2e.watch import watch
from tests.factories import make_model, make_provider, make_version
from tests.registry.test_evaluation_pages import make_suite


def test_bob_filters_the_run_form_by_typing(page: Page, live_server, bob) -> None:
    suite = make_suite()
    acme = make_provider(name="Acme", slug="acme")
    for slug in ("alpha", "beta", "gamma"):
        make_version(bob, model=make_model(provider=acme, slug=slug), version="1", status=Status.APPROVED)
    wanted = make_version(bob, model=make_model(provider=acme, slug="delta"), version="7", status=Status.APPROVED)
    errors: list[str] = []
    watch(page, errors)

    sign_in(page, live_server.url, "bob")
    page.goto(f"{live_server.url}{suite.get_absolute_url()}")
    search = page.get_by_label("Find a version")
    expect(search).to_be_visible()
    search.fill("delta 7")
    select = page.get_by_label("Model version")
    expect(select).to_have_value(str(wanted.pk))
    visible = select.locator("option:not([hidden])")
    expect(visible).to_have_count(2)  # the empty choice and delta@7
    expect(page.locator("#version-count")).to_have_text("1 matching version.")
    search.fill("")
    expect(select.locator("option:not([hidden])")).to_have_count(5)
    assert errors == []


def test_withdrawing_asks_first(page: Page, live_server, bob) -> None:
    version = make_version(bob, model=make_model(provider=make_provider(), slug="mine"), version="1")
    errors: list[str] = []
    watch(page, errors)
    sign_in(page, live_server.url, "bob")
    page.goto(f"{live_server.url}{version.get_absolute_url()}")
    page.get_by_label("Why withdraw it?").fill("Superseded.")

    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.get_by_role("button", name="Withdraw proposal").click()
    expect(page.locator("#version-status")).to_have_text("Proposed")
    assert asked == [f"Withdraw {version.ref}? Officers will no longer see it, and it cannot be undone."]
    version.refresh_from_db()
    assert version.status == Status.PROPOSED

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Withdraw proposal").click()
    expect(page.locator("#version-status")).to_have_text("Withdrawn")
    expect(page.locator("#timeline li", has_text="withdraw")).to_contain_text("Superseded.")
    version.refresh_from_db()
    assert version.status == Status.WITHDRAWN
    assert errors == []
