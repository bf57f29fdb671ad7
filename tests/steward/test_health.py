"""The health page asks a real Celery worker to answer a ping task."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from steward.celery import app

PROJECT_ROOT = Path(__file__).resolve().parents[2]
WORKER_START_TIMEOUT = 30


@pytest.fixture
def celery_worker() -> Iterator[str]:
    """A real worker (``celery -A steward worker``) on the test broker; yields its node name.

    It runs with the test run's environment, so it uses the same CELERY_BROKER_URL. The ping task
    touches no database, so the worker needs none of the test database.
    """
    node = f"health-{uuid.uuid4().hex[:8]}@%h"
    command = [sys.executable, "-m", "celery", "-A", "steward", "worker"]
    command += ["--pool=solo", "--concurrency=1", "-l", "warning", "-n", node, "--without-gossip", "--without-mingle"]
    worker = subprocess.Popen(command, cwd=PROJECT_ROOT, env=os.environ.copy())
    try:
        name = _wait_until_it_answers(worker, node)
        yield name
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def _wait_until_it_answers(worker: subprocess.Popen, node: str) -> str:
    deadline = time.monotonic() + WORKER_START_TIMEOUT
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            pytest.fail(f"the Celery worker exited with code {worker.returncode} before answering")
        for reply in app.control.ping(timeout=1):
            name = next(iter(reply))
            if name.startswith(node.split("@")[0] + "@"):
                return name
    pytest.fail(f"the Celery worker did not answer a ping within {WORKER_START_TIMEOUT} s")


@pytest.mark.celery_worker
def test_health_reports_a_live_worker_as_json(client, db, celery_worker) -> None:
    response = client.get("/health/?format=json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["ok"] is True
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["broker"]["ok"] is True
    assert body["checks"]["worker"]["ok"] is True
    assert response["Cache-Control"].startswith("max-age=0")


@pytest.mark.celery_worker
def test_health_page_says_a_worker_answered(client, db, celery_worker) -> None:
    response = client.get("/health/")

    assert response.status_code == 200
    assert "all systems answer" in response.text
    assert "a worker answered" in response.text


def test_health_is_degraded_without_a_worker(client, db, settings) -> None:
    settings.STEWARD_HEALTH_PING_TIMEOUT = 1
    assert app.control.ping(timeout=1) == [], "a Celery worker is running on the test broker"
    app.control.purge()  # ping tasks left by earlier tests must not count

    response = client.get("/health/?format=json")

    assert response.status_code == 503
    body = response.json()
    assert body["ok"] is False
    assert body["checks"]["broker"]["ok"] is True
    assert body["checks"]["worker"] == {"ok": False, "detail": "no worker answered within 1 s (TimeoutError)"}

    page = client.get("/health/")
    assert page.status_code == 503
    assert "degraded" in page.text
    assert "no worker answered" in page.text
