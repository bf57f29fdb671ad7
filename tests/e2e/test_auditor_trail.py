"""The auditor's trail in the browser: dave filters the decisions explorer to one kind of violation,
opens a flagged decision, follows its chain to the change request behind the policy and who approved
it, comes back and exports the filtered rows as CSV; the download holds exactly those rows."""

from __future__ import annotations

import csv
import io
import json
import re
import urllib.request

from django.utils import timezone
from playwright.sync_api import Page, expect

from audits.models import DecisionRecord, ViolationKind
from tests.e2e.test_model_approval import sign_in
from tests.e2e.watch import watch
from tests.factories import routed_world


def report(base_url: str, token: str, records: list[dict]) -> dict:
    """Post decision records over HTTP, as a router does."""
    request = urllib.request.Request(
        f"{base_url}/api/v1/decisions",
        data=json.dumps({"records": records}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def record(request_id: str, **fields) -> dict:
    return {
        "request_id": request_id,
        "occurred_at": timezone.now().isoformat(),
        "task": "ticket-triage",
        "classification": "internal",
        "model": "acme/small-a@1",
        "policy_version": 1,
        "latency_ms": 420,
        "input_tokens": 800,
        "output_tokens": 40,
        "cost_micro_usd": 144,
        "input": f"Ticket {request_id}",
        "output": "billing",
        **fields,
    }


def test_auditor_follows_a_violation_to_its_approvers_and_exports_the_filtered_rows(
    page: Page, live_server, alice, bob, carol, dave, screenshot
) -> None:
    world = routed_world(alice, carol, bob)
    change = world["policy_version"].change_request
    answer = report(
        live_server.url,
        world["token"],
        [
            *(record(f"fine-{n}") for n in range(4)),
            record("fallback-1", model="beta/small-b@1", fallback_used=True),
            record("off-policy-1", model="beta/other@1"),  # approved and usable, but not in the route
            record("off-policy-2", model="beta/other@1"),
            record("ghost-policy-1", policy_version=9),  # a version never published
        ],
    )
    assert answer["accepted"] == 8 and answer["violations"] == 3
    off_policy = {"off-policy-1", "off-policy-2"}
    errors: list[str] = []
    watch(page, errors)

    sign_in(page, live_server.url, "dave")
    page.locator(".mainnav").get_by_role("link", name="Audit").click()
    page.locator(".subnav").get_by_role("link", name="Decisions").click()
    table = page.locator("#decisions tbody tr[data-decision]")
    expect(table).to_have_count(8)

    # One kind of violation: the explorer narrows without a reload, the URL carries the filter.
    page.evaluate("window.__marker = 1")
    page.locator("select[name=violation]").select_option(ViolationKind.MODEL_NOT_ALLOWED)
    expect(table).to_have_count(2)
    expect(page.locator("[data-total=decisions]")).to_have_text("2")
    expect(page).to_have_url(re.compile(rf"/audit/decisions/\?.*violation={ViolationKind.MODEL_NOT_ALLOWED}"))
    assert page.evaluate("window.__marker") == 1
    for row in table.all():
        expect(row.locator(".badge")).to_have_text(ViolationKind.MODEL_NOT_ALLOWED)
    filtered_url = page.url
    screenshot(page, "auditor-filtered")

    # Open one: the decision's chain says what was wrong and what stood behind it.
    page.locator('a[title="request off-policy-1"]').click()
    expect(page.get_by_role("heading", name="Decision off-policy-1")).to_be_visible()
    expect(page.locator("h1 .badge")).to_have_text("1 violation")
    expect(page.locator("#violations")).to_contain_text("Model not allowed by the policy")
    expect(page.locator("#violations")).to_contain_text("not beta/other@1")
    expect(page.locator("#policy-in-force")).to_have_text("In force when the decision was made.")
    expect(page.locator("#policy-approvers")).to_have_text("carol")
    screenshot(page, "auditor-chain")

    # Follow the chain to the change request and its approvers.
    page.locator("#policy-change-request a").click()
    expect(page).to_have_url(f"{live_server.url}/policies/changes/{change.pk}/")
    expect(page.get_by_role("heading", name=change.title)).to_be_visible()
    expect(page.locator("#approval-count")).to_contain_text("1 of 1")
    expect(page.locator("#approval-count")).to_contain_text("carol")
    approval = page.locator("#reviews li.review-approve")
    expect(approval).to_have_count(1)
    expect(approval).to_contain_text("carol")
    screenshot(page, "auditor-change-request")

    # Back to the filtered explorer; export what it shows.
    page.go_back()
    page.go_back()
    expect(page).to_have_url(filtered_url)
    expect(page.locator("select[name=violation]")).to_have_value(ViolationKind.MODEL_NOT_ALLOWED)
    expect(table).to_have_count(2)
    with page.expect_download() as download:
        page.locator("#export-csv").click()
    assert download.value.suggested_filename.startswith("decisions-") and download.value.suggested_filename.endswith(
        ".csv"
    )
    with open(download.value.path(), encoding="utf-8") as handle:
        rows = list(csv.DictReader(io.StringIO(handle.read())))
    assert {row["request_id"] for row in rows} == off_policy and len(rows) == 2
    assert all(row["violations"] == ViolationKind.MODEL_NOT_ALLOWED for row in rows)
    assert all(row["model"] == "beta/other@1" for row in rows)
    assert set(DecisionRecord.objects.filter(has_violation=True).values_list("request_id", flat=True)) == {
        *off_policy,
        "ghost-policy-1",
    }
    assert errors == []
