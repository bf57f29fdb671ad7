"""The health page asks a real Celery worker to answer a ping task."""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from steward.celery import app
from steward.views import broker_check, worker_check

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


@pytest.fixture(autouse=True)
def _fresh_checks() -> Iterator[None]:
    """The broker and worker checks remember their result for a few seconds: start each test afresh."""
    broker_check.forget()
    worker_check.forget()
    yield
    broker_check.forget()
    worker_check.forget()


@pytest.mark.celery_worker
def test_health_reports_a_live_worker_as_json(client, db, celery_worker) -> None:
    response = client.get("/health/?format=json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body == {
        "ok": True,
        "status": "ok",
        "checks": {name: {"ok": True, "status": "ok"} for name in ("database", "cache", "broker", "worker")},
    }
    assert response["Cache-Control"].startswith("max-age=0")


@pytest.mark.celery_worker
def test_officers_see_each_checks_detail_and_others_only_the_status(client, client_for, alice, bob, celery_worker):
    response = client_for(alice).get("/health/")
    assert response.status_code == 200
    assert "all systems answer" in response.text and "a worker answered" in response.text
    detail = client_for(alice).get("/health/?format=json").json()["checks"]["broker"]["detail"]
    assert "127.0.0.1" in detail  # the broker's address: for officers only
    for anonymous_or_engineer in (client, client_for(bob)):
        page = anonymous_or_engineer.get("/health/").text
        assert "a worker answered" not in page and "127.0.0.1" not in page and "ok" in page
        body = anonymous_or_engineer.get("/health/?format=json").json()
        assert all("detail" not in check for check in body["checks"].values())


def test_health_is_degraded_without_a_worker(client, client_for, alice, db, settings) -> None:
    settings.STEWARD_HEALTH_PING_TIMEOUT = 1
    assert app.control.ping(timeout=1) == [], "a Celery worker is running on the test broker"
    app.control.purge()  # ping tasks left by earlier tests must not count

    response = client.get("/health/?format=json")

    assert response.status_code == 503
    body = response.json()
    assert body["ok"] is False and body["status"] == "degraded"
    assert body["checks"]["broker"] == {"ok": True, "status": "ok"}
    assert body["checks"]["worker"] == {"ok": False, "status": "degraded"}

    page = client_for(alice).get("/health/")
    assert page.status_code == 503
    assert "degraded" in page.text
    assert "no worker answered within 1 s (TimeoutError)" in page.text


def _queued_pings() -> int:
    import redis
    from django.conf import settings

    queue = redis.Redis.from_url(settings.CELERY_BROKER_URL).lrange("celery", 0, -1)
    return sum(1 for message in queue if json.loads(message)["headers"]["task"] == "steward.ping")


@pytest.mark.django_db(transaction=True)
def test_a_burst_of_health_probes_sends_one_ping_and_leaves_sign_in_alone(live_server, settings) -> None:
    if not settings.CELERY_BROKER_URL.startswith("redis"):
        pytest.skip("counts the ping tasks queued in the Redis broker")
    settings.STEWARD_HEALTH_PING_TIMEOUT = 3
    assert app.control.ping(timeout=1) == [], "a Celery worker is running on the test broker"
    app.control.purge()

    def probe(_: int) -> int:
        try:
            with urllib.request.urlopen(f"{live_server.url}/health/?format=json", timeout=30) as answer:
                return answer.status
        except urllib.error.HTTPError as error:
            return error.code

    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        probes = [pool.submit(probe, n) for n in range(50)]
        # While the one ping waits for a worker that never answers, sign-in still answers.
        with urllib.request.urlopen(f"{live_server.url}/login/", timeout=30) as sign_in:
            assert sign_in.status == 200
        statuses = [future.result() for future in probes]

    assert _queued_pings() == 1  # one ping for fifty probes
    assert set(statuses) <= {200, 503} and 503 in statuses
    app.control.purge()
