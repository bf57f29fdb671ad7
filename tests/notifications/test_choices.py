"""What a person chooses on their profile (kinds, channels, digest), their webhooks (secret shown once,
stored encrypted), the unsubscribe link's refusals, and who is told what (without a worker: no
transaction commits in these tests, so nothing is sent)."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from audits.models import AuditEvent
from compliance.models import MatrixCell
from notifications.delivery import payload, unsubscribe_token
from notifications.models import Channel, Delivery, Kind, Notification, Preference, Webhook
from notifications.planning import notify, people_with
from notifications.reactions import notify_for_event, notify_rebase_needed
from portfolio.publishing import start_change
from portfolio.signing import resign
from registry.models import EndpointCredential, ModelVersion, Status
from steward.roles import REVIEW_VERSIONS
from tests.factories import (
    ROUTED_POLICY,
    make_classification,
    make_model,
    make_version,
    publish_through_review,
    routed_world,
    version_fields,
)


def test_the_profile_shows_the_choices_and_saves_them(client_for, alice) -> None:
    client = client_for(alice)
    page = client.get("/profile/").content.decode()
    assert 'id="notifications"' in page and "Something awaits my decision" in page
    response = client.post(
        "/notifications/preferences/",
        {"notify-email_kinds": [Kind.VIOLATION, Kind.DECIDED], "notify-webhook_kinds": [], "notify-digest": "1"},
    )
    assert response.status_code == 302
    preference = Preference.objects.get(user=alice)
    assert (preference.email_kinds, preference.webhook_kinds, preference.digest) == (["decided", "violation"], [], True)
    assert AuditEvent.objects.filter(action="notification_preference.change", actor_id=alice.pk).exists()


def test_bad_choices_are_refused_naming_the_field(client_for, alice) -> None:
    response = client_for(alice).post(
        "/notifications/preferences/", {"notify-email_kinds": ["nonsense"], "notify-digest": "1"}
    )
    assert response.status_code == 400
    assert "By email: Select a valid choice. nonsense is not one of the available choices." in response.content.decode()
    assert not Preference.objects.filter(user=alice).exists()


def test_a_webhook_secret_is_shown_once_and_stored_only_encrypted(client_for, alice) -> None:
    client = client_for(alice)
    response = client.post(
        "/notifications/webhooks/",
        {
            "webhook-name": "team channel",
            "webhook-url": "https://hooks.slack.com/services/T/B/X",
            "webhook-format": "slack",
        },
    )
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    body = response.content.decode()
    webhook = Webhook.objects.get(user=alice)
    secret = body.split('id="webhook-secret">')[1].split("<")[0]
    assert secret.startswith("whsec_") and webhook.secret_prefix == secret[:12]
    assert secret.encode() not in bytes(webhook.secret_encrypted)
    expected = "sha256=" + hmac.new(secret.encode(), b"123.{}", hashlib.sha256).hexdigest()
    assert webhook.signature("123", b"{}") == expected
    profile = client.get("/profile/").content.decode()
    assert secret not in profile and f"{secret[:12]}…" in profile
    assert client.post(f"/notifications/webhooks/{webhook.pk}/remove/").status_code == 302
    assert Webhook.objects.get(pk=webhook.pk).removed_at is not None


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"webhook-name": "x", "webhook-url": "ftp://example.com/", "webhook-format": "slack"}, "Enter a valid URL."),
        (
            {"webhook-name": "", "webhook-url": "https://example.com/", "webhook-format": "slack"},
            "This field is required.",
        ),
        (
            {"webhook-name": "x", "webhook-url": "https://example.com/", "webhook-format": "irc"},
            "Select a valid choice. irc is not one of the available choices.",
        ),
    ],
    ids=["scheme", "name", "format"],
)
def test_bad_webhooks_are_refused_and_nothing_is_saved(client_for, alice, fields, message) -> None:
    response = client_for(alice).post("/notifications/webhooks/", fields)
    assert response.status_code == 400 and message in response.content.decode()
    assert not Webhook.objects.exists()


def test_nobody_removes_another_persons_webhook(client_for, alice, carol) -> None:
    webhook, _ = Webhook.create(alice, "mine", "https://example.com/hook")
    assert client_for(carol).post(f"/notifications/webhooks/{webhook.pk}/remove/").status_code == 404


def test_the_unsubscribe_link_needs_no_sign_in_and_refuses_bad_tokens(bob) -> None:
    anonymous = Client()
    token = unsubscribe_token(bob.pk, Kind.VIOLATION)
    page = anonymous.get(f"/notifications/unsubscribe/{token}/")
    assert page.status_code == 200 and "Stop emails about “a violation was found” for bob?" in page.content.decode()
    assert not Preference.objects.filter(user=bob).exists()  # a GET (a mail scanner) changes nothing
    assert anonymous.post(f"/notifications/unsubscribe/{token}/").status_code == 200
    preference = Preference.objects.get(user=bob)
    assert Kind.VIOLATION not in preference.email_kinds and Kind.VIOLATION in preference.webhook_kinds
    everything = unsubscribe_token(bob.pk, "*")
    assert anonymous.post(f"/notifications/unsubscribe/{everything}/").status_code == 200
    assert Preference.objects.get(user=bob).email_kinds == []
    for bad in ("nonsense", token[:-3] + "abc", unsubscribe_token(bob.pk, "no-such-kind"), unsubscribe_token(999, "*")):
        response = anonymous.post(f"/notifications/unsubscribe/{bad}/")
        assert response.status_code == 400 and "This unsubscribe link is not valid" in response.content.decode()


def test_each_person_is_told_once_per_key_on_the_channels_they_chose(alice, carol, bob) -> None:
    Webhook.create(alice, "mine", "https://example.com/hook")
    Preference(user=carol).change(carol, email_kinds=[], webhook_kinds=[], digest=False)
    people = people_with(REVIEW_VERSIONS)
    assert set(people) == {alice, carol}
    made = notify(people, Kind.AWAITING_DECISION, "k1", "Something")
    assert {n.user for n in made} == {alice, carol}
    assert sorted(Delivery.objects.filter(user=alice).values_list("channel", flat=True)) == [
        Channel.EMAIL,
        Channel.WEBHOOK,
    ]
    assert not Delivery.objects.filter(user=carol).exists()
    assert notify(people, Kind.AWAITING_DECISION, "k1", "Something") == []  # told already
    assert Notification.objects.count() == 2


def test_a_proposal_tells_every_officer_but_the_proposer(alice, carol, bob) -> None:
    version = ModelVersion.propose(bob, **version_fields(make_model()))
    event = AuditEvent.objects.get(action="model_version.propose", object_id=str(version.pk))
    assert notify_for_event(event.pk) == 2
    assert set(Notification.objects.values_list("user__username", flat=True)) == {"alice", "carol"}
    assert notify_for_event(event.pk) == 0  # a retried task tells nobody twice


def test_webhook_payloads_are_slack_and_teams_shaped(alice) -> None:
    slack, _ = Webhook.create(alice, "s", "https://example.com/s", "slack")
    teams, _ = Webhook.create(alice, "t", "https://example.com/t", "teams")
    (notification,) = notify([alice], Kind.VIOLATION, "v", "2 violations <found>", "body & more", "/audit/violations/")
    delivery = Delivery.objects.filter(webhook=slack).get()
    assert payload(slack, delivery, [notification]) == {
        "text": "*<http://127.0.0.1:8000/audit/violations/|2 violations &lt;found&gt;>*\nbody &amp; more"
    }
    card = payload(teams, delivery, [notification])
    assert card["@type"] == "MessageCard" and card["summary"] == "2 violations <found>"
    assert card["sections"][0]["potentialAction"][0]["targets"][0]["uri"] == "http://127.0.0.1:8000/audit/violations/"


def test_only_a_new_current_version_with_new_routes_calls_for_a_rebase(alice, carol, bob) -> None:
    world = routed_world(alice, carol, bob)
    production = world["policy_set"]
    stale = start_change(production, bob, "Lower the cap", "", ROUTED_POLICY.replace("1000", "800"))
    v2 = publish_through_review(production, ROUTED_POLICY.replace("1000", "900"), bob, [carol], publisher=alice)
    fresh = start_change(production, bob, "On v2", "", ROUTED_POLICY.replace("1000", "700"))
    assert notify_rebase_needed(world["policy_version"].pk) == 0  # v1 is no longer current
    assert notify_rebase_needed(v2.pk) == 1
    (told,) = Notification.objects.filter(kind=Kind.NEEDS_REBASE)
    assert told.user == bob and told.subject.startswith(f"CR-{stale.pk}: Lower the cap needs a rebase")
    v3 = resign(production)
    assert v3.source_version_id == v2.pk
    assert notify_rebase_needed(v3.pk) == 0  # re-signed: the same routes, fresh's base still counts
    assert Notification.objects.filter(kind=Kind.NEEDS_REBASE).count() == 1
    assert fresh.base_version == v2


def test_the_inbox_reads_in_the_same_number_of_queries_however_full(client_for, alice, bob) -> None:
    internal = make_classification("internal", 1)

    def queries_with(count: int) -> int:
        for _ in range(count):
            version = make_version(bob, model=make_model(), status=Status.APPROVED)
            MatrixCell.for_pair(version, internal).request(bob, "needed")
            make_version(bob, model=make_model())
            EndpointCredential.request(bob, f"KEY_{MatrixCell.objects.count()}", ["api.example.com"])
        client = client_for(alice)
        with CaptureQueriesContext(connection) as queries:
            assert client.get("/approvals/").status_code == 200
        return len(queries)

    assert queries_with(1) == queries_with(5)


def test_the_profile_shows_what_was_sent_recently_and_why_it_failed(client_for, alice) -> None:
    webhook, _ = Webhook.create(alice, "team", "https://example.com/hook")
    notify([alice], Kind.VIOLATION, "v1", "A violation")
    Delivery.objects.filter(webhook=webhook).update(
        status="failed", attempts=7, last_error="https://example.com/hook answered 500"
    )
    body = client_for(alice).get("/profile/").content.decode()
    assert 'id="deliveries"' in body and "https://example.com/hook answered 500" in body and "Failed" in body


def test_a_subject_is_one_line_whatever_people_typed(alice) -> None:
    (notification,) = notify([alice], Kind.DECIDED, "k", "CR-1: Evil\r\nBcc: everyone@example.org\n title")
    assert notification.subject == "CR-1: Evil Bcc: everyone@example.org title"
