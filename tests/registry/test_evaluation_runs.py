"""Evaluation runs on a real Celery worker (Redis broker) against the demo endpoint over HTTP.

The worker is ``celery -A steward worker --pool=prefork --concurrency=2`` in a subprocess of its
own session, on the broker of the test run, pointed at pytest-django's test database: the tests
that use it are transactional, so what they write is committed and the worker sees it.
"""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from demo.server import DemoServer, start_in_thread
from registry.evaluation.gates import failed_schedule
from registry.evaluation.runs import cancel_run, finish_run, latest_runs, run_inline, start_run, watchdog
from registry.evaluation.suites import SuiteSpec, save_suite
from registry.models import CaseResult, EvaluationRun, EvaluationSuite, ModelVersion, RunStatus, Status
from steward.celery import app
from steward.roles import sync_role_permissions
from tests.factories import approved_credential, make_model, make_provider, make_version
from tests.workers import celery_worker, forget_unacknowledged, kill_worker

RUN_TIMEOUT = 30
TICKETS = [
    ("I was charged twice", "billing"),
    ("I cannot log in to my account", "account"),
    ("The app shows an error on save", "technical"),
    ("Please refund me", "billing"),
]


# --- a real worker -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_worker(django_db_setup) -> Iterator[subprocess.Popen]:
    """One worker for the tests of this module that do not kill theirs."""
    app.control.purge()
    with celery_worker() as worker:
        yield worker


@pytest.fixture(scope="module")
def demo_server() -> Iterator[DemoServer]:
    server = start_in_thread(latency_ms=20)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def roles(transactional_db) -> None:
    """A transactional test flushes the role groups that a data migration created: bring them back."""
    sync_role_permissions()


# --- data -----------------------------------------------------------------------------------------


def make_suite(slug: str, cases: int, *, concurrency: int = 4, generic: bool = False, **fields) -> EvaluationSuite:
    """A suite of ``cases`` ticket-triage cases (or prompts the demo models answer at length)."""
    specs = []
    for n in range(cases):
        ticket, label = TICKETS[n % len(TICKETS)]
        if generic:
            prompt = f"Describe the weather on day {n} of the {slug} trip in some detail."
        else:
            prompt = f"Classify this support ticket. Ticket: {ticket} ({slug} #{n})"
        specs.append(
            {
                "key": f"case-{n + 1}",
                "position": n,
                "messages": [{"role": "user", "content": prompt}],
                "expected": label,
                "scorer": "",
                "scorer_config": {},
                "tags": [],
                "group": "",
            }
        )
    suite_fields = {
        "name": slug.replace("-", " ").capitalize(),
        "slug": slug,
        "category": "accuracy",
        "scorer": "label",
        "scorer_config": {"labels": ["billing", "technical", "account"]},
        "concurrency": concurrency,
        **fields,
    }
    return save_suite(SuiteSpec(suite_fields, specs), None)[0]


def demo_version(owner, model_id: str, base_url: str, status: str = Status.APPROVED) -> ModelVersion:
    provider = make_provider(name=f"Demo {uuid.uuid4().hex[:6]}", slug=f"demo-{uuid.uuid4().hex[:6]}")
    approved_credential()
    return make_version(
        owner,
        model=make_model(provider=provider, slug=model_id),
        status=status,
        version="1",
        base_url=base_url,
        provider_model_id=model_id,
        api_key_env="DEMO_ENDPOINT_API_KEY",
        input_price_micro_usd=100_000,
        output_price_micro_usd=400_000,
    )


def wait_for(run: EvaluationRun, condition, timeout: float = RUN_TIMEOUT) -> EvaluationRun:
    deadline = time.monotonic() + timeout
    while True:
        run.refresh_from_db()
        if condition(run):
            return run
        if time.monotonic() > deadline:
            pytest.fail(f"run {run.pk} is {run.status} with {run.done}/{run.total} after {timeout} s")
        time.sleep(0.05)


def finished(run: EvaluationRun) -> bool:
    return run.is_finished


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- a worker killed mid-run (first: it brings its own workers) ------------------------------------


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_run_whose_worker_is_killed_is_resumed_by_the_watchdog_and_completes(
    request, roles, bob, demo_server
) -> None:
    demo_server.latency_ms = 150
    suite = make_suite("killed-mid-run", 48, concurrency=2)
    version = demo_version(bob, "demo-swift", demo_server.url)
    app.control.purge()
    try:
        with celery_worker() as first:
            run = start_run(suite, version, by=bob)
            wait_for(run, lambda r: r.done > 0)
            kill_worker(first)
        stopped_at = run.done
        run.refresh_from_db()
        assert run.status == RunStatus.RUNNING and 0 < run.done < run.total

        # A new worker: the module's shared one, started only now (the killed one was alone).
        request.getfixturevalue("shared_worker")
        # Nothing moves any more; once the stall time has passed, the watchdog resumes the run.
        time.sleep(max(0.0, 1.2 - (timezone.now() - run.last_progress_at).total_seconds()))
        assert watchdog(stall_seconds=1) == {"resumed": 1, "failed": 0}
        run = wait_for(run, finished)
    finally:
        forget_unacknowledged()
        demo_server.latency_ms = 20

    assert run.status == RunStatus.COMPLETED, run.detail
    assert run.resumes == 1
    assert (run.done, run.errors, run.total) == (48, 0, 48)
    assert CaseResult.objects.filter(run=run).count() == 48  # each case once, none lost or repeated
    assert stopped_at < 48


@pytest.mark.django_db
def test_the_watchdog_fails_a_run_that_stalls_again_after_its_resume(bob) -> None:
    suite = make_suite("stalls-again", 3)
    version = demo_version(bob, "demo-swift", "http://127.0.0.1:9/v1")
    run = start_run(suite, version, by=bob, dispatch=False)
    long_ago = timezone.now() - dt.timedelta(minutes=10)
    EvaluationRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, resumes=1, last_progress_at=long_ago)

    assert watchdog(stall_seconds=60) == {"resumed": 0, "failed": 1}

    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.finished_at is not None
    assert run.detail == "no progress for 60 s after 1 resume(s): the workers running it were lost"
    assert watchdog(stall_seconds=60) == {"resumed": 0, "failed": 0}  # failed once, left alone after


# --- on the shared worker ----------------------------------------------------------------------------


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_run_completes_on_a_worker_and_its_progress_grows(roles, bob, client_for, demo_server, shared_worker) -> None:
    demo_server.latency_ms = 100
    suite = make_suite("progress", 40, concurrency=2)
    version = demo_version(bob, "demo-oracle", demo_server.url)
    api = client_for(bob)

    response = api.post(
        "/api/v1/evaluation-runs", {"suite": suite.slug, "model_version": version.ref}, content_type="application/json"
    )
    assert response.status_code == 201, response.content
    run_id = response.json()["id"]
    seen: list[dict] = []
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        body = api.get(f"/api/v1/evaluation-runs/{run_id}").json()
        seen.append(body)
        if body["status"] in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.1)
    demo_server.latency_ms = 20

    done = [body["done"] for body in seen]
    assert done == sorted(done), "progress never goes back"
    assert any(0 < value < 40 for value in done), f"no progress seen between 0 and 40: {sorted(set(done))}"
    running = next(body for body in seen if body["status"] == "running" and body["done"])
    assert running["percent"] == running["done"] * 100 // 40 and running["eta_seconds"] is not None
    final = seen[-1]
    assert final["status"] == "completed"
    assert (final["done"], final["total"], final["errors"], final["percent"]) == (40, 40, 0, 100)
    assert final["score_bp"] is not None and final["latency_p50_ms"] >= 100
    assert final["cost_micro_usd"] > 0 and final["cost_per_1k_micro_usd"] > 0
    results = CaseResult.objects.filter(run_id=run_id)
    assert results.count() == 40
    assert not results.exclude(error="").exists()
    assert all(r.output and r.latency_ms and r.input_tokens and r.attempts == 1 for r in results)
    version.refresh_from_db()
    assert version.latency_p50_ms == final["latency_p50_ms"]


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_429_answers_are_retried(roles, bob, demo_server, shared_worker) -> None:
    suite = make_suite("rate-limited", 12)
    version = demo_version(bob, "demo-flaky", demo_server.url)

    run = wait_for(start_run(suite, version, by=bob), finished)

    assert run.status == RunStatus.COMPLETED and run.errors == 0
    # demo-flaky answers 429 the first time it sees a prompt: every case took exactly two attempts.
    assert sorted(set(CaseResult.objects.filter(run=run).values_list("attempts", flat=True))) == [2]


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_an_endpoint_that_is_down_fails_the_run_at_its_pre_flight_check_and_no_case_is_sent(
    roles, bob, shared_worker
) -> None:
    suite = make_suite("endpoint-down", 6, concurrency=6)
    port = closed_port()
    version = demo_version(bob, "demo-swift", f"http://127.0.0.1:{port}/v1")

    run = wait_for(start_run(suite, version, by=bob), finished)

    assert run.status == RunStatus.FAILED
    assert run.detail == f"Pre-flight check: cannot reach 127.0.0.1:{port} (Connection refused); no case was sent"
    assert (run.done, run.errors, run.score_bp) == (0, 0, None)
    assert not CaseResult.objects.filter(run=run).exists()
    assert latest_runs(version) == []


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_run_whose_cases_all_error_ends_errored_and_the_versions_latest_score_is_unchanged(
    roles, bob, demo_server, shared_worker
) -> None:
    suite = make_suite("all-errored", 8, concurrency=4)
    version = demo_version(bob, "demo-oracle", demo_server.url)
    good = wait_for(start_run(suite, version, by=bob), finished)
    assert good.status == RunStatus.COMPLETED and good.errors == 0
    version.refresh_from_db()
    latency = (version.latency_p50_ms, version.latency_p95_ms)
    # The endpoint still answers, but no longer knows the model: every case gets a 400.
    ModelVersion.objects.filter(pk=version.pk).update(provider_model_id="withdrawn-model")

    run = wait_for(start_run(suite, version, by=bob), finished)

    assert run.status == RunStatus.ERRORED
    assert (run.done, run.errors, run.passed) == (8, 8, False)
    assert run.detail == "8 of 8 cases failed to get an answer: the run is errored and counts for no score and no gate"
    assert [r.pk for r in latest_runs(version)] == [good.pk]
    version.refresh_from_db()
    assert (version.latency_p50_ms, version.latency_p95_ms) == latency
    assert failed_schedule(run) == ""


@pytest.mark.django_db
def test_a_run_with_a_minority_of_errors_completes_and_one_with_a_majority_is_errored(bob, demo_server) -> None:
    suite = make_suite("half-errored", 4, concurrency=2)
    version = demo_version(bob, "demo-oracle", demo_server.url)
    run = run_inline(start_run(suite, version, by=bob, dispatch=False))
    assert run.status == RunStatus.COMPLETED
    # The same run's figures again, with one case and then three of its four without an answer.
    for errors, status in ((1, RunStatus.COMPLETED), (2, RunStatus.COMPLETED), (3, RunStatus.ERRORED)):
        EvaluationRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, finished_at=None)
        CaseResult.objects.filter(run=run).update(error="")
        ids = list(CaseResult.objects.filter(run=run).order_by("pk").values_list("pk", flat=True))[:errors]
        CaseResult.objects.filter(pk__in=ids).update(error="no answer")
        assert finish_run(run.pk).status == status, errors


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_cancelling_stops_a_run(roles, bob, demo_server, shared_worker) -> None:
    demo_server.latency_ms = 200
    suite = make_suite("cancelled", 40, concurrency=1)
    version = demo_version(bob, "demo-swift", demo_server.url)
    try:
        run = wait_for(start_run(suite, version, by=bob), lambda r: r.done > 0)
        cancel_run(run, bob)
        # The request in flight may still be saved; nothing after it is asked.
        time.sleep(1.0)
        answered = CaseResult.objects.filter(run=run).count()
        time.sleep(0.6)
    finally:
        demo_server.latency_ms = 20

    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and run.detail == "cancelled by bob"
    assert CaseResult.objects.filter(run=run).count() == answered < 40
    assert run.score_bp is None and run.passed is None
    with pytest.raises(ValidationError, match="already cancelled"):
        cancel_run(run, bob)


# --- refusals and truncation (no worker) ---------------------------------------------------------------


@pytest.mark.django_db
def test_a_run_of_a_retired_version_is_refused(bob, client_for) -> None:
    suite = make_suite("retired", 2)
    version = demo_version(bob, "demo-swift", "http://127.0.0.1:9/v1", status=Status.RETIRED)

    with pytest.raises(ValidationError) as refused:
        start_run(suite, version, by=bob, dispatch=False)
    assert refused.value.message_dict == {"model_version": [f"{version.ref} is retired; it cannot be evaluated."]}
    response = client_for(bob).post(
        "/api/v1/evaluation-runs", {"suite": suite.slug, "model_version": version.ref}, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json() == {"model_version": [f"{version.ref} is retired; it cannot be evaluated."]}
    assert not EvaluationRun.objects.exists()


@pytest.mark.django_db
def test_a_judge_that_is_not_approved_is_refused(bob) -> None:
    judge = demo_version(bob, "demo-judge", "http://127.0.0.1:9/v1", status=Status.PROPOSED)
    suite = make_suite("judged", 2, scorer="llm-judge", scorer_config={})
    EvaluationSuite.objects.filter(pk=suite.pk).update(judge=judge, rubric="Is it right?")
    suite.refresh_from_db()
    version = demo_version(bob, "demo-swift", "http://127.0.0.1:9/v1")

    with pytest.raises(ValidationError) as refused:
        start_run(suite, version, by=bob, dispatch=False)

    assert refused.value.message_dict == {
        "suite": [f"The judge {judge.ref} is proposed, not approved; an unapproved model cannot grade."]
    }
    assert not EvaluationRun.objects.exists()


@pytest.mark.django_db
def test_only_engineers_and_officers_start_runs(bob, alice, dave) -> None:
    suite = make_suite("who-runs", 1)
    version = demo_version(bob, "demo-swift", "http://127.0.0.1:9/v1")

    with pytest.raises(PermissionDenied):
        start_run(suite, version, by=dave, dispatch=False)
    assert start_run(suite, version, by=alice, dispatch=False).requested_by == alice


@pytest.mark.django_db
def test_very_long_answers_are_truncated_and_marked(bob, demo_server) -> None:
    suite = make_suite("long-answers", 3, generic=True, max_output_chars=24, scorer="contains", scorer_config={})
    version = demo_version(bob, "demo-swift", demo_server.url)

    run = run_inline(start_run(suite, version, by=bob, dispatch=False))

    assert run.status == RunStatus.COMPLETED and run.errors == 0
    for result in CaseResult.objects.filter(run=run):
        assert result.truncated
        assert len(result.output) == 24 and result.output == "demo-swift (a Steward de"
        assert result.detail.endswith("(answer truncated)")
