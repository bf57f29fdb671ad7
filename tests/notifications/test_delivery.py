"""Every kind of notification reaches a real SMTP server and a real webhook receiver on 127.0.0.1 (which
checks the HMAC signature), sent by a real Celery worker; preferences, digests and the unsubscribe link
are respected; a receiver that fails twice gets the message on the third attempt."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
from django.test import Client

from audits.models import Violation, ViolationKind
from compliance.alerts import record_alerts
from compliance.models import AlertKind, ComplianceAlert
from demo.server import start_in_thread
from notifications.models import Delivery, DeliveryStatus, Kind, Notification, Preference, Webhook
from notifications.planning import send_digests
from notifications.sweep import sweep
from portfolio.models import PolicySet
from portfolio.publishing import start_change
from registry.evaluation.runs import dispatch_due_runs
from registry.models import ModelVersion, Provider
from steward.celery import app
from steward.roles import sync_role_permissions
from tests.factories import (
    ROUTED_POLICY,
    make_holding,
    make_model,
    make_provider,
    publish_through_review,
    routed_world,
    version_fields,
)
from tests.notifications.receivers import SmtpSink, WebhookReceiver, wait_for
from tests.registry.test_evaluation_pages import completed_run, demo_version, make_suite
from tests.workers import celery_worker

pytestmark = pytest.mark.celery_worker
MAX_RETRIES = 3


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    found = WebhookReceiver().start()
    yield found
    found.stop()


@pytest.fixture(scope="module")
def worker(django_db_setup, smtp, receiver) -> Iterator[None]:
    app.control.purge()
    with celery_worker(
        STEWARD_EMAIL_HOST="127.0.0.1",
        STEWARD_EMAIL_PORT=str(smtp.port),
        STEWARD_BASE_URL="http://steward.test",
        STEWARD_NOTIFICATION_RETRY_BACKOFF="1",
        STEWARD_NOTIFICATION_MAX_RETRIES=str(MAX_RETRIES),
    ):
        yield


@pytest.fixture
def fresh(transactional_db, worker, smtp, receiver) -> None:
    sync_role_permissions()
    smtp.messages.clear()
    receiver.received.clear()
    receiver.attempts.clear()
    receiver.fail_first.clear()
    receiver.secrets.clear()


def hook(receiver: WebhookReceiver, person, name: str, format: str = "slack") -> Webhook:
    webhook, secret = Webhook.create(person, name, f"{receiver.url}/{name}", format)
    receiver.secrets[name] = secret
    return webhook


def told_by_email(smtp: SmtpSink, address: str, kind: str, text: str) -> None:
    def arrived() -> bool:
        return any(m["X-Steward-Kind"] == kind and text in m["Subject"] for m in smtp.to(address))

    wait_for(arrived, what=f"an email to {address} of kind {kind} about {text!r}")


def told_by_webhook(receiver: WebhookReceiver, name: str, kind: str, text: str) -> None:
    def arrived() -> bool:
        return any(r.headers.get("X-Steward-Kind") == kind and text in r.body.decode() for r in receiver.at(name))

    wait_for(arrived, what=f"a webhook POST to {name} of kind {kind} about {text!r}")
    assert all(r.signature_ok for r in receiver.at(name)), "a webhook message had a bad signature"


def told(smtp, receiver, address: str, name: str, kind: str, text: str) -> None:
    told_by_email(smtp, address, kind, text)
    told_by_webhook(receiver, name, kind, text)


def test_every_kind_reaches_email_and_a_signed_webhook(fresh, smtp, receiver, alice, carol, bob) -> None:
    hook(receiver, alice, "alice")
    hook(receiver, bob, "bob", format="teams")
    world = routed_world(alice, carol, bob)
    production = world["policy_set"]

    # Something awaits my decision, then my proposal was decided.
    version = ModelVersion.propose(bob, **version_fields(make_model(provider=Provider.objects.get(slug="acme"))))
    told(smtp, receiver, "alice@example.org", "alice", Kind.AWAITING_DECISION, version.ref)
    version.approve(alice, "Checked the contract.")
    told(smtp, receiver, "bob@example.org", "bob", Kind.DECIDED, f"Your proposal {version.ref} was approved by alice")
    teams = next(r for r in receiver.at("bob") if version.ref in r.body.decode()).json
    assert teams["@type"] == "MessageCard" and "approved by alice" in teams["title"]
    assert teams["sections"][0]["potentialAction"][0]["targets"][0]["uri"].startswith("http://steward.test/registry/")

    # My change request needs a rebase: another one was published on top of its base.
    stale = start_change(production, bob, "Lower the cap", "", ROUTED_POLICY.replace("1000", "800"))
    PolicySet.objects.filter(pk=production.pk).update(policy_lifetime_days=1)  # v2 expires within a day
    production.refresh_from_db()
    publish_through_review(production, ROUTED_POLICY.replace("1000", "900"), bob, [carol], publisher=alice)
    told(smtp, receiver, "bob@example.org", "bob", Kind.NEEDS_REBASE, f"CR-{stale.pk}: Lower the cap needs a rebase")

    # Certifications: one expires within 30 days, one has expired (the daily compliance sweep finds them).
    make_holding(Provider.objects.get(slug="acme"), "soc2-type2", alice, days_left=12)
    make_holding(Provider.objects.get(slug="beta"), "iso27001", alice, days_left=-3)
    record_alerts()
    told(smtp, receiver, "alice@example.org", "alice", Kind.CERTIFICATION_EXPIRING, "of Acme expires on")
    told(smtp, receiver, "alice@example.org", "alice", Kind.CERTIFICATION_EXPIRED, "of Beta expired on")

    # A scheduled evaluation failed a gate (the alert compliance raises on evaluation_run_finished).
    ComplianceAlert.objects.create(kind=AlertKind.EVALUATION_FAILED, message="acme/small-a@1 failed its accuracy gate")
    told(
        smtp, receiver, "alice@example.org", "alice", Kind.EVALUATION_FAILED, "acme/small-a@1 failed its accuracy gate"
    )

    # The sweep: a violation, production's signed policy close to expiry, routers never seen.
    Violation.objects.create(kind=ViolationKind.MODEL_NOT_ALLOWED, policy_set="production", detail="x")
    found = sweep()
    assert found["violations"] >= 1 and found["policies"] >= 1 and found["routers"] >= 1, found
    told(smtp, receiver, "alice@example.org", "alice", Kind.VIOLATION, "1 violation found")
    told(smtp, receiver, "alice@example.org", "alice", Kind.POLICY_EXPIRING, "Signed policy production v2 expires")
    told(smtp, receiver, "alice@example.org", "alice", Kind.ROUTER_TROUBLE, "Router edge-1 is stale (never seen)")
    # Swept again, nothing is told twice.
    assert sweep() == {"missed": 0, "violations": 0, "policies": 0, "routers": 0}

    email = next(m for m in smtp.to("alice@example.org") if m["X-Steward-Kind"] == Kind.VIOLATION)
    assert "http://steward.test/audit/violations/" in email.get_content()
    assert email["List-Unsubscribe"].strip().startswith("<http://steward.test/notifications/unsubscribe/")
    slack = next(r for r in receiver.at("alice") if r.headers["X-Steward-Kind"] == Kind.VIOLATION).json
    assert slack["text"].startswith("*<http://steward.test/audit/violations/|1 violation found")
    assert {m["X-Steward-Kind"] for m in smtp.messages} >= set(Kind.values)


def test_preferences_digest_and_the_unsubscribe_link_are_respected(fresh, smtp, receiver, alice, carol, bob) -> None:
    hook(receiver, alice, "alice")
    hook(receiver, carol, "carol")
    # alice: awaiting decisions by webhook only; carol: everything in a daily digest.
    Preference(user=alice).change(
        alice,
        email_kinds=[k for k in Kind.values if k != Kind.AWAITING_DECISION],
        webhook_kinds=Kind.values,
        digest=False,
    )
    Preference(user=carol).change(carol, email_kinds=Kind.values, webhook_kinds=Kind.values, digest=True)
    provider = make_provider(name="Acme", slug="acme")
    first = ModelVersion.propose(bob, **version_fields(make_model(provider=provider)))
    second = ModelVersion.propose(bob, **version_fields(make_model(provider=provider)))
    told_by_webhook(receiver, "alice", Kind.AWAITING_DECISION, second.ref)
    assert Notification.objects.filter(user=carol, dispatched_at__isnull=True).count() == 2
    assert not smtp.to("alice@example.org") and not smtp.to("carol@example.org") and not receiver.at("carol")

    # The digest: one email and one webhook message with both proposals.
    assert send_digests() == 2
    wait_for(lambda: smtp.to("carol@example.org") and receiver.at("carol"), what="carol's digest")
    (digest,) = smtp.to("carol@example.org")
    assert digest["Subject"] == "[Steward] 2 notifications from Steward"
    assert first.ref in digest.get_content() and second.ref in digest.get_content()
    assert first.ref in receiver.at("carol")[0].json["text"] and receiver.at("carol")[0].signature_ok
    assert send_digests() == 0  # nothing is sent twice

    # bob follows the unsubscribe link of a real email, without signing in.
    first.approve(alice, "fine")
    told_by_email(smtp, "bob@example.org", Kind.DECIDED, first.ref)
    (email,) = smtp.to("bob@example.org")
    link = urlparse(email["List-Unsubscribe"].strip().strip("<>")).path
    anonymous = Client()
    page = anonymous.get(link)
    assert (
        page.status_code == 200
        and "Stop emails about “my proposal or change request was decided”" in page.content.decode()
    )
    assert anonymous.post(link).status_code == 200
    assert Kind.DECIDED not in Preference.objects.get(user=bob).email_kinds
    assert anonymous.post(link[:-8] + "tampered/").status_code == 400
    second.reject(alice, "not needed")
    wait_for(
        lambda: Notification.objects.filter(user=bob, kind=Kind.DECIDED).count() == 2, what="bob told of the rejection"
    )
    assert Delivery.objects.filter(user=bob, channel="email").count() == 1  # the rejection was not emailed


def test_a_receiver_that_fails_twice_gets_the_message_on_the_third_attempt(fresh, smtp, receiver, alice, bob) -> None:
    flaky = hook(receiver, alice, "flaky")
    broken = hook(receiver, alice, "broken")
    garbled = hook(receiver, alice, "garbled")
    Webhook.objects.filter(pk=garbled.pk).update(secret_encrypted=b"not what STEWARD_KEK encrypted")
    receiver.fail_first.update({"flaky": 2, "broken": 99})
    provider = make_provider(name="Acme", slug="acme")
    version = ModelVersion.propose(bob, **version_fields(make_model(provider=provider)))

    told_by_webhook(receiver, "flaky", Kind.AWAITING_DECISION, version.ref)
    assert receiver.attempts["flaky"] == 3
    wait_for(lambda: Delivery.objects.get(webhook=flaky).status == DeliveryStatus.SENT, what="the delivery marked sent")
    assert Delivery.objects.get(webhook=flaky).attempts == 3
    # One that never answers well is given up after its retries, with the reason kept.
    wait_for(lambda: Delivery.objects.get(webhook=broken).status == DeliveryStatus.FAILED, timeout=60, what="given up")
    failed = Delivery.objects.get(webhook=broken)
    assert failed.attempts == MAX_RETRIES + 1 and receiver.attempts["broken"] == MAX_RETRIES + 1
    assert failed.last_error == f"{receiver.url}/broken answered 500"
    # Any failure is an attempt with its reason (here the secret cannot be decrypted), never a lost task.
    wait_for(lambda: Delivery.objects.get(webhook=garbled).status == DeliveryStatus.FAILED, timeout=60, what="garbled")
    unsigned = Delivery.objects.get(webhook=garbled)
    assert unsigned.attempts == MAX_RETRIES + 1 and "STEWARD_KEK does not decrypt" in unsigned.last_error
    assert not receiver.at("garbled")
    told_by_email(smtp, "alice@example.org", Kind.AWAITING_DECISION, version.ref)


def test_a_scheduled_evaluation_that_fails_its_gate_is_told_end_to_end(fresh, smtp, receiver, alice, bob) -> None:
    """The whole chain: the schedule starts a run, the worker evaluates the demo endpoint, the run fails
    its pass mark, compliance raises the alert, the officers are told."""
    hook(receiver, alice, "alice")
    server = start_in_thread(latency_ms=0)
    try:
        # demo-budget gets about two tickets in three right: below a pass mark of 95.
        suite = make_suite("nightly", cases=30, schedule_minutes=60, pass_threshold_bp=9500)
        version = demo_version(bob, "demo-budget", base_url=server.url)
        completed_run(suite, version, 9900, ago_minutes=120)  # the last run, two hours ago: the suite is due
        (run,) = dispatch_due_runs()
        subject = f"Scheduled Nightly run #{run.pk} failed for approved {version.ref}"
        told(smtp, receiver, "alice@example.org", "alice", Kind.EVALUATION_FAILED, subject)
    finally:
        server.shutdown()
        server.server_close()
    run.refresh_from_db()
    assert run.passed is False
