"""A real Celery worker for the tests that are about tasks: a subprocess on the test broker and database."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from steward.celery import app

PROJECT_ROOT = Path(__file__).resolve().parents[1]
WORKER_START_TIMEOUT = 30


def worker_database_url() -> str:
    """The test database (``test_<name>``) as a DATABASE_URL, for a worker subprocess."""
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@contextlib.contextmanager
def celery_worker(concurrency: int = 2, **env: str) -> Iterator[subprocess.Popen]:
    """A Celery worker subprocess on the test broker and the test database; stopped at the end.

    It runs in a session of its own, so that ``os.killpg`` reaches its pool processes too.
    """
    if connection.vendor != "postgresql":
        pytest.skip("a worker subprocess needs the PostgreSQL test database (DATABASE_URL=postgres://…)")
    node = f"evals-{uuid.uuid4().hex[:8]}"
    command = [sys.executable, "-m", "celery", "-A", "steward", "worker", "--pool=prefork"]
    command += [f"--concurrency={concurrency}", "-n", f"{node}@%h", "-l", "warning"]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    environment = {**os.environ, "DATABASE_URL": worker_database_url(), "STEWARD_EVALUATION_TIMEOUT": "10", **env}
    worker = subprocess.Popen(command, cwd=PROJECT_ROOT, env=environment, start_new_session=True)
    try:
        deadline = time.monotonic() + WORKER_START_TIMEOUT
        while not any(next(iter(reply)).startswith(f"{node}@") for reply in app.control.ping(timeout=0.5)):
            if worker.poll() is not None:
                pytest.fail(f"the Celery worker exited with code {worker.returncode} before answering")
            if time.monotonic() > deadline:
                pytest.fail(f"the Celery worker did not answer a ping within {WORKER_START_TIMEOUT} s")
        yield worker
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()


def kill_worker(worker: subprocess.Popen) -> None:
    """SIGKILL the worker and its pool processes: nothing gets to clean up or acknowledge."""
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()


def forget_unacknowledged() -> None:
    """Drop the messages a killed worker left unacknowledged in Redis: the broker would hand them out
    again after its visibility timeout (an hour), to some later test run's worker."""
    if settings.CELERY_BROKER_URL.startswith("redis"):
        import redis

        redis.Redis.from_url(settings.CELERY_BROKER_URL).delete("unacked", "unacked_index")
