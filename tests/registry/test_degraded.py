"""Starting an evaluation run while the Celery broker does not answer, and a client's retries with an
Idempotency-Key (docs/operations.md, "When a service is down").

The broker is taken away from one Steward process only: gunicorn pointed at a closed port instead of
Redis, while the tests, the cache and everyone else keep the machine's Redis.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from urllib.parse import urlparse

import pytest
from django.conf import settings
from django.test import Client

from audits.models import AuditEvent
from registry.evaluation.suites import SuiteSpec, save_suite
from registry.models import EvaluationRun, EvaluationSuite, ModelVersion, Status
from steward.celery import app
from steward.models import ApiToken
from steward.roles import sync_role_permissions
from tests.factories import approved_credential, make_model, make_provider, make_version
from tests.outage import PROJECT_ROOT, closed_port, relay_to, steward_server
from tests.workers import worker_database_url

pytestmark = pytest.mark.skipif(
    not settings.CELERY_BROKER_URL.startswith("redis"), reason="takes the Redis broker away from one Steward process"
)

RUNS = "/api/v1/evaluation-runs"


def make_suite(slug: str) -> EvaluationSuite:
    cases = [
        {
            "key": f"case-{n}",
            "position": n,
            "messages": [{"role": "user", "content": f"Classify this support ticket. Ticket: refund me ({n})"}],
            "expected": "billing",
            "scorer": "",
            "scorer_config": {},
            "tags": [],
            "group": "",
        }
        for n in range(2)
    ]
    fields = {
        "name": slug.capitalize(),
        "slug": slug,
        "category": "accuracy",
        "scorer": "label",
        "scorer_config": {"labels": ["billing", "technical", "account"]},
    }
    return save_suite(SuiteSpec(fields, cases), None)[0]


@pytest.fixture
def world(transactional_db, request) -> dict:
    """bob the engineer with an API token, two suites and an approved version whose key may be sent."""
    sync_role_permissions()  # a transactional test's flush removed the role groups
    bob = request.getfixturevalue("bob")
    approved_credential()
    version = make_version(
        bob,
        model=make_model(provider=make_provider(name="Demo", slug="demo"), slug="demo-small"),
        status=Status.APPROVED,
        version="1",
        base_url="http://127.0.0.1:9/v1",
        provider_model_id="demo-small",
        api_key_env="DEMO_ENDPOINT_API_KEY",
    )
    _, token = ApiToken.issue(bob, "ci")
    return {
        "bob": bob,
        "token": token,
        "version": version,
        "triage": make_suite("triage"),
        "other": make_suite("other"),
    }


def start(url: str, token: str, suite: str, version: ModelVersion, key: str | None = None):
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    body = json.dumps({"suite": suite, "model_version": version.ref}).encode()
    request = urllib.request.Request(url + RUNS, data=body, method="POST", headers=headers)
    began = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - 127.0.0.1
            status, headers, content = answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        status, headers, content = error.code, dict(error.headers), error.read()
    return status, {k.lower(): v for k, v in headers.items()}, json.loads(content or b"null"), time.monotonic() - began


def run_events() -> int:
    return AuditEvent.objects.filter(action__startswith="evaluation_run.").count()


def test_without_the_broker_starting_a_run_answers_503_at_once_and_leaves_nothing(world, tmp_path):
    with (
        closed_port() as port,
        steward_server(
            tmp_path,
            CELERY_BROKER_URL=f"redis://127.0.0.1:{port}/9",
            STEWARD_REDIS_URL=settings.CELERY_BROKER_URL,  # only the broker is away
        ) as server,
    ):
        for key in (None, "retry-1", "retry-1"):
            status, headers, body, took = start(server.url, world["token"], "triage", world["version"], key)
            assert status == 503, body
            assert took < 2.0, f"answered after {took:.1f} s"
            assert headers["retry-after"] == "30"
            assert body["service"] == "broker" and "does not answer" in body["detail"]
        assert EvaluationRun.objects.count() == 0
        assert run_events() == 0

        # The browser form: the suite's page again, 503, with the reason and nothing started.
        browser = Client()
        browser.force_login(world["bob"])
        cookie = f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}"
        with urllib.request.urlopen(  # noqa: S310
            urllib.request.Request(f"{server.url}/registry/suites/triage/", headers={"Cookie": cookie}), timeout=10
        ) as page:
            csrf_cookie = re.search(r"csrftoken=([^;]+)", page.headers["Set-Cookie"]).group(1)
            csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.read().decode()).group(1)
        form = f"csrfmiddlewaretoken={csrf}&model_version={world['version'].pk}".encode()
        request = urllib.request.Request(
            f"{server.url}/registry/suites/triage/run/",
            data=form,
            method="POST",
            headers={
                "Cookie": f"{cookie}; csrftoken={csrf_cookie}",
                "Content-Type": "application/x-www-form-urlencoded",
                "Referer": f"{server.url}/registry/suites/triage/",
            },
        )
        began = time.monotonic()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)  # noqa: S310
        assert time.monotonic() - began < 2.0
        assert refused.value.code == 503 and refused.value.headers["Retry-After"] == "30"
        page = refused.value.read().decode()
        assert "does not answer" in page and "Nothing was started." in page
        assert EvaluationRun.objects.count() == 0
        assert run_events() == 0

        with pytest.raises(urllib.error.HTTPError) as health:
            urllib.request.urlopen(f"{server.url}/health/?format=json", timeout=30)  # noqa: S310
        shown = json.loads(health.value.read())
        assert health.value.code == 503 and shown["checks"]["broker"] == {"ok": False, "status": "degraded"}
        assert "evaluation run answers 503" in shown["degraded"]["broker"]["answer"]
        assert shown["degraded"]["broker"]["answers_given"] == 4


def test_a_retry_with_the_same_idempotency_key_starts_no_second_run(world, live_server):
    url, token, version = live_server.url, world["token"], world["version"]
    app.control.purge()
    try:
        status, headers, first, _ = start(url, token, "triage", version, "nightly-2026-12-03")
        assert status == 201, first
        assert "idempotent-replayed" not in headers

        status, headers, again, _ = start(url, token, "triage", version, "nightly-2026-12-03")
        assert (status, headers["idempotent-replayed"], again["id"]) == (201, "true", first["id"])

        # Retries sent at once: whichever arrives second gets the first one's run.
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            answers = list(pool.map(lambda _: start(url, token, "triage", version, "burst"), range(4)))
        assert {answer[0] for answer in answers} == {201}
        assert len({answer[2]["id"] for answer in answers}) == 1

        status, _, refused, _ = start(url, token, "other", version, "nightly-2026-12-03")
        assert status == 422
        assert refused == {
            "Idempotency-Key": [
                f"This key started run {first['id']} (triage against {version.ref}); use a new key for another run."
            ]
        }

        for bad in ("tab\there", "x" * 256, "naïve"):
            status, _, refused, _ = start(url, token, "triage", version, bad)
            assert status == 400 and list(refused) == ["Idempotency-Key"], (bad, refused)

        assert EvaluationRun.objects.filter(idempotency_key="nightly-2026-12-03").count() == 1
        assert EvaluationRun.objects.count() == 2
        assert run_events() == 2

        # Without a key every request is a run of its own, as before.
        start(url, token, "triage", version)
        start(url, token, "triage", version)
        assert EvaluationRun.objects.count() == 4
    finally:
        app.control.purge()


HAND_OVER_SCRIPT = """
import json, sys
import django
django.setup()
from django.contrib.auth.models import User
from django.db import transaction
from registry.evaluation.runs import start_run
from registry.models import EvaluationSuite, ModelVersion

def wait_for_the_cut():
    print("checked", flush=True)
    sys.stdin.readline()

with transaction.atomic():
    # Runs at the commit, before the hand-over: the broker answered the check, and is gone now.
    transaction.on_commit(wait_for_the_cut)
    run = start_run(EvaluationSuite.objects.get(slug="triage"), ModelVersion.objects.get(pk=int(sys.argv[1])),
                    by=User.objects.get(username="bob"))
print(json.dumps({"run": run.pk, "error": getattr(run, "hand_over_error", "")}), flush=True)
"""


def test_a_run_the_broker_refuses_after_the_check_is_failed_with_the_reason_not_left_queued(world, tmp_path):
    """The broker answers the check, then stops answering before the run is handed over."""
    broker = urlparse(settings.CELERY_BROKER_URL)
    with relay_to(broker.hostname or "127.0.0.1", broker.port or 6379) as relay:
        env = {
            **os.environ,
            "DATABASE_URL": worker_database_url(),
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{relay.port}{broker.path}",
            "STEWARD_REDIS_URL": settings.CELERY_BROKER_URL,
        }
        script = subprocess.Popen(
            [sys.executable, "-c", HAND_OVER_SCRIPT, str(world["version"].pk)],
            cwd=PROJECT_ROOT,
            env={**env, "DJANGO_SETTINGS_MODULE": "steward.settings"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert script.stdout.readline().strip() == "checked"
            relay.cut()
            script.stdin.write("go\n")
            script.stdin.flush()
            result = json.loads(script.stdout.readline())
        finally:
            script.wait(timeout=30)
    assert result["error"] == "the task queue (Celery broker) did not accept the run"
    run = EvaluationRun.objects.get(pk=result["run"])
    assert run.status == "failed" and run.detail.startswith("the task queue (Celery broker) did not accept the run: ")
    events = AuditEvent.objects.filter(action__startswith="evaluation_run.", object_id=str(run.pk)).order_by("seq")
    assert list(events.values_list("action", flat=True)) == [
        "evaluation_run.start",
        "evaluation_run.fail",
    ]
    assert not EvaluationRun.objects.filter(status="queued").exists()
