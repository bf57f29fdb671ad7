"""A person's notification choices in the browser: alice turns off violation emails, chooses the digest
and adds a webhook, whose secret she sees once."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from notifications.models import Kind, Preference, Webhook
from tests.e2e.test_model_approval import sign_in
from tests.e2e.watch import watch


def test_alice_chooses_what_she_is_told_and_adds_a_webhook(page: Page, live_server, alice, screenshot) -> None:
    errors: list[str] = []
    watch(page, errors)
    sign_in(page, live_server.url, "alice")
    page.locator(".who").get_by_role("link", name="alice").click()
    section = page.locator("#notifications")
    section.get_by_label("A violation was found by email").uncheck()
    section.get_by_label("In one digest a day").check()
    screenshot(page, "profile-notifications")
    section.get_by_role("button", name="Save notification choices").click()
    expect(page.get_by_role("status")).to_contain_text("Notification choices saved.")
    preference = Preference.objects.get(user=alice)
    assert Kind.VIOLATION not in preference.email_kinds and Kind.VIOLATION in preference.webhook_kinds
    assert preference.digest
    expect(page.locator("#notifications").get_by_label("A violation was found by email")).not_to_be_checked()

    section = page.locator("#notifications")
    section.get_by_label("Name").fill("governance channel")
    section.get_by_label("URL").fill("hooks.slack.com/services/T000/B000/XXXX")
    section.get_by_label("Format").select_option("teams")
    section.get_by_role("button", name="Add webhook").click()
    secret = page.locator("#webhook-secret").inner_text()
    assert secret.startswith("whsec_")
    webhook = Webhook.objects.get(user=alice)
    assert webhook.url == "https://hooks.slack.com/services/T000/B000/XXXX" and webhook.format == "teams"
    page.get_by_role("link", name="Back to your profile").click()
    row = page.locator(f"#webhook-{webhook.pk}")
    expect(row).to_contain_text("governance channel")
    expect(row).to_contain_text(secret[:12])
    expect(page.locator("body")).not_to_contain_text(secret)
    assert errors == []
