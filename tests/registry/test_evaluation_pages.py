"""Evaluation pages and what they let each role do; gates; failing scheduled runs; figures and
recommendations."""

from __future__ import annotations

import datetime as dt
import json
import re
from io import StringIO

import pytest
import yaml
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audits.rollups import add_batch
from compliance.models import AlertKind, ComplianceAlert, DataClassification, MatrixCell
from demo.server import start_in_thread
from portfolio.impact import default_window
from portfolio.models import ChangeRequest, ChangeStatus, PolicySet, PolicyVersion
from portfolio.policy import normalise
from portfolio.recommendations import Standing, pareto_frontier, review_routes
from registry.evaluation.runs import dispatch_due_runs, run_inline, start_run
from registry.evaluation.suites import SuiteSpec, save_suite
from registry.models import CaseResult, EvaluationRun, EvaluationSuite, RunStatus, RunTrigger, Status
from tests.factories import (
    approve_cell,
    approved_credential,
    decision_rows,
    make_classification,
    make_model,
    make_provider,
    make_task,
    make_tier,
    make_version,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def demo_server():
    server = start_in_thread(latency_ms=0)
    yield server
    server.shutdown()
    server.server_close()


def make_suite(slug: str = "triage", cases: int = 3, task=None, **fields) -> EvaluationSuite:
    specs = [
        {
            "key": f"t{n + 1}",
            "position": n,
            "messages": [{"role": "user", "content": f"Classify this support ticket. Ticket: refund {slug} {n}"}],
            "expected": "billing",
            "scorer": "",
            "scorer_config": {},
            "tags": [],
            "group": "",
        }
        for n in range(cases)
    ]
    suite_fields = {
        "name": slug.capitalize(),
        "slug": slug,
        "category": "accuracy",
        "scorer": "label",
        "scorer_config": {"labels": ["billing", "technical", "account"]},
        **fields,
    }
    return save_suite(SuiteSpec(suite_fields, specs, {"task": task.slug} if task else {}), None)[0]


def demo_version(owner, model_id: str = "demo-swift", status: str = Status.APPROVED, **fields):
    approved_credential(hosts=("api.example.com", "127.0.0.1", "localhost"))
    return make_version(
        owner,
        model=make_model(provider=make_provider(), slug=model_id),
        status=status,
        provider_model_id=model_id,
        api_key_env="DEMO_ENDPOINT_API_KEY",
        **fields,
    )


def completed_run(suite, version, score_bp: int, cost_per_1k: int = 1000, *, ago_minutes: int = 5, **fields):
    """A finished run with its figures, as the runner would have left it."""
    finished = timezone.now() - dt.timedelta(minutes=ago_minutes)
    values = {
        "status": RunStatus.COMPLETED,
        "total": suite.cases.count(),
        "done": suite.cases.count(),
        "score_bp": score_bp,
        "passed": score_bp >= suite.pass_threshold_bp,
        "latency_p50_ms": 120,
        "latency_p95_ms": 300,
        "cost_micro_usd": cost_per_1k * suite.cases.count() // 1000,
        "cost_per_1k_micro_usd": cost_per_1k,
        "created_at": finished - dt.timedelta(minutes=1),
        "started_at": finished - dt.timedelta(minutes=1),
        "finished_at": finished,
        **fields,
    }
    return EvaluationRun.objects.create(suite=suite, model_version=version, **values)


def text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


# --- roles -----------------------------------------------------------------------------------------


def test_bob_the_engineer_starts_a_run_from_the_suite_page(bob, client_for) -> None:
    suite = make_suite()
    version = demo_version(bob)
    page = client_for(bob).get(f"/registry/suites/{suite.slug}/")
    assert page.status_code == 200
    assert 'action="/registry/suites/triage/run/"' in page.text and "Start run" in page.text
    assert f'href="/api/v1/evaluation-suites/{suite.slug}/export"' in page.text
    export = client_for(bob).get(f"/api/v1/evaluation-suites/{suite.slug}/export")
    assert export["Content-Type"] == "application/yaml; charset=utf-8" and "slug: triage" in export.text

    response = client_for(bob).post(f"/registry/suites/{suite.slug}/run/", {"model_version": version.pk})

    run = EvaluationRun.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/registry/runs/{run.pk}/"
    assert (run.suite, run.model_version, run.requested_by, run.trigger) == (suite, version, bob, RunTrigger.MANUAL)
    assert run.status == RunStatus.QUEUED and run.total == 3


def test_alice_the_officer_can_start_a_run(alice, bob, client_for) -> None:
    suite = make_suite()
    version = demo_version(bob)

    response = client_for(alice).post(f"/registry/suites/{suite.slug}/run/", {"model_version": version.pk})

    assert response.status_code == 302
    assert EvaluationRun.objects.get().requested_by == alice


def test_dave_the_auditor_reads_every_page_and_changes_nothing(dave, bob, client_for) -> None:
    suite = make_suite()
    version = demo_version(bob)
    run = EvaluationRun.objects.create(suite=suite, model_version=version, status=RunStatus.RUNNING, total=3)
    auditor = client_for(dave)
    for url in (
        "/registry/suites/",
        f"/registry/suites/{suite.slug}/",
        "/registry/runs/",
        f"/registry/runs/{run.pk}/",
        f"/registry/runs/{run.pk}/progress/",
        "/registry/recommendations/",
        f"/registry/versions/{version.pk}/",
    ):
        page = auditor.get(url)
        assert page.status_code == 200, url
        assert "Start run" not in page.text and "Cancel run" not in page.text and "Import" not in page.text

    assert auditor.post(f"/registry/suites/{suite.slug}/run/", {"model_version": version.pk}).status_code == 403
    assert auditor.post(f"/registry/runs/{run.pk}/cancel/").status_code == 403
    assert auditor.post("/registry/import-suite/", {"yaml": "name: x", "format": "steward"}).status_code == 403
    assert auditor.post("/registry/recommendations/apply/", {"policy_set": "x"}).status_code == 403
    assert EvaluationRun.objects.count() == 1
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING


def test_a_refused_run_says_why_on_the_suite_page(bob, client_for) -> None:
    suite = make_suite()
    retired = demo_version(bob, status=Status.RETIRED)

    response = client_for(bob).post(f"/registry/suites/{suite.slug}/run/", {"model_version": retired.pk})

    assert response.status_code == 400
    assert f"{retired.ref} is retired; it cannot be evaluated." in response.text
    judge = demo_version(bob, "demo-judge", status=Status.PROPOSED)
    EvaluationSuite.objects.filter(pk=suite.pk).update(scorer="llm-judge", scorer_config={}, judge=judge)
    response = client_for(bob).post(f"/registry/suites/{suite.slug}/run/", {"model_version": demo_version(bob).pk})
    assert response.status_code == 400
    assert f"The judge {judge.ref} is proposed, not approved; an unapproved model cannot grade." in response.text
    assert not EvaluationRun.objects.exists()


# --- the run page ------------------------------------------------------------------------------------


def test_the_progress_partial_shows_percent_and_eta_and_polls_while_running(bob, client_for) -> None:
    suite = make_suite(cases=4)
    run = EvaluationRun.objects.create(
        suite=suite,
        model_version=demo_version(bob),
        status=RunStatus.RUNNING,
        total=100,
        done=25,
        errors=2,
        started_at=timezone.now() - dt.timedelta(seconds=10),
    )

    partial = text(client_for(bob).get(f"/registry/runs/{run.pk}/progress/", HTTP_HX_REQUEST="true"))

    assert f'hx-get="/registry/runs/{run.pk}/progress/" hx-trigger="every 1s"' in partial
    assert '<progress id="run-progress" max="100" value="25"' in partial
    assert '<strong id="run-percent">25%</strong>' in partial
    assert "25 / 100 cases" in partial and "2 errors" in partial
    assert re.search(r'id="run-eta">about 3\d s left<', partial), partial
    assert "Cancel run" in partial
    page = client_for(bob).get(f"/registry/runs/{run.pk}/")
    assert 'id="run-live"' in page.text and 'hx-trigger="every 1s"' in page.text


def test_a_finished_run_stops_polling_and_shows_its_figures_and_results(bob, client_for, demo_server) -> None:
    suite = make_suite(cases=30, pass_threshold_bp=5000)
    version = demo_version(bob, "demo-oracle", base_url=demo_server.url)
    from registry.evaluation.runs import start_run

    run = run_inline(start_run(suite, version, by=bob, dispatch=False))
    CaseResult.objects.filter(run=run, case__key="t1").update(output="x" * 5, truncated=True)

    partial = text(client_for(bob).get(f"/registry/runs/{run.pk}/progress/", HTTP_HX_REQUEST="true"))

    assert "hx-trigger" not in partial.split('id="run-results"')[0]
    assert '<strong id="run-percent">100%</strong>' in partial
    assert 'id="run-result">Pass<' in partial and "pass mark 50.0" in partial
    assert f"{run.latency_p50_ms} / {run.latency_p95_ms}" in partial
    assert "Cancel run" not in partial
    assert 'id="run-results" hx-swap-oob="true"' in partial  # the results table arrives with the last poll
    page = client_for(bob).get(f"/registry/runs/{run.pk}/")
    assert page.text.count("<tr") == 1 + 30 and "Page" not in text(page).split('id="results"')[1]
    assert "truncated at 4000 chars" in page.text
    second = client_for(bob).get(
        f"/registry/runs/{run.pk}/?per_page=20&page=2", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="run-results"
    )
    assert second.text.startswith('<div id="run-results">') and "Page 2 of 2" in second.text


def test_bob_cancels_a_running_run(bob, client_for) -> None:
    suite = make_suite()
    run = EvaluationRun.objects.create(suite=suite, model_version=demo_version(bob), status=RunStatus.RUNNING, total=3)

    response = client_for(bob).post(f"/registry/runs/{run.pk}/cancel/", follow=True)

    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and run.detail == "cancelled by bob"
    assert f"Run #{run.pk} cancelled after 0 of 3 cases." in response.text
    again = client_for(bob).post(f"/registry/runs/{run.pk}/cancel/", follow=True)
    assert f"Run {run.pk} is already cancelled." in again.text


def test_pages_use_a_fixed_number_of_queries(bob, client_for) -> None:
    version = demo_version(bob)

    def grow(count: int) -> list:
        suites = [make_suite(f"suite-{EvaluationSuite.objects.count()}", cases=5) for _ in range(count)]
        for suite in suites:
            for n in range(3):
                run = completed_run(suite, version, 9000 + n, ago_minutes=10 - n)
                CaseResult.objects.bulk_create(
                    CaseResult(run=run, case=case, output="billing", score_bp=10000, passed=True, latency_ms=100)
                    for case in suite.cases.all()
                )
        return suites

    def queries(url: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        return len(captured)

    client = client_for(bob)
    first = grow(1)[0]
    run = first.runs.first()
    urls = ["/registry/suites/", f"/registry/suites/{first.slug}/", "/registry/runs/", f"/registry/runs/{run.pk}/"]
    urls += [f"/registry/versions/{version.pk}/", "/registry/recommendations/", "/"]
    few = {url: queries(url) for url in urls}
    grow(5)
    many = {url: queries(url) for url in urls}

    assert many == few
    assert max(few.values()) <= 20, few


# --- import through the page ---------------------------------------------------------------------------


BAD_SUITE = """\
name: Broken
slug: broken
category: accuracy
scorer: exact
cases:
  - key: a
    prompt: hello
    tag: one
"""


def test_import_errors_are_shown_with_their_paths_and_lines(bob, client_for) -> None:
    suite = make_suite()

    response = client_for(bob).post(
        "/registry/import-suite/",
        {"yaml": BAD_SUITE, "format": "steward", "origin": suite.slug, "category": "accuracy"},
    )

    assert response.status_code == 400
    page = text(response)
    assert "Nothing was imported." in page
    assert '<code class="path">cases[0].tag</code><span class="muted">line 8:</span> unknown key' in page
    assert f"<h1>{suite.name}" in page  # back on the suite's page
    broken = client_for(bob).post(
        "/registry/import-suite/", {"yaml": "name: [oops", "format": "steward", "category": "accuracy"}
    )
    assert broken.status_code == 400 and "line 1: invalid YAML: expected " in broken.text
    assert not EvaluationSuite.objects.filter(slug="broken").exists()


def test_import_by_upload_creates_the_suite(bob, client_for) -> None:
    upload = SimpleUploadedFile("suite.yaml", BAD_SUITE.replace("    tag: one\n", "").encode())

    response = client_for(bob).post(
        "/registry/import-suite/", {"file": upload, "format": "steward", "category": "accuracy"}
    )

    assert response.status_code == 302 and response["Location"] == "/registry/suites/broken/"
    assert EvaluationSuite.objects.get(slug="broken").cases.count() == 1


def test_promptfoo_import_on_a_suite_page_goes_into_that_suite(bob, client_for) -> None:
    suite = make_suite()
    promptfoo = "tests:\n  - vars: {prompt: Say hi}\n    assert:\n      - type: icontains\n        value: hi\n"

    response = client_for(bob).post(
        "/registry/import-suite/",
        {"yaml": promptfoo, "format": "promptfoo", "name": suite.name, "slug": suite.slug, "category": "accuracy"},
        follow=True,
    )

    assert response.status_code == 200 and "1 new case(s), 0 updated" in response.text
    assert suite.cases.count() == 4
    assert suite.cases.get(key="test-1").scorer == "contains"


# --- gates ---------------------------------------------------------------------------------------------


def test_approval_needs_a_passing_run_of_each_gate_category(alice, bob, client_for, settings) -> None:
    settings.STEWARD_APPROVAL_GATES = ["safety"]
    version = demo_version(bob, status=Status.PROPOSED)
    officer = client_for(alice)

    refused = officer.post(f"/registry/versions/{version.pk}/approve/", {"comment": "Looks fine."})

    assert refused.status_code == 400
    assert f"Approval requires passing evaluations: no completed safety run for {version.ref}." in refused.text
    safety = make_suite("refusals", category="safety", pass_threshold_bp=9000)
    failing = completed_run(safety, version, 8000)
    refused = officer.post(f"/registry/versions/{version.pk}/approve/", {"comment": "Looks fine."})
    assert refused.status_code == 400
    assert (
        f"the latest safety run (#{failing.pk}, Refusals) scored 8000 bp, below its pass mark of 9000 bp"
        in refused.text
    )
    version.refresh_from_db()
    assert version.status == Status.PROPOSED

    completed_run(safety, version, 9500, ago_minutes=1)
    approved = officer.post(f"/registry/versions/{version.pk}/approve/", {"comment": "Passes safety."})
    assert approved.status_code == 302
    version.refresh_from_db()
    assert version.status == Status.APPROVED


def test_a_classification_can_require_a_passing_bias_run_for_its_cells(alice, bob) -> None:
    version = demo_version(bob)
    classification = DataClassification.objects.create(
        slug="pii-test", name="Personal data", level=3, required_evaluation_categories=["bias"]
    )
    cell = MatrixCell.for_pair(version, classification)

    with pytest.raises(Exception) as refused:
        cell.approve(alice, "Certificates checked.")

    assert refused.value.message_dict == {
        "gates": [f"pii-test requires passing evaluations: no completed bias run for {version.ref}."]
    }
    completed_run(make_suite("loans", category="bias", pass_threshold_bp=9000), version, 9800)
    cell.approve(alice, "Certificates checked; bias run passed.")
    assert MatrixCell.objects.get(model_version=version, classification=classification).decision == "approved"


def policy_routing_to(slug: str, ref: str, *, suspend: bool) -> PolicySet:
    policy_set = PolicySet.objects.create(slug=slug, name=slug.capitalize(), suspend_cells_on_failed_evaluation=suspend)
    document = f"default: deny\nroutes:\n  - task: triage\n    classification: public-test\n    model: {ref}\n"
    PolicyVersion.objects.create(
        policy_set=policy_set, number=1, document=document, spec=normalise(yaml.safe_load(document))
    )
    return policy_set


def test_a_failing_scheduled_run_raises_an_alert_and_suspends_cells_where_the_set_says_so(
    alice, bob, client_for, demo_server
) -> None:
    # demo-budget gets about two tickets in three right: below a pass mark of 95.
    suite = make_suite("nightly", cases=30, schedule_minutes=60, pass_threshold_bp=9500)
    version = demo_version(bob, "demo-budget", base_url=demo_server.url)
    public = DataClassification.objects.create(slug="public-test", name="Public", level=0)
    MatrixCell.for_pair(version, public).approve(alice, "Public data only.")
    policy_routing_to("sandbox-test", version.ref, suspend=True)
    completed_run(suite, version, 9900, ago_minutes=120)  # the last run, two hours ago: the suite is due

    started = dispatch_due_runs()

    assert [(run.model_version, run.trigger) for run in started] == [(version, RunTrigger.SCHEDULE)]
    run = run_inline(started[0], base_url=demo_server.url)
    assert run.status == RunStatus.COMPLETED and run.passed is False
    alert = ComplianceAlert.objects.get(kind=AlertKind.EVALUATION_FAILED)
    assert alert.message.startswith(f"Scheduled Nightly run #{run.pk} failed for approved {version.ref}: ")
    cell = MatrixCell.objects.get(model_version=version, classification=public)
    assert cell.suspended_at is not None and cell.suspended_by is None
    assert "suspended because sandbox-test requires passing evaluations" in cell.suspension_reason
    dashboard = client_for(alice).get("/")
    assert "Scheduled evaluation failed" in dashboard.text and f"run #{run.pk} failed" in dashboard.text
    assert f'href="/registry/runs/{run.pk}/"' in dashboard.text  # in the recent runs too
    assert dispatch_due_runs() == []  # it just ran


def test_a_failing_scheduled_run_leaves_cells_alone_when_no_set_asks_for_it(alice, bob, demo_server) -> None:
    suite = make_suite("weekly", cases=30, schedule_minutes=60, pass_threshold_bp=9500)
    version = demo_version(bob, "demo-budget", base_url=demo_server.url)
    public = DataClassification.objects.create(slug="public-test", name="Public", level=0)
    MatrixCell.for_pair(version, public).approve(alice, "Public data only.")
    policy_routing_to("lenient", version.ref, suspend=False)
    completed_run(suite, version, 9900, ago_minutes=120)

    run = run_inline(dispatch_due_runs()[0], base_url=demo_server.url)

    assert run.passed is False
    assert ComplianceAlert.objects.filter(kind=AlertKind.EVALUATION_FAILED).count() == 1
    assert MatrixCell.objects.get(model_version=version, classification=public).suspended_at is None


# --- figures ----------------------------------------------------------------------------------------------


def test_the_version_page_shows_the_latest_score_per_suite_and_charts(bob, client_for) -> None:
    version = demo_version(bob)
    triage, safety = make_suite("triage", pass_threshold_bp=9000), make_suite("refusals", category="safety")
    completed_run(triage, version, 8000, 2000, ago_minutes=30)
    latest = completed_run(triage, version, 9250, 1500, ago_minutes=10)
    completed_run(safety, version, 7000, 900, ago_minutes=20)

    page = client_for(bob).get(f"/registry/versions/{version.pk}/")

    rows = text(page).split('id="latest-scores"')[1].split("</table>")[0]
    assert rows.count("<tr>") == 3  # header + one row per suite
    triage_row = rows.split("Triage</a>")[1].split("</tr>")[0]
    assert ">92.5<" in triage_row and "result-pass" in triage_row and "120 / 300 ms" in triage_row
    assert "$0.0015" in triage_row and f"#{latest.pk}" in triage_row
    assert "result-fail" in rows.split("Refusals</a>")[1]
    score = json.loads(
        json.loads(page.text.split('<script id="score-chart" type="application/json">')[1].split("</script>")[0])
    )
    assert {trace["name"]: trace["y"] for trace in score["data"]} == {"Triage": [80.0, 92.5], "Refusals": [70.0]}
    assert 'data-figure="latency-chart"' in page.text


def standing(ref: str, cost: int, score: int) -> Standing:
    class Version:
        pk = ref

    Version.ref = ref
    return Standing(version=Version, score_bp=score, cost_per_1k_micro_usd=cost, runs=())


def test_the_pareto_frontier_keeps_the_versions_nothing_cheaper_beats() -> None:
    points = [
        standing("cheap-bad", 100, 5000),
        standing("cheap-good", 200, 8000),
        standing("dear-worse", 300, 7000),
        standing("same-cost-worse", 200, 7900),
        standing("dear-best", 900, 9500),
        standing("dearer-same", 1000, 9500),
    ]

    assert [s.version.ref for s in pareto_frontier(points)] == ["cheap-bad", "cheap-good", "dear-best"]
    assert pareto_frontier([]) == []


def test_the_suites_page_draws_cost_against_score_per_task_with_the_frontier(alice, bob, client_for) -> None:
    world = recommendation_world(alice, bob)

    page = client_for(bob).get("/registry/suites/")

    script = page.text.split('<script id="pareto-triage" type="application/json">')[1].split("</script>")[0]
    figure = json.loads(json.loads(script))
    frontier = next(trace for trace in figure["data"] if trace["name"] == "Pareto frontier")
    assert frontier["mode"] == "lines"
    assert list(zip(frontier["x"], frontier["y"], strict=True)) == [(0.0004, 90.0), (0.0006, 95.0), (0.003, 97.0)]
    on_frontier = next(trace for trace in figure["data"] if trace["name"] == "On the frontier")
    assert on_frontier["text"] == [world[name].ref for name in ("far", "unusable", "proposed")]
    dominated = next(trace for trace in figure["data"] if trace["name"] == "Dominated")
    assert dominated["text"] == [world[name].ref for name in ("close", "hidden", "routed")]


# --- recommendations ----------------------------------------------------------------------------------------

# name → (provider model id, status, latest score, cost per 1,000 requests, usable for public-test)
WORLD = {
    "routed": ("demo-oracle", Status.APPROVED, 9500, 2000, True),
    "close": ("demo-careful", Status.APPROVED, 9400, 800, True),
    "far": ("demo-budget", Status.APPROVED, 9000, 400, True),
    "unusable": ("demo-swift", Status.APPROVED, 9500, 600, False),
    "hidden": ("demo-flaky", Status.APPROVED, 9300, 1200, True),
    "proposed": ("demo-judge", Status.PROPOSED, 9700, 3000, False),
}


def recommendation_world(alice, bob) -> dict:
    """Task triage (public-test) guarded by one suite; sandbox-test routes it to "routed"; five others."""
    public = make_classification("public-test", 0, name="Public")
    task = make_task("triage", public, make_tier("small", 1, 10_000_000))
    suite = make_suite("triage-accuracy", task=task)
    versions = {}
    for name, (model_id, status, score, cost, usable) in WORLD.items():
        versions[name] = demo_version(bob, model_id, status=status)
        completed_run(suite, versions[name], score - 500, cost, ago_minutes=60)  # older runs never count
        completed_run(suite, versions[name], score, cost)
        if usable:
            approve_cell(versions[name], public, alice, "Public data.")
    policy_routing_to("sandbox-test", versions["routed"].ref, suspend=False)
    return versions


def test_recommendations_list_cheaper_approved_usable_versions_within_the_tolerance(alice, bob, client_for) -> None:
    world = recommendation_world(alice, bob)

    [review] = review_routes()

    assert review.current.version == world["routed"]
    assert [str(r) for r in review.recommendations] == [
        f"triage / public-test → {world['close'].ref}: −60% cost, score −1.0 points",
        f"triage / public-test → {world['hidden'].ref}: −40% cost, score −2.0 points",
    ]
    assert [r.candidate.version for r in review.near_misses] == [world["far"]]
    page = text(client_for(bob).get("/registry/recommendations/"))
    assert f"triage / public-test → {world['close'].ref}: −60% cost, score −1.0 points" in page
    assert page.count("Open a draft change request") == 2
    assert f"outside the tolerance: {world['far'].ref}: −80% cost, score −5.0 points" in page
    assert world["unusable"].ref not in page and world["proposed"].ref not in page
    wide = text(client_for(bob).get("/registry/recommendations/?tolerance=5"))
    assert wide.count("Open a draft change request") == 3
    assert (
        "the tolerance must be from 0 to 100"
        in text(client_for(bob).get("/registry/recommendations/?tolerance=-1")).lower()
    )
    # Officers and auditors read them; only engineers get the button.
    assert "Open a draft change request" not in client_for(alice).get("/registry/recommendations/").text


def test_bob_opens_a_draft_change_request_from_a_recommendation(alice, bob, client_for) -> None:
    world = recommendation_world(alice, bob)
    form = {"policy_set": "sandbox-test", "task": "triage", "classification": "public-test", "tolerance": "2"}

    response = client_for(bob).post("/registry/recommendations/apply/", {**form, "model": world["close"].ref})

    change = ChangeRequest.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/policies/changes/{change.pk}/"
    assert (change.status, change.author, change.policy_set.slug) == (ChangeStatus.DRAFT, bob, "sandbox-test")
    assert change.title == f"triage / public-test: route to {world['close'].ref}"
    assert "−60% cost, score −1.0 points" in change.rationale
    routes = yaml.safe_load(change.latest_revision().document)["routes"]
    assert [(r["task"], r["classification"], r["model"]) for r in routes] == [
        ("triage", "public-test", world["close"].ref)
    ]
    # A version outside the tolerance is not a recommendation: nothing is opened.
    refused = client_for(bob).post("/registry/recommendations/apply/", {**form, "model": world["far"].ref}, follow=True)
    assert f"{world['far'].ref} is no longer recommended for sandbox-test: triage / public-test." in refused.text
    assert ChangeRequest.objects.count() == 1
    assert client_for(alice).post("/registry/recommendations/apply/", form).status_code == 403


def test_the_draft_from_a_recommendation_carries_its_impact(alice, bob, client_for) -> None:
    world = recommendation_world(alice, bob)
    since, _ = default_window()
    routed = world["routed"]
    add_batch(
        decision_rows(
            140,
            "triage",
            "public-test",
            routed.ref,
            routed.provider.slug,
            1000,
            200,
            300,
            since + dt.timedelta(hours=5),
            policy_set="sandbox-test",
        )
    )
    form = {"policy_set": "sandbox-test", "task": "triage", "classification": "public-test", "tolerance": "2"}
    client_for(bob).post("/registry/recommendations/apply/", {**form, "model": world["close"].ref})

    change = ChangeRequest.objects.get()
    figures = change.latest_revision().impact
    # Both versions cost 150,000 / 600,000 µUSD per million tokens: 140 x (1,000 in, 200 out) is
    # 21,000 + 16,800 = 37,800 µUSD before and after, 2,700 a day over 14 days.
    assert figures["totals"]["moved_requests"] == 140
    assert (
        figures["totals"]["before"]["cost_per_day_micro_usd"]
        == figures["totals"]["after"]["cost_per_day_micro_usd"]
        == 2700
    )
    assert "On the last 14 days of traffic: 140 requests change model, cost 2700 → 2700 µUSD a day." in change.rationale
    page = client_for(alice).get(change.get_absolute_url()).content.decode()
    assert "Impact on the last 14 days of traffic" in page and 'id="impact-routes"' in page


def test_after_seed_demo_the_sandbox_route_gets_a_recommendation(client_for, settings) -> None:
    settings.STEWARD_SEED_EVALUATION_RUNS = True
    call_command("seed_demo", stdout=StringIO(), stderr=StringIO())
    engineer = client_for(User.objects.get(username="bob"))

    page = text(engineer.get("/registry/recommendations/?tolerance=4"))

    assert "ticket-triage / public → demo/swift@1: −72% cost, score −3.3 points" in page
    default = text(engineer.get("/registry/recommendations/"))
    assert "outside the tolerance: demo/swift@1: −72% cost, score −3.3 points" in default
    response = engineer.post(
        "/registry/recommendations/apply/",
        {
            "policy_set": "sandbox",
            "task": "ticket-triage",
            "classification": "public",
            "model": "demo/swift@1",
            "tolerance": "4",
        },
    )
    change = ChangeRequest.objects.get(policy_set__slug="sandbox", title__contains="demo/swift@1")
    assert response["Location"] == f"/policies/changes/{change.pk}/"
    revision = change.latest_revision()
    assert revision.errors == [], revision.errors  # the new policy validates
    [route] = yaml.safe_load(revision.document)["routes"]
    assert (route["model"], route["fallbacks"]) == ("demo/swift@1", ["demo/careful@1"])


def test_the_results_show_the_expected_answer_and_filter_to_failures(bob, client_for, demo_server) -> None:
    suite = make_suite("expected-shown", 6)
    suite.cases.filter(position__lt=3).update(expected="technical")  # refund tickets: these three cannot pass
    version = demo_version(bob, "demo-swift", base_url=demo_server.url)
    run = run_inline(start_run(suite, version, by=bob, dispatch=False))
    assert run.status == RunStatus.COMPLETED
    failing = set(CaseResult.objects.filter(run=run, passed=False).values_list("case__key", flat=True))
    passing = set(CaseResult.objects.filter(run=run, passed=True).values_list("case__key", flat=True))
    assert failing and passing, "demo-swift gets some of these right and some wrong"
    api = client_for(bob)

    page = text(api.get(run.get_absolute_url()))
    assert "<th>Expected</th>" in page
    assert page.count('<td class="expected">technical</td>') == page.count('<td class="expected">billing</td>') == 3
    assert f"Failures and errors only ({len(failing)})" in page

    only = text(
        api.get(f"{run.get_absolute_url()}?show=failures", headers={"HX-Request": "true", "HX-Target": "run-results"})
    )
    shown = set(re.findall(r"<td><code>(t\d+)</code></td>", only))
    assert shown == failing
    assert f"{len(failing)} results that failed or errored" in only or f"{len(failing)} result that failed" in only
