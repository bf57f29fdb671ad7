"""Running evaluations: start, execute in chunks with bounded async concurrency, finish, watch.

A run's cases are split into chunks that Celery workers take in parallel; inside a chunk, an
asyncio loop keeps ``suite.concurrency`` requests in flight. Results are written once per
(run, case), so a chunk that is delivered twice (a worker died after starting it) repeats no
work that was saved. Whichever chunk sees the last result finishes the run; a watchdog resumes
or fails runs that stopped making progress.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import time
from collections import defaultdict

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone

from audits import events as audit
from steward import degraded
from steward.degraded import ServiceUnavailable

from ..models import (
    FINISHED_RUN_STATUSES,
    CaseResult,
    EvaluationCase,
    EvaluationRun,
    EvaluationSuite,
    Modality,
    ModelVersion,
    RunStatus,
    RunTrigger,
    Status,
)
from ..signals import evaluation_run_finished
from . import scorers
from .endpoints import (
    CLIENTS,
    BoundKey,
    CredentialRefused,
    EndpointError,
    bind_key,
    client_for,
    endpoint_session,
    unreachable,
)

RUN_PERMISSION = "registry.run_evaluationsuite"
CHUNK_SIZE = 100
# A chunk holds at least this many rounds of the suite's concurrency: each chunk pays a start-up
# (loading, connecting) and a tail (fewer requests in flight as it ends), which small chunks repeat.
CHUNK_ROUNDS = 16
FLUSH_EVERY_SECONDS = 0.5
MAX_RESUMES = 1
RUNNABLE_STATUSES = (Status.PROPOSED, Status.APPROVED, Status.RESTRICTED, Status.DEPRECATED)
# Suites send chat prompts: models that answer them with text. Embedding and image models do not.
RUNNABLE_MODALITIES = (Modality.TEXT, Modality.MULTIMODAL, Modality.AUDIO)


# --- starting -----------------------------------------------------------------------------------


def unevaluable_reason(version: ModelVersion) -> str:
    """Why no run of any suite makes sense for ``version`` ("" when one does)."""
    if version.status not in RUNNABLE_STATUSES:
        return f"{version.ref} is {version.get_status_display().lower()}; it cannot be evaluated."
    if version.model.modality not in RUNNABLE_MODALITIES:
        return (
            f"{version.ref} is a {version.model.get_modality_display().lower()} model; suites send chat prompts, "
            "which it does not answer."
        )
    if version.endpoint_kind not in CLIENTS:
        return (
            f"{version.ref} uses endpoint kind {version.endpoint_kind!r}, which Steward cannot call yet "
            f"(supported: {', '.join(CLIENTS)})."
        )
    return ""


def evaluable_versions() -> QuerySet[ModelVersion]:
    """The versions a run makes sense for: those ``unevaluable_reason`` has nothing against."""
    return ModelVersion.objects.filter(
        status__in=RUNNABLE_STATUSES, model__modality__in=RUNNABLE_MODALITIES, endpoint_kind__in=list(CLIENTS)
    )


def check_runnable(suite: EvaluationSuite, version: ModelVersion) -> None:
    """Refuse, with a clear reason, a run that cannot give a meaningful answer."""
    if reason := unevaluable_reason(version):
        raise ValidationError({"model_version": [reason]})
    if not suite.cases.exists():
        raise ValidationError({"suite": [f"{suite.name} has no cases."]})
    uses_judge = suite.scorer == scorers.JUDGE or suite.cases.filter(scorer=scorers.JUDGE).exists()
    if uses_judge:
        if suite.judge is None:
            raise ValidationError({"suite": [f"{suite.name} grades with an LLM judge but names no judge model."]})
        if suite.judge.status != Status.APPROVED:
            raise ValidationError(
                {
                    "suite": [
                        f"The judge {suite.judge.ref} is {suite.judge.get_status_display().lower()}, "
                        "not approved; an unapproved model cannot grade."
                    ]
                }
            )
    try:
        scorers.check_scorer(suite.scorer, suite.scorer_config)
    except scorers.ScorerConfigError as error:
        raise ValidationError({"suite": [str(error)]}) from None


def start_run(
    suite: EvaluationSuite,
    version: ModelVersion,
    by=None,
    trigger: str = RunTrigger.MANUAL,
    dispatch: bool = True,
    idempotency_key: str = "",
) -> EvaluationRun:
    """Create a run and hand it to the workers (after the transaction commits).

    When the broker does not answer, raises ``ServiceUnavailable`` before anything is written. Should
    it stop answering between that check and the hand-over, the run is failed with the reason (so no
    run stays queued for nobody) and ``ServiceUnavailable`` raised too. ``idempotency_key`` is kept
    on the run; a second run by the same person with the same key is refused by the database
    (IntegrityError), which is how a client's retry finds the first one.
    """
    if by is not None and not by.has_perm(RUN_PERMISSION):
        raise PermissionDenied("Only engineers and officers can start evaluation runs.")
    check_runnable(suite, version)
    refusal = credential_refusal(suite, version)
    if dispatch and not refusal:
        check_broker()
    with transaction.atomic():
        run = EvaluationRun.objects.create(
            suite=suite,
            model_version=version,
            trigger=trigger,
            requested_by=by,
            total=suite.cases.count(),
            idempotency_key=idempotency_key,
        )
        audit.record(
            "evaluation_run.start",
            actor=by,
            obj=run,
            after={"suite": suite.slug, "model_version": version.ref, "trigger": trigger, "cases": run.total},
        )
        if refusal:
            # Fails at once, with the reason on its page: no worker takes it, no request leaves.
            fail_run(run, refusal)
            run.refresh_from_db()
        elif dispatch:
            transaction.on_commit(lambda: _hand_over(run))
    if getattr(run, "hand_over_error", ""):
        raise ServiceUnavailable("broker", run.hand_over_error)
    return run


# A broker that does not answer must not hold a request for long (the answer is 503 within 2 s).
BROKER_CHECK_TIMEOUT_SECONDS = 1.0
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


def check_broker() -> None:
    """Raise ``ServiceUnavailable`` unless the Celery broker accepts a connection now."""
    from steward.celery import app

    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=0, timeout=BROKER_CHECK_TIMEOUT_SECONDS)
    except Exception as error:  # noqa: BLE001 - whatever the transport raises means "not now"
        degraded.noted("broker", error)
        raise ServiceUnavailable("broker", "the task queue (Celery broker) does not answer") from error
    degraded.recovered("broker")


def _hand_over(run: EvaluationRun) -> None:
    """Send the run to the workers; if the broker fails now, fail the run with the reason."""
    from ..tasks import execute_run

    try:
        # Nobody waits for execute_run's result: not subscribing to it spares the result backend's
        # own reconnection loop (twenty seconds) when Redis is down.
        execute_run.apply_async((run.pk,), ignore_result=True, retry=True, retry_policy=PUBLISH_RETRY_POLICY)
    except Exception as error:  # noqa: BLE001
        degraded.noted("broker", error)
        reason = "the task queue (Celery broker) did not accept the run"
        fail_run(run, f"{reason}: {type(error).__name__}: {error}".strip())
        run.hand_over_error = reason


def bound_keys(suite: EvaluationSuite, version: ModelVersion, base_url: str | None = None) -> dict[int, BoundKey]:
    """The keys of the version (and the suite's judge) bound to their hosts; raises CredentialRefused."""
    keys = {version.pk: bind_key(version, base_url)}
    if suite.judge is not None:
        keys[suite.judge.pk] = bind_key(suite.judge, base_url)
    return keys


def credential_refusal(suite: EvaluationSuite, version: ModelVersion) -> str:
    """Why the run's requests may not carry their keys ("" when they may)."""
    try:
        bound_keys(suite, version)
    except CredentialRefused as error:
        return str(error)
    return ""


def cancel_run(run: EvaluationRun, by) -> None:
    if by is not None and not by.has_perm(RUN_PERMISSION):
        raise PermissionDenied("Only engineers and officers can cancel evaluation runs.")
    with transaction.atomic():
        locked = EvaluationRun.objects.select_for_update().get(pk=run.pk)
        if locked.is_finished:
            raise ValidationError({"status": [f"Run {run.pk} is already {locked.get_status_display().lower()}."]})
        locked.status = RunStatus.CANCELLED
        locked.finished_at = timezone.now()
        locked.detail = f"cancelled by {by.get_username() if by else 'the system'}"
        locked.save(update_fields=["status", "finished_at", "detail"])
        audit.record("evaluation_run.cancel", actor=by, obj=locked, after={"done": locked.done, "total": locked.total})
    run.refresh_from_db()


# --- executing ----------------------------------------------------------------------------------


def pending_case_ids(run: EvaluationRun) -> list[int]:
    done = CaseResult.objects.filter(run=run).values_list("case_id", flat=True)
    return list(run.suite.cases.exclude(pk__in=done).order_by("position", "pk").values_list("pk", flat=True))


def preflight(run: EvaluationRun, base_url: str | None = None) -> str:
    """Why the run cannot start ("" when it can): its keys are bound to their hosts, and every endpoint
    it calls (the version's, the judge's) accepts a connection. Nothing is sent to find out."""
    try:
        bound_keys(run.suite, run.model_version, base_url)
    except CredentialRefused as error:
        return str(error)
    for version in (run.model_version, run.suite.judge):
        if version is None:
            continue
        if reason := unreachable(base_url or version.base_url, settings.STEWARD_EVALUATION_PREFLIGHT_TIMEOUT):
            return f"Pre-flight check: {reason}; no case was sent"
    return ""


def plan_run(run_id: int, base_url: str | None = None) -> list[list[int]]:
    """Mark the run as running and split its remaining cases into chunks (empty when nothing is left).

    A run that has not started yet is checked first (``preflight``) and fails at once when its
    endpoints cannot be reached, rather than after every case's retries."""
    run = EvaluationRun.objects.select_related("suite__judge", "model_version").get(pk=run_id)
    if run.status == RunStatus.QUEUED and (reason := preflight(run, base_url)):
        fail_run(run, reason)
        return []
    with transaction.atomic():
        run = EvaluationRun.objects.select_for_update().select_related("suite").get(pk=run_id)
        if run.is_finished:
            return []
        now = timezone.now()
        if run.status == RunStatus.QUEUED:
            run.status = RunStatus.RUNNING
            run.started_at = now
        run.last_progress_at = now
        run.save(update_fields=["status", "started_at", "last_progress_at"])
    pending = pending_case_ids(run)
    if not pending:
        finish_run(run_id)
        return []
    size = chunk_size(run.suite)
    return [pending[i : i + size] for i in range(0, len(pending), size)]


def chunk_size(suite: EvaluationSuite) -> int:
    """Cases per chunk: CHUNK_SIZE, or CHUNK_ROUNDS rounds of the suite's concurrency when that is more."""
    return max(CHUNK_SIZE, suite.concurrency * CHUNK_ROUNDS)


def run_chunk(run_id: int, case_ids: list[int], base_url: str | None = None, live: bool = True) -> int:
    """Answer and score these cases (those not answered yet); returns how many were answered.

    ``base_url`` sends the requests to another endpoint than the version's (the demo seed's own server).
    ``live`` saves results as they come, from a thread of their own (progress bars move during a chunk);
    without it they are saved at the end of the chunk in this thread (inside a caller's transaction).
    """
    run = EvaluationRun.objects.select_related("suite__judge__model__provider", "model_version__model__provider").get(
        pk=run_id
    )
    if run.is_finished:
        return 0
    answered = set(CaseResult.objects.filter(run=run, case_id__in=case_ids).values_list("case_id", flat=True))
    cases = list(EvaluationCase.objects.filter(pk__in=[c for c in case_ids if c not in answered]).order_by("position"))
    if cases:
        if base_url:
            run.model_version.base_url = base_url
            if run.suite.judge:
                run.suite.judge.base_url = base_url
        try:
            # Checked again here: a credential may have been revoked since the run was started.
            keys = bound_keys(run.suite, run.model_version)
            results = _run_async(_answer(run, cases, keys, live))
        except EndpointError as error:  # a refused credential, or a CA bundle that cannot be loaded
            fail_run(run, str(error))
            return 0
        if results:
            _save_results(run.pk, results)
    if _complete(run_id):
        finish_run(run_id)
    return len(cases)


def _run_async(coroutine):
    """Run a coroutine to completion, also from a thread whose event loop is already running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="evaluation") as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _complete(run_id: int) -> bool:
    run = EvaluationRun.objects.get(pk=run_id)
    return not run.is_finished and CaseResult.objects.filter(run_id=run_id).count() >= run.total


async def _answer(
    run: EvaluationRun, cases: list[EvaluationCase], keys: dict[int, BoundKey], live: bool = True
) -> list[CaseResult]:
    """Ask and score every case; returns the results not saved yet (all of them when not ``live``)."""
    suite, version = run.suite, run.model_version
    # At most ``suite.concurrency`` cases at a time, each asking its question and then the judge one
    # request after the other: the session needs a connection per slot, no more.
    concurrency = min(suite.concurrency, len(cases))
    slots = asyncio.Semaphore(concurrency)
    http = endpoint_session(concurrency)
    timeout = settings.STEWARD_EVALUATION_TIMEOUT
    client = client_for(version, http, key=keys[version.pk], timeout=timeout)
    judge = client_for(suite.judge, http, key=keys[suite.judge.pk], timeout=timeout) if suite.judge else None
    # The ORM is synchronous: every database call of this loop goes to one thread of its own.
    database = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="evaluation-db")
    loop = asyncio.get_running_loop()
    pending: list[CaseResult] = []
    state = {"last_flush": time.monotonic(), "cancelled": False}

    async def flush(force: bool = False) -> None:
        if not live or (not pending and not force):
            return
        if not force and time.monotonic() - state["last_flush"] < FLUSH_EVERY_SECONDS:
            return
        batch = list(pending)
        pending.clear()
        state["last_flush"] = time.monotonic()
        state["cancelled"] = await loop.run_in_executor(database, _save_results, run.pk, batch)

    async def one(case: EvaluationCase) -> None:
        async with slots:
            if state["cancelled"]:
                return
            pending.append(await _answer_case(run, suite, case, client, judge))
        await flush()

    try:
        await asyncio.gather(*(one(case) for case in cases))
    finally:
        await http.close()
        if live:
            await flush(force=True)
            await loop.run_in_executor(database, _close_connection)
        database.shutdown(wait=True)
    return [] if live else pending


async def _answer_case(run: EvaluationRun, suite: EvaluationSuite, case: EvaluationCase, client, judge) -> CaseResult:
    result = CaseResult(run_id=run.pk, case=case)
    try:
        completion = await client.complete(case.messages)
    except EndpointError as error:
        result.error = str(error)[:1000]
        result.attempts = error.attempts
        return result
    text = completion.text
    if len(text) > suite.max_output_chars:
        text, result.truncated = text[: suite.max_output_chars], True
    result.output = text
    result.latency_ms = completion.latency_ms
    result.input_tokens = completion.input_tokens
    result.output_tokens = completion.output_tokens
    result.cost_micro_usd = completion.cost_micro_usd
    result.attempts = completion.attempts
    name = case.scorer or suite.scorer
    config = {**suite.scorer_config, **case.scorer_config}
    try:
        if name == scorers.JUDGE:
            question = "\n".join(m.get("content", "") for m in case.messages if m.get("role") == "user")

            async def ask(messages: list[dict]) -> str:
                return (await judge.complete(messages)).text

            score = await scorers.judge(text, case.expected, question, suite.rubric, config, ask)
        else:
            score = scorers.SCORERS[name](text, case.expected, config)
    except (scorers.ScorerConfigError, EndpointError, KeyError) as error:
        result.error = f"scoring failed: {error}"[:1000]
        return result
    result.score_bp, result.passed, result.label, result.detail = (
        score.score_bp,
        score.passed,
        score.label,
        score.detail,
    )
    if result.truncated:
        result.detail = (result.detail + " (answer truncated)").strip()
    return result


def _close_connection() -> None:
    # Looked up in the calling thread: each thread has its own database connection.
    connection.close()


def _save_results(run_id: int, results: list[CaseResult]) -> bool:
    """Write results once each and bring the run's counters up to date; True when the run was cancelled."""
    with transaction.atomic():
        CaseResult.objects.bulk_create(results, ignore_conflicts=True)
        counts = CaseResult.objects.filter(run_id=run_id).aggregate(
            done=Count("pk"), errors=Count("pk", filter=~Q(error=""))
        )
        EvaluationRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(
            done=counts["done"], errors=counts["errors"], last_progress_at=timezone.now()
        )
        status = EvaluationRun.objects.filter(pk=run_id).values_list("status", flat=True).first()
    return status == RunStatus.CANCELLED


# --- finishing ----------------------------------------------------------------------------------


def _percentile(values: list[int], fraction: float) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(fraction * (len(ordered) - 1)))))
    return ordered[index]


def finish_run(run_id: int) -> EvaluationRun:
    """Score groups (bias), aggregate the figures, set pass or fail, update the version's latency."""
    with transaction.atomic():
        run = EvaluationRun.objects.select_for_update().select_related("suite", "model_version").get(pk=run_id)
        if run.is_finished:
            return run
        results = list(CaseResult.objects.filter(run=run).select_related("case"))
        grouped: dict[str, dict[int, str]] = defaultdict(dict)
        for result in results:
            scorer = result.case.scorer or run.suite.scorer
            if scorer == "group-consistency" and result.case.group and not result.error:
                grouped[result.case.group][result.pk] = result.label
        if grouped:
            group_scores = scorers.score_groups(grouped)
            changed = []
            for result in results:
                if result.pk in group_scores:
                    score = group_scores[result.pk]
                    result.score_bp, result.passed, result.detail = score.score_bp, score.passed, score.detail
                    changed.append(result)
            CaseResult.objects.bulk_update(changed, ["score_bp", "passed", "detail"], batch_size=500)
        latencies = [r.latency_ms for r in results if r.latency_ms is not None and not r.error]
        answered = [r for r in results if not r.error]
        totals = CaseResult.objects.filter(run=run).aggregate(cost=Sum("cost_micro_usd"))
        run.done = len(results)
        run.errors = len(results) - len(answered)
        run.score_bp = int(sum(r.score_bp for r in results) / run.total) if run.total else 0
        run.passed = run.score_bp >= run.suite.pass_threshold_bp
        run.latency_p50_ms = _percentile(latencies, 0.50)
        run.latency_p95_ms = _percentile(latencies, 0.95)
        run.cost_micro_usd = totals["cost"] or 0
        run.cost_per_1k_micro_usd = int(run.cost_micro_usd * 1000 / len(answered)) if answered else None
        errored = run.total and run.errors > settings.STEWARD_EVALUATION_ERRORED_SHARE * run.total
        run.status = RunStatus.ERRORED if errored else RunStatus.COMPLETED
        run.finished_at = timezone.now()
        run.last_progress_at = run.finished_at
        if errored:
            run.passed = False
            run.detail = (
                f"{run.errors} of {run.total} cases failed to get an answer: the run is errored "
                "and counts for no score and no gate"
            )
        elif run.errors:
            run.detail = f"{run.errors} of {run.total} cases failed to get an answer"
        run.save()
        if run.latency_p50_ms is not None and not errored:
            ModelVersion.objects.filter(pk=run.model_version_id).update(
                latency_p50_ms=run.latency_p50_ms, latency_p95_ms=run.latency_p95_ms
            )
        audit.record(
            "evaluation_run.finish",
            obj=run,
            after={
                "status": run.status,
                "score_bp": run.score_bp,
                "passed": run.passed,
                "errors": run.errors,
                "total": run.total,
            },
        )
    evaluation_run_finished.send(sender=EvaluationRun, run=run)
    return run


def fail_run(run: EvaluationRun, reason: str) -> None:
    with transaction.atomic():
        updated = (
            EvaluationRun.objects.filter(pk=run.pk)
            .exclude(status__in=FINISHED_RUN_STATUSES)
            .update(status=RunStatus.FAILED, finished_at=timezone.now(), detail=reason)
        )
        if updated:
            audit.record("evaluation_run.fail", obj=run, comment=reason)


# --- the watchdog and the schedule --------------------------------------------------------------


def watchdog(now: dt.datetime | None = None, stall_seconds: int | None = None) -> dict[str, int]:
    """Resume once, then fail, runs that made no progress for ``stall_seconds``: none stays running forever."""
    from ..tasks import execute_run

    now = now or timezone.now()
    stall = dt.timedelta(seconds=stall_seconds if stall_seconds is not None else settings.STEWARD_RUN_STALL_SECONDS)
    resumed = failed = 0
    stuck = EvaluationRun.objects.filter(status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).filter(
        Q(last_progress_at__lt=now - stall) | Q(last_progress_at__isnull=True, created_at__lt=now - stall)
    )
    for run in stuck:
        if run.resumes < MAX_RESUMES:
            EvaluationRun.objects.filter(pk=run.pk).update(resumes=run.resumes + 1, last_progress_at=now)
            execute_run.delay(run.pk)
            resumed += 1
        else:
            fail_run(
                run,
                f"no progress for {int(stall.total_seconds())} s after {run.resumes} resume(s): "
                "the workers running it were lost",
            )
            failed += 1
    return {"resumed": resumed, "failed": failed}


def dispatch_due_runs(now: dt.datetime | None = None) -> list[EvaluationRun]:
    """Start the scheduled suites against the approved versions they track, when their interval has passed."""
    now = now or timezone.now()
    started = []
    for suite in EvaluationSuite.objects.filter(schedule_minutes__isnull=False):
        interval = dt.timedelta(minutes=suite.schedule_minutes)
        tracked = EvaluationRun.objects.filter(suite=suite, model_version__status=Status.APPROVED).values(
            "model_version"
        )
        for version in ModelVersion.objects.with_related().filter(pk__in=tracked):
            latest = EvaluationRun.objects.filter(suite=suite, model_version=version).order_by("-created_at").first()
            if latest is not None and not latest.is_finished:
                continue
            if latest is not None and latest.created_at > now - interval:
                continue
            try:
                started.append(start_run(suite, version, trigger=RunTrigger.SCHEDULE))
            except ValidationError:
                continue
            except ServiceUnavailable:
                return started  # nothing was written: the next minute's dispatch tries again
    return started


def start_runs_for_proposal(version: ModelVersion) -> list[EvaluationRun]:
    """With STEWARD_EVALUATE_ON_PROPOSAL: run every suite against a newly proposed version."""
    runs = []
    for suite in EvaluationSuite.objects.all():
        try:
            runs.append(start_run(suite, version, trigger=RunTrigger.PROPOSAL))
        except ValidationError:
            continue
        except ServiceUnavailable:
            break  # the proposal stands; its runs can be started by hand once the broker answers
    return runs


def run_inline(run: EvaluationRun, base_url: str | None = None) -> EvaluationRun:
    """Execute a run in this process, without workers (the demo seed; tests of the scoring path)."""
    for chunk in plan_run(run.pk, base_url):
        run_chunk(run.pk, chunk, base_url, live=False)
    return EvaluationRun.objects.get(pk=run.pk)


def latest_runs(version: ModelVersion) -> list[EvaluationRun]:
    """The newest finished run of each suite against ``version``."""
    seen: set[int] = set()
    latest = []
    for run in (
        EvaluationRun.objects.filter(model_version=version, status=RunStatus.COMPLETED)
        .select_related("suite")
        .order_by("-finished_at")
    ):
        if run.suite_id not in seen:
            seen.add(run.suite_id)
            latest.append(run)
    return latest
