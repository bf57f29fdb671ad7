"""Celery tasks of the registry: evaluation runs. Thin: they take ids and call registry.evaluation.runs."""

from celery import shared_task

from .evaluation import runs


@shared_task(name="registry.execute_run", acks_late=True)
def execute_run(run_id: int) -> int:
    """Split the run's remaining cases into chunks and fan them out to the workers."""
    chunks = runs.plan_run(run_id)
    for case_ids in chunks:
        run_chunk.delay(run_id, case_ids)
    return len(chunks)


@shared_task(name="registry.run_chunk", acks_late=True)
def run_chunk(run_id: int, case_ids: list[int]) -> int:
    """Answer and score one chunk of cases; idempotent, so a redelivered chunk repeats nothing saved."""
    return runs.run_chunk(run_id, case_ids)


@shared_task(name="registry.dispatch_due_runs", acks_late=True)
def dispatch_due_runs() -> int:
    """Every minute: start the scheduled suites whose interval has passed."""
    return len(runs.dispatch_due_runs())


@shared_task(name="registry.watchdog", acks_late=True)
def watchdog() -> dict[str, int]:
    """Every minute: resume, then fail, runs that stopped making progress."""
    return runs.watchdog()
