"""An evaluation run in the browser: bob starts it from the suite's page, a real Celery worker runs
it against the demo endpoint, and the run page's progress bar (htmx polling, no reload) reaches
100%; the version's page then shows the score and its chart."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page, expect

from demo.server import start_in_thread
from registry.models import EvaluationRun, RunStatus
from steward.celery import app
from tests.e2e.watch import watch
from tests.registry.test_evaluation_runs import demo_version, make_suite
from tests.workers import celery_worker

PASSWORD = "correct-horse-battery"


@pytest.fixture
def demo_server():
    server = start_in_thread(latency_ms=120)
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.celery_worker
def test_bob_starts_a_run_and_watches_the_progress_bar_reach_100_percent(
    page: Page, live_server, bob, demo_server, screenshot
) -> None:
    suite = make_suite("browser-triage", 48, concurrency=2, pass_threshold_bp=7000)
    version = demo_version(bob, "demo-careful", demo_server.url)
    errors: list[str] = []
    watch(page, errors)
    app.control.purge()

    with celery_worker():
        page.goto(f"{live_server.url}/login/")
        page.get_by_label("Username").fill("bob")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("link", name="Registry").click()
        page.get_by_role("link", name="Evaluation suites").click()
        page.get_by_role("link", name=suite.name).click()
        expect(page.locator("#cases tbody tr")).to_have_count(25)  # the first page of 48
        page.get_by_label("Model version").select_option(label=f"{version.ref} (approved)")
        screenshot(page, "evaluation-suite")
        page.get_by_role("button", name="Start run").click()

        run = EvaluationRun.objects.get()
        expect(page).to_have_url(f"{live_server.url}/registry/runs/{run.pk}/")
        expect(page.get_by_role("status")).to_contain_text(f"Run #{run.pk} of {suite.name}")
        # A mark on this document: it must survive until the end, so the page was never reloaded.
        page.evaluate("window.stewardMark = 'same document'")
        seen: set[str] = set()
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            percent = page.locator("#run-percent").inner_text()
            seen.add(percent)
            if 0 < int(percent.rstrip("%")) < 100 and "in-progress" not in seen:
                seen.add("in-progress")
                screenshot(page, "evaluation-run-in-progress")
            if percent == "100%":
                break
            time.sleep(0.1)

        expect(page.locator("#run-percent")).to_have_text("100%")
        expect(page.locator("#run-status")).to_have_text("Completed")
        assert page.evaluate("window.stewardMark") == "same document"
        assert any(0 < int(value.rstrip("%")) < 100 for value in seen if value.endswith("%")), seen
        expect(page.locator("#run-progress")).to_have_attribute("value", "48")
        expect(page.locator("#run-done")).to_have_text("48 / 48 cases")
        expect(page.locator("#run-result")).to_have_text("Pass")
        expect(page.locator("#cancel-run")).to_have_count(0)
        expect(page.locator("#results tbody tr")).to_have_count(48)  # swapped in with the last poll
        screenshot(page, "evaluation-run-done")

    run.refresh_from_db()
    assert (run.status, run.done, run.errors, run.requested_by) == (RunStatus.COMPLETED, 48, 0, bob)

    page.get_by_role("link", name=version.ref).first.click()
    expect(page).to_have_url(f"{live_server.url}/registry/versions/{version.pk}/")
    row = page.locator("#latest-scores tbody tr", has_text=suite.name)
    expect(row.locator("td.score")).to_have_text(f"{run.score_bp / 100:.1f}")
    expect(row).to_contain_text("pass")
    expect(page.locator('[data-figure="score-chart"] .main-svg').first).to_be_visible()
    expect(page.locator('[data-figure="latency-chart"] .main-svg').first).to_be_visible()
    screenshot(page, "evaluation-version")
    assert errors == []
