"""The feed and decision reports while Redis or PostgreSQL does not answer (docs/operations.md, "When
a service is down").

Each test runs Steward under gunicorn with one service taken away from that process only: pointed
at a closed port, or at a relay (tests/outage.py) that the test cuts and restores. The machine's
PostgreSQL and Redis keep running for the tests and everyone else.
"""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from audits.models import DecisionRecord
from portfolio import feed
from portfolio.models import PolicyRelease, Router
from portfolio.signing import resign
from tests.outage import closed_port, database_relay_url, relay_to, steward_server

from .conftest import bearer, http

pytestmark = pytest.mark.skipif(
    not settings.CELERY_BROKER_URL.startswith("redis"), reason="takes Redis away from one Steward process"
)

BUNDLE = "/api/v1/policy-sets/production/bundle"
STATUS = "/api/v1/policy-sets/production/status"


def redis_url(port: int) -> str:
    database = settings.CELERY_BROKER_URL.rsplit("/", 1)[-1]
    return f"redis://127.0.0.1:{port}/{database}"


def the_redis() -> tuple[str, int]:
    from urllib.parse import urlparse

    parsed = urlparse(settings.CELERY_BROKER_URL)
    return parsed.hostname or "127.0.0.1", parsed.port or 6379


def decision(request_id: str) -> dict:
    return {
        "request_id": request_id,
        "occurred_at": (timezone.now() - dt.timedelta(minutes=1)).isoformat(),
        "task": "ticket-triage",
        "classification": "internal",
        "model": "openai/gpt-4o-mini@2024-07-18",
        "policy_version": 1,
        "fallback_used": False,
        "escalated": False,
        "latency_ms": 420,
        "input_tokens": 800,
        "output_tokens": 40,
        "cost_micro_usd": 144,
        "input": "Ticket: my invoice is wrong",
        "output": "billing",
    }


def post_json(url: str, token: str, document: object):
    headers = {**bearer(token), "Content-Type": "application/json"}
    return http("POST", url, headers, json.dumps(document).encode())


def health(url: str) -> dict:
    answer = http("GET", f"{url}/health/?format=json")
    return {"http_status": answer.status, "retry_after": answer.headers.get("retry-after"), **json.loads(answer.body)}


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout} s")
        time.sleep(0.1)


# --- Redis down ---------------------------------------------------------------------------------


def test_without_redis_the_feed_and_decisions_answer_from_postgresql(production_router, tmp_path):
    """Redis gone as it goes in production: the cache and the broker both (CELERY_BROKER_URL is where
    the cache lives too unless STEWARD_REDIS_URL says otherwise)."""
    router, token = production_router
    with closed_port() as port, steward_server(tmp_path, CELERY_BROKER_URL=redis_url(port)) as server:
        first = http("GET", server.url + BUNDLE, bearer(token))
        assert first.status == 200, first.body
        etag = first.headers["etag"]
        assert first.headers["x-policy-version"] == "1"

        unchanged = http("GET", server.url + BUNDLE, {**bearer(token), "If-None-Match": etag})
        assert (unchanged.status, unchanged.headers["etag"]) == (304, etag)
        again = http("GET", server.url + BUNDLE, {**bearer(token), "If-None-Match": '"0000"'})
        assert (again.status, again.body) == (200, first.body)

        ack = post_json(server.url + STATUS, token, {"status": "ack", "version": 1})
        assert ack.status == 200, ack.body
        assert json.loads(ack.body) == {"received": "ack", "router": router.name}

        # One decision as the policy routes it, one by a model the policy does not know (a violation,
        # which officers are told of: the notification waits for the broker, the report does not).
        outside = {**decision("no-redis-2"), "model": "acme/unlisted@1"}
        began = time.monotonic()
        reported = post_json(server.url + "/api/v1/decisions", token, {"records": [decision("no-redis-1"), outside]})
        took = time.monotonic() - began
        assert reported.status == 200, reported.body
        assert json.loads(reported.body)["accepted"] == 2 and json.loads(reported.body)["violations"] >= 1
        assert took < 5, f"the report took {took:.1f} s"
        assert DecisionRecord.objects.filter(request_id__startswith="no-redis-").count() == 2

        unknown = http("GET", server.url + BUNDLE, bearer("swr_" + "x" * 43))
        assert unknown.status == 401

        shown = health(server.url)
        assert shown["http_status"] == 503 and shown["ok"] is False
        assert shown["retry_after"] == "30"
        assert shown["checks"]["cache"] == {"ok": False, "status": "degraded"}
        assert "read PostgreSQL" in shown["degraded"]["cache"]["answer"]
        assert shown["degraded"]["cache"]["answers_given"] >= 1
        assert shown["checks"]["database"]["ok"] is True

    log = server.log_text()
    assert "cache does not answer" in log and "Internal Server Error" not in log
    assert log.count("cache does not answer") == 1  # logged when the outage began, not once per request
    router.refresh_from_db()
    assert router.applied_version == 1 and router.last_status == "ack"


@pytest.mark.parametrize("with_redis", [True, False], ids=["with-redis", "without-redis"])
def test_a_revoked_token_stops_working_within_the_same_bound_with_or_without_redis(
    production_router, tmp_path, with_redis
):
    router, token = production_router
    memory = 2.0
    with closed_port() as port:
        cache_url = settings.CELERY_BROKER_URL if with_redis else redis_url(port)
        with steward_server(
            tmp_path, STEWARD_REDIS_URL=cache_url, STEWARD_FEED_TOKEN_MEMORY_SECONDS=str(memory)
        ) as server:
            assert http("GET", server.url + BUNDLE, bearer(token)).status == 200
            feed.revoke_router(Router.objects.get(pk=router.pk), by=None)
            revoked = time.monotonic()

            def refused() -> bool:
                return http("GET", server.url + BUNDLE, bearer(token)).status == 401

            wait_for(refused, memory + 5, "the revoked token was not refused")
            took = time.monotonic() - revoked
            assert took <= memory + 1.0, f"refused only {took:.1f} s after the revocation (bound {memory} s)"
            time.sleep(0.3)
            assert http("GET", server.url + BUNDLE, bearer(token)).status == 401  # and it stays refused


def test_when_redis_answers_again_what_changed_meanwhile_is_not_served_from_it(production, production_router, tmp_path):
    """A token revoked and a policy re-signed while Redis was down, by a process whose deletes never
    reached Redis: Redis still holds the old answers when it comes back, and the feed must not use them."""
    router, token = production_router
    with relay_to(*the_redis()) as relay:
        with steward_server(
            tmp_path, STEWARD_REDIS_URL=redis_url(relay.port), STEWARD_FEED_TOKEN_MEMORY_SECONDS="1"
        ) as server:
            assert http("GET", server.url + BUNDLE, bearer(token)).status == 200  # cached in Redis now
            token_key = f"feed:token:{router.token_hash}"
            release_key = "feed:release:production"
            stale_identity, stale_release = cache.get(token_key), cache.get(release_key)
            assert stale_identity is not None and stale_release.version == 1

            relay.cut()
            assert http("GET", server.url + BUNDLE, bearer(token)).status == 200  # from PostgreSQL
            Router.objects.filter(pk=router.pk).update(revoked_at=timezone.now())
            resign(production)
            assert PolicyRelease.objects.filter(policy_version__policy_set=production).count() == 2
            # As if the revoking and publishing process could not reach Redis either.
            cache.set(token_key, stale_identity, 300)
            cache.set(release_key, stale_release, 3600)
            time.sleep(1.2)  # past the server's token memory
            assert http("GET", server.url + BUNDLE, bearer(token)).status == 401  # PostgreSQL says revoked

            relay.restore()

            def recovered() -> bool:
                return health(server.url)["checks"]["cache"]["ok"] is True and cache.get(token_key) is None

            wait_for(recovered, 10, "the server did not forget the stale token after Redis came back")
            assert http("GET", server.url + BUNDLE, bearer(token)).status == 401
            assert cache.get(release_key) is None or cache.get(release_key).version == 2

            other_router, other_token = feed.register_router(production, "edge-eu-2", by=None)
            answer = http("GET", server.url + BUNDLE, bearer(other_token))
            assert (answer.status, answer.headers["x-policy-version"]) == (200, "2")
        assert "cache answers again" in server.log_text()


# --- PostgreSQL down ----------------------------------------------------------------------------


def test_without_postgresql_polls_are_answered_from_the_cache_and_the_rest_is_503(production_router, tmp_path):
    router, token = production_router
    browser = Client()
    browser.force_login(User.objects.get(username="bob"))  # the demo's engineer
    session = browser.cookies[settings.SESSION_COOKIE_NAME].value
    with relay_to(
        settings.DATABASES["default"]["HOST"] or "127.0.0.1", int(settings.DATABASES["default"]["PORT"] or 5432)
    ) as relay:
        database = database_relay_url(relay)
        with steward_server(
            tmp_path,
            DATABASE_URL=database,
            STEWARD_REDIS_URL=settings.CELERY_BROKER_URL,
            STEWARD_FEED_LAST_SEEN_FLUSH_SECONDS="1",
            STEWARD_DB_CONNECT_TIMEOUT="2",
        ) as server:
            first = http("GET", server.url + BUNDLE, bearer(token))
            assert first.status == 200, first.body
            etag = first.headers["etag"]
            assert http("GET", f"{server.url}/api/v1/trust/root.json").status == 200

            relay.cut()
            outage_began = timezone.now()
            # Longer than two flush periods: no poll may run the flush, none may fail.
            answers = []
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                answers.append(http("GET", server.url + BUNDLE, {**bearer(token), "If-None-Match": etag}).status)
                time.sleep(0.05)
            assert set(answers) == {304}, answers
            last_poll = timezone.now()
            full = http("GET", server.url + BUNDLE, bearer(token))
            assert (full.status, full.body, full.headers["etag"]) == (200, first.body, etag)
            assert full.headers["x-policy-version"] == "1"

            for method, path, body in (
                ("POST", STATUS, {"status": "ack", "version": 1}),
                ("POST", "/api/v1/decisions", {"records": [decision("no-postgres-1")]}),
                ("GET", "/api/v1/trust/root.json", None),
                ("GET", "/api/v1/model-versions/", None),
            ):
                payload = json.dumps(body).encode() if body is not None else None
                headers = {**bearer(token), "Content-Type": "application/json"}
                answer = http(method, server.url + path, headers, payload)
                assert answer.status == 503, (path, answer.status, answer.body)
                assert answer.headers["retry-after"] == "30"
                reason = json.loads(answer.body)
                assert reason["service"] == "database" and "Try again" in reason["detail"], reason

            stranger = http("GET", server.url + BUNDLE, bearer("swr_" + "y" * 43))
            assert stranger.status == 503 and json.loads(stranger.body)["service"] == "database"

            page = http("GET", f"{server.url}/registry/", {"Cookie": f"{settings.SESSION_COOKIE_NAME}={session}"})
            assert page.status == 503 and page.headers["content-type"].startswith("text/plain")
            assert page.headers["retry-after"] == "30" and b"database does not answer" in page.body

            shown = health(server.url)
            assert shown["http_status"] == 503 and shown["ok"] is False
            assert shown["checks"]["database"] == {"ok": False, "status": "degraded"}
            assert "last signed bundle" in shown["degraded"]["database"]["answer"]
            assert shown["degraded"]["database"]["answers_given"] >= 6
            page = http("GET", f"{server.url}/health/")
            assert page.status == 503 and b"degraded" in page.body

            router.refresh_from_db()
            assert router.last_seen_at is None or router.last_seen_at < outage_began

            relay.restore()

            def seen_during_the_outage() -> bool:
                router.refresh_from_db()
                return router.last_seen_at is not None and router.last_seen_at >= last_poll - dt.timedelta(seconds=1)

            wait_for(seen_during_the_outage, 10, "last seen was not written after PostgreSQL came back")
            ack = post_json(server.url + STATUS, token, {"status": "ack", "version": 1})
            assert ack.status == 200, ack.body
            shown = health(server.url)
            assert shown["checks"]["database"] == {"ok": True, "status": "ok"}
            assert "answers_again_since" in shown["degraded"]["database"]

    log = server.log_text()
    assert "Internal Server Error" not in log and "Traceback" not in log
    # Logged when the outage began and when it ended, not once per request.
    assert log.count("database does not answer") == 1 and log.count("database answers again") == 1


def test_without_postgresql_and_redis_a_router_is_answered_from_the_process_memory(production_router, tmp_path):
    """Both gone: what this process remembered (the token, the release) still answers its routers,
    past the few seconds memory usually keeps them, since nothing can change meanwhile."""
    router, token = production_router
    database = settings.DATABASES["default"]
    with (
        relay_to(database["HOST"] or "127.0.0.1", int(database["PORT"] or 5432)) as to_postgres,
        relay_to(*the_redis()) as to_redis,
        steward_server(
            tmp_path,
            DATABASE_URL=database_relay_url(to_postgres),
            STEWARD_REDIS_URL=redis_url(to_redis.port),
            STEWARD_FEED_TOKEN_MEMORY_SECONDS="1",
            STEWARD_DB_CONNECT_TIMEOUT="2",
        ) as server,
    ):
        first = http("GET", server.url + BUNDLE, bearer(token))
        assert first.status == 200, first.body
        to_postgres.cut()
        to_redis.cut()
        time.sleep(1.5)  # past the token's and the release's time in memory
        unchanged = http("GET", server.url + BUNDLE, {**bearer(token), "If-None-Match": first.headers["etag"]})
        assert unchanged.status == 304
        full = http("GET", server.url + BUNDLE, bearer(token))
        assert (full.status, full.body) == (200, first.body)
        stranger = http("GET", server.url + BUNDLE, bearer("swr_" + "z" * 43))
        assert stranger.status == 503
        shown = health(server.url)
        assert shown["checks"]["database"]["ok"] is False and shown["checks"]["cache"]["ok"] is False
    assert "Internal Server Error" not in server.log_text()
