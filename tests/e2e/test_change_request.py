"""A routing change in the browser, on the demo data: bob edits production's YAML and sees a
validation error appear as he types, fixes it and submits; he has no approve control on his own
request and the review endpoints refuse him; alice and carol approve in their own browsers; alice
publishes and production's version number grows by one."""

from __future__ import annotations

import re
from io import StringIO

from django.core.management import call_command
from playwright.sync_api import Browser, Page, expect

from portfolio.models import ChangeRequest, ChangeStatus, PolicySet
from tests.e2e.watch import watch


def sign_in(page: Page, base_url: str, username: str) -> None:
    """Sign in with the demo password that ``seed_demo`` gives everyone."""
    page.goto(f"{base_url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(f"steward-demo-{username}")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".who")).to_contain_text(username)


def new_page(browser: Browser, errors: list[str]) -> Page:
    """A page in a browser context of its own (its own cookies: its own sign-in)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(10_000)
    page = context.new_page()
    watch(page, errors)
    page.on("dialog", lambda dialog: dialog.accept())  # "Publish …?" confirmations
    return page


def put_cursor(page: Page, after: str, select: str = "") -> None:
    """Focus the YAML editor with the cursor right after ``after`` (selecting ``select`` from there)."""
    page.locator("textarea.yaml-editor").evaluate(
        """(editor, [after, select]) => {
            const at = editor.value.indexOf(after) + after.length;
            editor.focus();
            editor.setSelectionRange(at, at + select.length);
        }""",
        [after, select],
    )


def current_version(page: Page, base_url: str) -> int:
    page.goto(f"{base_url}/policies/production/")
    return int(page.locator("#current-version").inner_text().removeprefix("v"))


def test_a_routing_change_from_the_editor_to_a_new_production_version(
    page: Page, browser: Browser, live_server, screenshot
) -> None:
    call_command("seed_demo", stdout=StringIO())
    base = live_server.url
    errors: list[str] = []
    watch(page, errors)

    # bob proposes a change to production from its overview.
    sign_in(page, base, "bob")
    before = current_version(page, base)
    assert before == PolicySet.objects.get(slug="production").current_version().number == 1
    expect(page.locator("[data-figure] .main-svg").first).to_be_visible()  # provider concentration
    screenshot(page, "policies-overview")
    page.get_by_role("link", name="Propose a change").click()
    expect(page).to_have_url(f"{base}/policies/changes/new/?set=production")
    page.get_by_label("Title").fill("Lower the ticket-triage escalation cap")
    page.get_by_label("Rationale").fill("Escalations to gpt-4o cost more than they save.")
    expect(page.locator("#validation-summary")).to_contain_text("Valid")
    page.evaluate("window.__marker = 1")

    # He types a typo into the primary model of the first route: the error appears, no reload.
    put_cursor(page, "model: openai/gpt-4o-mini")
    page.keyboard.type("x")
    error = page.locator("#policy-errors li", has_text="routes[0].model")
    expect(error).to_contain_text("unknown model 'openai/gpt-4o-minix@2024-07-18': no such version in the registry")
    expect(page.locator("#validation-result")).to_have_attribute("data-valid", "false")
    expect(page.locator("#route-changes")).to_contain_text(
        "ticket-triage / internal: openai/gpt-4o-mini@2024-07-18 → openai/gpt-4o-minix@2024-07-18"
    )
    screenshot(page, "policies-editor-error")
    assert page.evaluate("window.__marker") == 1, "the page reloaded instead of checking in place"

    # He fixes it and makes the change he meant: the escalation cap from 500 to 400 basis points.
    page.keyboard.press("Backspace")
    expect(page.locator("#validation-result")).to_have_attribute("data-valid", "true")
    expect(page.locator("#policy-errors")).to_have_count(0)
    put_cursor(page, "max_rate_bp: ", select="500")
    page.keyboard.type("400")
    expect(page.locator("#route-changes")).to_contain_text("(cap 500 bp) → to openai/gpt-4o@2024-08-06")
    expect(page.locator("#route-changes")).to_contain_text("(cap 400 bp)")
    expect(page.locator("#validation-result")).to_have_attribute("data-valid", "true")
    assert page.evaluate("window.__marker") == 1
    page.get_by_role("button", name="Submit for review").click()

    change = ChangeRequest.objects.get(title="Lower the ticket-triage escalation cap")
    expect(page).to_have_url(f"{base}{change.get_absolute_url()}")
    expect(page.locator("#change-status")).to_have_text("In review")
    expect(page.locator("#approval-count")).to_contain_text("0 of 2")
    assert change.status == ChangeStatus.IN_REVIEW and change.author.username == "bob"

    # bob has no approve control on his own request, and the endpoints refuse him.
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    expect(page.get_by_role("button", name="Reject")).to_have_count(0)
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    refused = page.request.post(
        f"{base}/policies/changes/{change.pk}/review/",
        form={"decision": "approve", "comment": "LGTM"},
        headers={"X-CSRFToken": csrf, "Referer": f"{base}{change.get_absolute_url()}"},
        max_redirects=0,
    )
    assert refused.status == 403
    assert "Only governance officers can approve or reject change requests." in refused.text()
    refused = page.request.post(
        f"{base}/api/v1/change-requests/{change.pk}/reviews",
        data={"decision": "approve", "comment": "LGTM"},
        headers={"X-CSRFToken": csrf, "Referer": base},
    )
    assert refused.status == 403, refused.text()
    assert "Only governance officers can approve or reject change requests." in refused.text()
    assert change.reviews.count() == 0

    # alice finds it in her inbox and approves it, in her own browser.
    alice = new_page(browser, errors)
    sign_in(alice, base, "alice")
    alice.locator("nav.mainnav").get_by_role("link", name="Approvals").click()
    alice.locator("#inbox-change-requests").get_by_role("link", name=re.compile(f"^CR-{change.pk}:")).click()
    expect(alice).to_have_url(f"{base}{change.get_absolute_url()}")
    expect(alice.locator("#route-changes")).to_contain_text("(cap 400 bp)")
    expect(alice.locator("#yaml-diff .diff-add")).to_contain_text(["+      max_rate_bp: 400"])
    screenshot(alice, "policies-change-request")
    alice.get_by_label("Comment").fill("The cap still covers last month's escalations.")
    alice.get_by_role("button", name="Approve").click()
    expect(alice.locator("#approval-count")).to_contain_text("1 of 2")
    expect(alice.get_by_role("button", name="Approve")).to_have_count(0)
    expect(alice.locator("#change-status")).to_have_text("In review")

    # carol approves in hers: two approvals, ready to publish.
    carol = new_page(browser, errors)
    sign_in(carol, base, "carol")
    carol.goto(f"{base}{change.get_absolute_url()}")
    carol.get_by_label("Comment").fill("Agreed.")
    carol.get_by_role("button", name="Approve").click()
    expect(carol.locator("#change-status")).to_have_text("Approved, ready to publish")
    expect(carol.locator("#approval-count")).to_contain_text("2 of 2")

    # alice publishes: production's version number has grown by one.
    alice.reload()
    alice.get_by_role("button", name=f"Publish as v{before + 1}").click()
    expect(alice).to_have_url(f"{base}/policies/production/")
    expect(alice.locator(".messages")).to_contain_text(f"published as production v{before + 1}")
    expect(alice.locator("#current-version")).to_have_text(f"v{before + 1}")
    assert current_version(page, base) == before + 1
    change.refresh_from_db()
    assert change.status == ChangeStatus.PUBLISHED
    assert change.published_version.approvers == ["alice", "carol"]

    page.goto(f"{base}/policies/production/versions/?from={before}&to={before + 1}")
    expect(page.locator("#route-changes")).to_contain_text("(cap 400 bp)")
    screenshot(page, "policies-diff")
    assert errors == []
