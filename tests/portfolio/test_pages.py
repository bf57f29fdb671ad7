"""The routing-policy pages: who may see and do what (status codes, and nothing changes after a
refusal), the live YAML check, rollbacks, version diffs, stale publishing, the officers' inbox,
and a fixed number of queries on the policy set overview."""

from __future__ import annotations

import html
import json
import re
from io import StringIO

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core.management import call_command
from django.db import connection, transaction
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils.html import strip_tags

from compliance.models import DataClassification
from portfolio.models import ChangeRequest, ChangeStatus, CostTier, PolicySet, PolicyVersion, Task
from portfolio.policy import normalise, to_yaml
from portfolio.publishing import publish, start_change
from portfolio.validation import parse_document
from registry.models import ModelVersion, Status
from steward.roles import ENGINEERS

pytestmark = pytest.mark.django_db

NAMES = ("alice", "carol", "bob", "frank", "dave", "erin")
LOGIN = "/login/"


@pytest.fixture(scope="module")
def demo(django_db_setup, django_db_blocker):
    """The demo data (registry, matrix, tiers, tasks, production v1 and staging v1), seeded once
    per module inside a transaction that is rolled back at the end; each test runs in a savepoint."""
    with (
        django_db_blocker.unblock(),
        override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]),
    ):
        with transaction.atomic():
            call_command("seed_demo", "--no-evaluations", stdout=StringIO())
            # frank: a second engineer, to show that only a request's author acts as its author.
            User.objects.create_user("frank", password="x").groups.add(Group.objects.get(name=ENGINEERS))
            User.objects.create_user("erin", password="x")  # signed in, no role
            yield
            transaction.set_rollback(True)


@pytest.fixture
def people(demo) -> dict[str, User]:
    return {user.username: user for user in User.objects.filter(username__in=NAMES)}


@pytest.fixture
def production(demo) -> PolicySet:
    return PolicySet.objects.get(slug="production")


def client_as(people: dict[str, User], username: str | None) -> Client:
    client = Client()
    if username:
        client.force_login(people[username])
    return client


def edited(policy_set: PolicySet, old: str, new: str) -> str:
    """The set's current YAML with one replacement (which must apply)."""
    document = policy_set.current_version().document
    assert old in document
    return document.replace(old, new, 1)


# ticket-triage's escalation cap, 500 bp in the demo: a small, valid change.
CAP_OLD, CAP_NEW = "max_rate_bp: 500", "max_rate_bp: 400"


def change_in(state: str, people: dict[str, User], policy_set: PolicySet, old: str = CAP_OLD, new: str = CAP_NEW):
    """bob's change request to ``policy_set``, brought to ``state`` through the model's own methods."""
    bob, alice, carol = people["bob"], people["alice"], people["carol"]
    change = start_change(policy_set, bob, "Lower the triage escalation cap", "Costs.", edited(policy_set, old, new))
    if state == "draft":
        return change
    change.submit(bob)
    if state == "in_review":
        return change
    if state == "withdrawn":
        change.withdraw(bob, "not needed")
        return change
    if state == "rejected":
        change.review(alice, "reject", "No.")
        return change
    change.review(alice, "approve", "ok")
    change.review(carol, "approve", "ok")
    if state == "approved":
        return change
    if state == "published":
        publish(change, alice)
        return change
    if state == "stale":
        # Another request from the same base is published first.
        other = change_in("published", people, policy_set, "max_rate_bp: 300", "max_rate_bp: 250")
        assert other.status == ChangeStatus.PUBLISHED
        return change
    raise AssertionError(state)


def snapshot() -> tuple:
    """Everything an action on change requests can change."""
    return (
        list(ChangeRequest.objects.order_by("pk").values_list("pk", "status", "base_version_id")),
        list(ChangeRequest.objects.values_list("revisions__pk", flat=True).order_by("revisions__pk")),
        list(ChangeRequest.objects.values_list("reviews__pk", "reviews__dismissed_at").order_by("reviews__pk")),
        list(PolicyVersion.objects.order_by("pk").values_list("pk", flat=True)),
    )


# --- who may see what -----------------------------------------------------------------------------

READERS = {"alice": 200, "carol": 200, "bob": 200, "dave": 200, "erin": 403, None: 302}
ENGINEERS_ONLY = {"alice": 403, "carol": 403, "bob": 200, "frank": 200, "dave": 403, "erin": 403, None: 302}
AUTHOR_ONLY = {"alice": 403, "carol": 403, "bob": 200, "frank": 403, "dave": 403, "erin": 403, None: 302}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/policies/", READERS),
        ("/policies/production/", READERS),
        ("/policies/staging/", READERS),
        ("/policies/production/versions/", READERS),
        ("/policies/production/versions/?from=1&to=1", READERS),
        ("/policies/production/versions/1/", READERS),
        ("/policies/changes/", READERS),
        ("/policies/changes/?status=in_review&policy_set=production", READERS),
        ("/policies/changes/{change}/", READERS),
        ("/policies/changes/new/", ENGINEERS_ONLY),
        ("/policies/changes/new/?set=production", ENGINEERS_ONLY),
        ("/policies/changes/new/?set=production&from=1", ENGINEERS_ONLY),
        ("/policies/changes/{change}/revise/", AUTHOR_ONLY),
    ],
)
def test_who_may_see_each_page(people, production, url, expected) -> None:
    change = change_in("in_review", people, production)
    for username, status in expected.items():
        response = client_as(people, username).get(url.format(change=change.pk))
        assert response.status_code == status, (url, username, response.status_code)
        if status == 302:
            assert response["Location"].startswith(LOGIN)


@pytest.mark.parametrize(
    "url",
    [
        "/policies/nowhere/",
        "/policies/nowhere/versions/",
        "/policies/production/versions/99/",
        "/policies/changes/999999/",
        "/policies/changes/new/?set=nowhere",
        "/policies/changes/new/?set=production&from=99",
        # Digits to str.isdigit() but not to int(): they were a 500.
        "/policies/changes/new/?set=production&from=²",
        "/policies/changes/new/?set=production&from=٣",
    ],
)
def test_unknown_things_are_404(people, url) -> None:
    assert client_as(people, "bob").get(url).status_code == 404


# --- who may do what ------------------------------------------------------------------------------

REVIEW = "/policies/changes/{pk}/review/"
APPROVE = (REVIEW, {"decision": "approve", "comment": "Checked."})
REJECT = (REVIEW, {"decision": "reject", "comment": "Too risky."})
REJECT_SILENTLY = (REVIEW, {"decision": "reject", "comment": ""})
COMMENT = (REVIEW, {"decision": "comment", "comment": "Why 400?"})
SUBMIT = ("/policies/changes/{pk}/submit/", {})
WITHDRAW = ("/policies/changes/{pk}/withdraw/", {"comment": "Not needed."})
REBASE = ("/policies/changes/{pk}/rebase/", {})
PUBLISH = ("/policies/changes/{pk}/publish/", {})
REVISE = ("/policies/changes/{pk}/revise/", {"policy": "default: deny\nroutes: []\n"})

# (action, state of bob's change request, who, status, the status it ends in when allowed)
ACTION_CASES = [
    (APPROVE, "in_review", "alice", 302, ChangeStatus.IN_REVIEW),
    (APPROVE, "in_review", "carol", 302, ChangeStatus.IN_REVIEW),
    (APPROVE, "in_review", "bob", 403, None),
    (APPROVE, "in_review", "frank", 403, None),
    (APPROVE, "in_review", "dave", 403, None),
    (APPROVE, "in_review", "erin", 403, None),
    (APPROVE, "in_review", None, 302, None),
    (APPROVE, "draft", "alice", 400, None),
    (APPROVE, "withdrawn", "alice", 400, None),
    (REJECT, "in_review", "alice", 302, ChangeStatus.REJECTED),
    (REJECT, "in_review", "bob", 403, None),
    (REJECT, "in_review", "dave", 403, None),
    (REJECT, "rejected", "carol", 400, None),
    (REJECT_SILENTLY, "in_review", "alice", 400, None),
    (COMMENT, "in_review", "alice", 302, ChangeStatus.IN_REVIEW),
    (COMMENT, "in_review", "bob", 302, ChangeStatus.IN_REVIEW),
    (COMMENT, "in_review", "dave", 403, None),
    (COMMENT, "in_review", "erin", 403, None),
    (SUBMIT, "draft", "bob", 302, ChangeStatus.IN_REVIEW),
    (SUBMIT, "draft", "frank", 403, None),
    (SUBMIT, "draft", "alice", 403, None),
    (SUBMIT, "draft", "dave", 403, None),
    (SUBMIT, "draft", None, 302, None),
    (SUBMIT, "in_review", "bob", 400, None),
    (WITHDRAW, "in_review", "bob", 302, ChangeStatus.WITHDRAWN),
    (WITHDRAW, "in_review", "frank", 403, None),
    (WITHDRAW, "in_review", "alice", 403, None),
    (WITHDRAW, "in_review", "dave", 403, None),
    (WITHDRAW, "rejected", "bob", 400, None),
    (REVISE, "in_review", "bob", 302, ChangeStatus.IN_REVIEW),
    (REVISE, "approved", "bob", 302, ChangeStatus.IN_REVIEW),
    (REVISE, "in_review", "frank", 403, None),
    (REVISE, "in_review", "alice", 403, None),
    (REVISE, "withdrawn", "bob", 400, None),
    (REBASE, "stale", "bob", 302, ChangeStatus.IN_REVIEW),
    (REBASE, "stale", "frank", 403, None),
    (REBASE, "stale", "alice", 403, None),
    (PUBLISH, "approved", "alice", 302, ChangeStatus.PUBLISHED),
    (PUBLISH, "approved", "carol", 302, ChangeStatus.PUBLISHED),
    (PUBLISH, "approved", "bob", 403, None),
    (PUBLISH, "approved", "dave", 403, None),
    (PUBLISH, "approved", "erin", 403, None),
    (PUBLISH, "approved", None, 302, None),
    (PUBLISH, "in_review", "alice", 400, None),
    (PUBLISH, "rejected", "alice", 400, None),
    (PUBLISH, "withdrawn", "alice", 400, None),
    (PUBLISH, "published", "alice", 400, None),
    (PUBLISH, "stale", "alice", 409, None),
]


@pytest.mark.parametrize(
    ("action", "state", "username", "status", "ends_in"),
    ACTION_CASES,
    ids=[f"{a[0].split('/')[-2]}-{a[1].get('decision', '')}-{s}-{u}-{c}" for a, s, u, c, _ in ACTION_CASES],
)
def test_who_may_do_what(people, production, action, state, username, status, ends_in) -> None:
    change = change_in(state, people, production)
    url, data = action
    before = snapshot()

    response = client_as(people, username).post(url.format(pk=change.pk), data)

    assert response.status_code == status, response.content.decode()[:2000]
    change.refresh_from_db()
    if ends_in is None:
        assert snapshot() == before, "a refused action changed something"
        if status == 302:
            assert response["Location"].startswith(LOGIN)
    else:
        assert not response["Location"].startswith(LOGIN)
        assert change.status == ends_in
        assert snapshot() != before


def test_refusals_say_why(people, production) -> None:
    change = change_in("in_review", people, production)
    alice, bob = client_as(people, "alice"), client_as(people, "bob")

    response = alice.post(REVIEW.format(pk=change.pk), {"decision": "reject", "comment": ""})
    assert "A rejection needs a comment saying why." in response.content.decode()

    response = bob.post(REVIEW.format(pk=change.pk), {"decision": "approve", "comment": "mine"})
    assert "Only governance officers can approve or reject change requests." in response.content.decode()

    response = alice.post(PUBLISH[0].format(pk=change.pk))
    assert "publishing needs 2 approval(s) of the latest revision (it has 0)" in response.content.decode()


@pytest.mark.parametrize(
    ("username", "status"),
    [("bob", 302), ("frank", 302), ("alice", 403), ("carol", 403), ("dave", 403), ("erin", 403), (None, 302)],
)
def test_who_may_propose_a_change(people, production, username, status) -> None:
    before = snapshot()
    response = client_as(people, username).post(
        "/policies/changes/new/?set=production",
        {"title": "Lower the cap", "rationale": "", "policy": edited(production, CAP_OLD, CAP_NEW), "action": "submit"},
    )
    assert response.status_code == status
    if username in ("bob", "frank"):
        change = ChangeRequest.objects.get(title="Lower the cap")
        assert response["Location"] == f"/policies/changes/{change.pk}/"
        assert (change.status, change.author.username, change.base_version.number) == ("in_review", username, 1)
    else:
        assert snapshot() == before


def test_submitting_a_broken_policy_creates_nothing(people, production) -> None:
    before = snapshot()
    broken = edited(production, "model: openai/gpt-4o-mini@2024-07-18", "model: openai/gpt-9@never")
    response = client_as(people, "bob").post(
        "/policies/changes/new/?set=production",
        {"title": "Broken", "rationale": "", "policy": broken, "action": "submit"},
    )
    assert response.status_code == 400
    body = response.content.decode()
    assert "fix them before submitting" in body
    assert "routes[0].model" in body  # the live panel, rendered with the form
    assert snapshot() == before

    response = client_as(people, "bob").post(
        "/policies/changes/new/?set=production", {"title": "", "rationale": "", "policy": broken, "action": "draft"}
    )
    assert response.status_code == 400
    assert "A title is required." in response.content.decode()
    assert snapshot() == before


def test_a_broken_policy_can_be_saved_as_a_draft(people, production) -> None:
    broken = edited(production, "model: openai/gpt-4o-mini@2024-07-18", "model: openai/gpt-9@never")
    response = client_as(people, "bob").post(
        "/policies/changes/new/?set=production",
        {"title": "Work in progress", "rationale": "", "policy": broken, "action": "draft"},
    )
    assert response.status_code == 302
    change = ChangeRequest.objects.get(title="Work in progress")
    assert change.status == ChangeStatus.DRAFT
    body = client_as(people, "bob").get(change.get_absolute_url()).content.decode()
    assert "routes[0].model" in body
    assert "unknown model &#x27;openai/gpt-9@never&#x27;" in body


def test_a_policy_over_256_kb_is_refused_with_413(people, production) -> None:
    before = snapshot()
    huge = "# " + "x" * (256 * 1024) + "\ndefault: deny\nroutes: []\n"
    response = client_as(people, "bob").post(
        "/policies/changes/new/?set=production", {"title": "Huge", "rationale": "", "policy": huge}
    )
    assert response.status_code == 413
    assert "larger than 256 KB" in response.content.decode()
    assert snapshot() == before


# --- the live check -------------------------------------------------------------------------------


def validate(client: Client, text: str, policy_set: str = "production", base: str = ""):
    return client.post(
        "/policies/changes/validate/",
        {"policy_set": policy_set, "base": base, "policy": text},
        HTTP_HX_REQUEST="true",
        HTTP_HX_TARGET="validation",
    )


@pytest.mark.parametrize("base", ["²", "x", "-1"])
def test_the_live_check_against_a_base_that_is_no_version_number_is_404(people, base) -> None:
    assert validate(client_as(people, "bob"), "routes: []", base=base).status_code == 404


@pytest.mark.parametrize(
    ("username", "status"), [("bob", 200), ("alice", 200), ("dave", 200), ("erin", 403), (None, 302)]
)
def test_who_may_use_the_live_check(people, production, username, status) -> None:
    before = snapshot()
    assert validate(client_as(people, username), production.current_version().document).status_code == status
    assert snapshot() == before


def test_live_check_returns_errors_with_their_paths_and_the_route_changes(people, production) -> None:
    broken = edited(production, "model: openai/gpt-4o-mini@2024-07-18", "model: openai/gpt-9@never")
    broken = broken.replace("max_rate_bp: 1000", "max_rate_bp: 20000")

    response = validate(client_as(people, "bob"), broken)

    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" not in body  # a fragment for htmx to swap in
    errors = re.findall(r'<code class="path">([^<]+)</code> <span class="message">([^<]+)</span>', body)
    assert (
        "routes[0].model",
        "unknown model &#x27;openai/gpt-9@never&#x27;: no such version in the registry",
    ) in errors
    assert (
        "routes[2].escalation.max_rate_bp",
        "must be an integer from 0 to 10000 (basis points), not 20000",
    ) in errors
    assert 'data-valid="false"' in body
    assert "ticket-triage / internal: openai/gpt-4o-mini@2024-07-18 → openai/gpt-9@never" in text(body)
    assert "against production v1" in body


def test_live_check_of_the_current_text_is_valid_with_no_route_changes(people, production) -> None:
    body = validate(client_as(people, "bob"), production.current_version().document).content.decode()
    assert 'data-valid="true"' in body
    assert "No route changes yet." in body


@pytest.mark.parametrize(
    ("text", "path", "message"),
    [
        ("routes: [\n", "(document)", "invalid YAML"),
        ("default: deny\nroutes:\n  - task: ticket-triage\n", "routes[0].classification", "required"),
        ("default: deny\nroutes: nothing\n", "routes", "must be a list of routes"),
        (
            "default: deny\nroutes:\n  - {task: [1], classification: internal, model: 3, fallbacks: [1, 2]}\n",
            "routes[0].task",
            "",
        ),
        ("a: &x [1]\nb: *x\n", "(document)", "anchors"),
    ],
)
def test_live_check_survives_malformed_documents(people, production, text, path, message) -> None:
    response = validate(client_as(people, "bob"), text)
    assert response.status_code == 200
    body = response.content.decode()
    assert f'<code class="path">{path}</code>' in body
    assert message in body


def test_live_check_compares_with_the_given_base(people, production) -> None:
    change_in("published", people, production)  # v2 lowers the cap to 400
    v1_text = production.versions.get(number=1).document
    body = validate(client_as(people, "bob"), v1_text, base="1").content.decode()
    assert "against production v1" in body and "No route changes yet." in body
    body = validate(client_as(people, "bob"), v1_text).content.decode()
    assert "against production v2" in body and "cap 400 bp) → " in body
    assert validate(client_as(people, "bob"), v1_text, base="9").status_code == 404
    assert validate(client_as(people, "bob"), v1_text, policy_set="nowhere").status_code == 404


# --- the editor, revisions and rollback -----------------------------------------------------------


def test_the_editor_starts_from_the_current_text_and_checks_it(people, production) -> None:
    body = client_as(people, "bob").get("/policies/changes/new/?set=production").content.decode()
    current = production.current_version()
    textarea = re.search(r'<textarea name="policy"[^>]*>\n(.*?)</textarea>', body, re.S)
    assert textarea is not None
    assert 'hx-trigger="keyup changed delay:500ms, change"' in textarea.group(0)
    assert 'hx-post="/policies/changes/validate/"' in textarea.group(0)
    assert parse_document(unescape(textarea.group(1))) == parse_document(current.document)
    assert 'data-valid="true"' in body


def unescape(markup: str) -> str:
    return html.unescape(markup)


def text(markup: str) -> str:
    """What a person reads: the page without its tags."""
    return html.unescape(strip_tags(markup))


def test_rolling_back_opens_a_new_change_request_with_the_old_text(people, production) -> None:
    change_in("published", people, production)  # v2
    v1 = production.versions.get(number=1)
    bob = client_as(people, "bob")

    page = bob.get("/policies/production/versions/1/").content.decode()
    assert "/policies/changes/new/?set=production&amp;from=1" in page and "Roll back to this version" in page
    assert "Roll back to this version" not in bob.get("/policies/production/versions/2/").content.decode()
    assert (
        "Roll back to this version"
        not in client_as(people, "alice").get("/policies/production/versions/1/").content.decode()
    )

    body = bob.get("/policies/changes/new/?set=production&from=1").content.decode()
    assert 'value="Roll back production to v1"' in body
    textarea = re.search(r'<textarea name="policy"[^>]*>\n(.*?)</textarea>', body, re.S)
    assert unescape(textarea.group(1)) == v1.document
    assert "cap 400 bp) → " in body  # the route changes against the version in force (v2)

    response = bob.post(
        "/policies/changes/new/?set=production&from=1",
        {"title": "Roll back production to v1", "rationale": "", "policy": v1.document, "action": "submit"},
    )
    rollback = ChangeRequest.objects.get(title="Roll back production to v1")
    assert response["Location"] == rollback.get_absolute_url()
    assert rollback.base_version.number == 2  # numbers only grow: it will become v3
    assert rollback.latest_revision().document == v1.document
    rollback.review(people["alice"], "approve", "ok")
    rollback.review(people["carol"], "approve", "ok")
    version = publish(rollback, people["alice"])
    assert version.number == 3 and version.spec == v1.spec


def test_the_author_revises_and_approvals_are_dismissed(people, production) -> None:
    change = change_in("in_review", people, production)
    change.review(people["alice"], "approve", "ok")
    bob = client_as(people, "bob")
    body = bob.get(f"/policies/changes/{change.pk}/revise/").content.decode()
    assert "Save revision 2" in body and "dismisses the approvals" in body

    response = bob.post(
        f"/policies/changes/{change.pk}/revise/", {"policy": edited(production, CAP_OLD, "max_rate_bp: 450")}
    )
    assert response.status_code == 302
    change.refresh_from_db()
    assert change.latest_revision().number == 2
    assert change.active_approvals().count() == 0
    detail = bob.get(change.get_absolute_url()).content.decode()
    assert "dismissed" in detail and 'class="review review-approve dismissed"' in detail
    assert "0 of 2" in detail


# --- the change request page ----------------------------------------------------------------------


def approve_buttons(body: str) -> list[str]:
    return re.findall(r'<button[^>]*value="approve"', body)


def test_the_author_never_sees_an_approve_control(people, production) -> None:
    change = change_in("in_review", people, production)
    url = change.get_absolute_url()
    bob_page = client_as(people, "bob").get(url).content.decode()
    assert approve_buttons(bob_page) == []
    assert 'value="reject"' not in bob_page
    assert "Withdraw" in bob_page and "Revise" in bob_page
    assert approve_buttons(client_as(people, "alice").get(url).content.decode())
    assert approve_buttons(client_as(people, "dave").get(url).content.decode()) == []
    assert 'id="review-form"' not in client_as(people, "dave").get(url).content.decode()

    change.review(people["alice"], "approve", "ok")
    assert approve_buttons(client_as(people, "alice").get(url).content.decode()) == []  # approved already
    assert approve_buttons(client_as(people, "carol").get(url).content.decode())


def test_an_officer_who_may_also_propose_cannot_approve_their_own(people, production) -> None:
    carol = people["carol"]
    carol.user_permissions.add(Permission.objects.get(codename="add_changerequest"))
    carol = User.objects.get(pk=carol.pk)  # a fresh permission cache
    change = start_change(production, carol, "Carol's change", "", edited(production, CAP_OLD, CAP_NEW))
    change.submit(carol)
    client = Client()
    client.force_login(carol)
    assert approve_buttons(client.get(change.get_absolute_url()).content.decode()) == []
    before = snapshot()
    response = client.post(REVIEW.format(pk=change.pk), {"decision": "approve", "comment": "mine"})
    assert response.status_code == 403
    assert f"carol wrote CR-{change.pk}: Carol&#x27;s change and cannot approve it." in response.content.decode()
    assert snapshot() == before


def test_the_detail_shows_route_changes_beside_the_yaml_diff(people, production) -> None:
    change = change_in("in_review", people, production)
    change.review(people["alice"], "comment", "Why?")
    body = client_as(people, "dave").get(change.get_absolute_url()).content.decode()
    assert (
        "ticket-triage / internal: escalation to openai/gpt-4o@2024-08-06 on low_confidence, context_overflow "
        "(cap 500 bp) → to openai/gpt-4o@2024-08-06 on low_confidence, context_overflow (cap 400 bp)"
    ) in text(body)
    assert '<span class="diff-del">-      max_rate_bp: 500</span>' in body
    assert '<span class="diff-add">+      max_rate_bp: 400</span>' in body
    assert "+++ CR-" in body and "--- production v1" in body
    assert "0 of 2" in body and "Why?" in body
    assert "✓ Valid" in body


def test_publishing_a_stale_request_explains_and_offers_the_author_a_rebase(people, production) -> None:
    change = change_in("stale", people, production)
    response = client_as(people, "alice").post(PUBLISH[0].format(pk=change.pk))
    assert response.status_code == 409
    body = response.content.decode()
    assert f"CR-{change.pk}: Lower the triage escalation cap starts from v1, but production is now at v2" in body
    assert "The author must rebase it first." in body
    assert "Rebase onto v2" not in body

    bob_page = client_as(people, "bob").get(change.get_absolute_url()).content.decode()
    assert "Rebase onto v2" in bob_page
    response = client_as(people, "bob").post(REBASE[0].format(pk=change.pk))
    assert response.status_code == 302
    change.refresh_from_db()
    assert change.base_version.number == 2
    assert change.active_approvals().count() == 0
    assert change.status == ChangeStatus.IN_REVIEW


def test_publishing_goes_to_the_policy_set_page_with_the_new_number(people, production) -> None:
    change = change_in("approved", people, production)
    alice = client_as(people, "alice")
    response = alice.post(PUBLISH[0].format(pk=change.pk), follow=True)
    assert response.redirect_chain[-1][0] == "/policies/production/"
    body = response.content.decode()
    assert f"CR-{change.pk}: Lower the triage escalation cap published as production v2." in body
    assert '<strong class="version-number" id="current-version">v2</strong>' in body


def test_change_request_list_filters_by_status_and_set(people, production) -> None:
    staging = PolicySet.objects.get(slug="staging")
    in_review = change_in("in_review", people, production)
    draft = change_in("draft", people, staging, "max_rate_bp: 800", "max_rate_bp: 700")
    bob = client_as(people, "bob")

    def listed(query: str) -> set[int]:
        body = bob.get(f"/policies/changes/{query}").content.decode()
        return {int(pk) for pk in re.findall(r'href="/policies/changes/(\d+)/"', body)}

    assert {in_review.pk, draft.pk} <= listed("")
    assert in_review.pk in listed("?status=in_review") and draft.pk not in listed("?status=in_review")
    assert draft.pk in listed("?policy_set=staging") and in_review.pk not in listed("?policy_set=staging")
    partial = bob.get("/policies/changes/?status=draft", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="change-table")
    assert partial.content.decode().lstrip().startswith('<div id="change-table">')
    assert bob.get("/policies/changes/?status=bogus").status_code == 400


# --- the overview, history and diffs --------------------------------------------------------------


def test_the_overview_shows_routes_costs_tiers_and_providers(people, production) -> None:
    change_in("in_review", people, production)
    bob = client_as(people, "bob").get("/policies/production/").content.decode()
    alice = client_as(people, "alice").get("/policies/production/").content.decode()

    assert '<strong class="version-number" id="current-version">v1</strong>' in alice
    assert "alice, carol" in alice  # approvers
    # ticket-triage: 1000 × (800 × $0.15 + 50 × $0.60) / 1M = $0.15 per 1k requests on gpt-4o-mini
    row = re.search(r"<strong>ticket-triage</strong>.*?</tr>", alice, re.S).group(0)
    assert "$0.15" in row and "800 in / 50 out" in row
    figure = json.loads(
        json.loads(
            re.search(r'<script id="provider-chart" type="application/json">(.*?)</script>', alice, re.S).group(1)
        )
    )
    pie = figure["data"][0]
    assert pie["type"] == "pie" and sum(pie["values"]) == 7
    assert dict(zip(pie["labels"], pie["values"], strict=True))["OpenAI"] == 3  # triage, contracts, code review
    assert 'id="tier-mix"' in alice
    assert "/api/v1/policy-sets/production/current.yaml" in alice
    assert "/api/v1/policy-sets/production/current.json" in alice
    assert "Lower the triage escalation cap" in alice  # an open change request
    assert "Propose a change" in bob and "Propose a change" not in alice
    assert "Roll back to this version" not in bob  # the current version is not rolled back to


def test_the_policy_sets_list(people, production) -> None:
    change_in("in_review", people, production)
    body = client_as(people, "dave").get("/policies/").content.decode()
    row = re.search(r"<strong>Production</strong>.*?</tr>", body, re.S).group(0)
    assert ">v1</a>" in row and '<td class="num">2</td>' in row
    assert '?policy_set=production">1</a>' in row


def test_history_diffs_any_two_versions(people, production) -> None:
    change_in("published", people, production)  # v2: the triage cap 500 → 400
    reader = client_as(people, "dave")

    body = reader.get("/policies/production/versions/").content.decode()
    assert "v2" in body and "alice" in body and "CR-" in body
    assert "cap 500 bp) → to openai/gpt-4o@2024-08-06 on low_confidence, context_overflow (cap 400 bp)" in body

    body = reader.get("/policies/production/versions/?from=2&to=1").content.decode()
    assert "production v2 → v1" in body
    assert '<span class="diff-del">-      max_rate_bp: 400</span>' in body
    assert '<span class="diff-add">+      max_rate_bp: 500</span>' in body

    body = reader.get("/policies/production/versions/?from=1&to=1").content.decode()
    assert "No route changes." in body and "The texts are identical." in body

    response = reader.get("/policies/production/versions/?from=1&to=7")
    assert response.status_code == 400
    assert "Choose a version of production (it has v2, v1)." in response.content.decode()
    assert reader.get("/policies/production/versions/?from=x&to=1").status_code == 400


def test_a_version_page_shows_its_provenance_and_text(people, production) -> None:
    change = change_in("published", people, production)
    body = client_as(people, "dave").get("/policies/production/versions/2/").content.decode()
    assert f"CR-{change.pk}: Lower the triage escalation cap" in body
    assert "max_rate_bp: 400" in body
    assert "/api/v1/policy-sets/production/versions/2.yaml" in body
    old = client_as(people, "dave").get("/policies/production/versions/1/").content.decode()
    assert "superseded by v2" in old and "no longer in force" in old


# --- the officers' inbox and the dashboard --------------------------------------------------------


def test_the_inbox_lists_change_requests_awaiting_the_officer(people, production) -> None:
    carol = people["carol"]
    carol.user_permissions.add(Permission.objects.get(codename="add_changerequest"))
    carol = User.objects.get(pk=carol.pk)
    carols = start_change(production, carol, "Carol's own change", "", edited(production, CAP_OLD, CAP_NEW))
    carols.submit(carol)
    bobs = change_in("in_review", people, production, "max_rate_bp: 300", "max_rate_bp: 250")
    draft = change_in("draft", people, production, "max_rate_bp: 1000", "max_rate_bp: 900")

    def inbox(username: str) -> str:
        return client_as(people, username).get("/approvals/").content.decode()

    def dashboard(username: str) -> str:
        return client_as(people, username).get("/").content.decode()

    for page in (inbox, dashboard):
        alice_sees, carol_sees = page("alice"), page("carol")
        assert f"CR-{carols.pk}:" in alice_sees and f"CR-{carols.pk}:" not in carol_sees  # not to its author
        assert f"CR-{bobs.pk}:" in alice_sees and f"CR-{bobs.pk}:" in carol_sees
        assert f"CR-{draft.pk}:" not in alice_sees  # not submitted yet
    assert client_as(people, "bob").get("/approvals/").status_code == 403
    assert f"CR-{bobs.pk}:" not in dashboard("bob")

    bobs.review(people["alice"], "approve", "ok")
    assert f"CR-{bobs.pk}:" not in inbox("alice") and f"CR-{bobs.pk}:" in inbox("carol")
    bobs.add_revision(people["bob"], edited(production, "max_rate_bp: 300", "max_rate_bp: 200"))
    assert f"CR-{bobs.pk}:" in inbox("alice")  # the new revision dismissed alice's approval
    bobs.review(people["alice"], "approve", "ok")
    bobs.review(people["carol"], "approve", "ok")
    assert "Approved, ready to publish" in inbox("alice") and f"CR-{bobs.pk}:" in inbox("alice")


# --- queries --------------------------------------------------------------------------------------


def publish_routes(policy_set: PolicySet, count: int, by: User) -> PolicyVersion:
    """A version with ``count`` routes (one task each, models from the demo registry), saved directly."""
    classification = DataClassification.objects.get(slug="internal")
    tiers = {tier.slug: tier for tier in CostTier.objects.all()}
    versions = list(ModelVersion.objects.filter(status=Status.APPROVED).select_related("model__provider"))
    routes = []
    for n in range(count):
        version = versions[n % len(versions)]
        task, _ = Task.objects.get_or_create(
            slug=f"bulk-task-{n}",
            defaults={"name": f"Bulk {n}", "default_classification": classification, "tier": tiers[version.cost_tier]},
        )
        routes.append(
            {
                "task": task.slug,
                "classification": "internal",
                "model": version.ref,
                "fallbacks": [versions[(n + 1) % len(versions)].ref],
                "escalation": {"to": versions[(n + 2) % len(versions)].ref, "when": ["error"], "max_rate_bp": 100},
                "constraints": {"max_latency_ms": 5000},
            }
        )
    spec = normalise({"default": "deny", "routes": routes})
    return PolicyVersion.objects.create(
        policy_set=policy_set,
        number=policy_set.current_version().number + 1,
        document=to_yaml(spec),
        spec=spec,
        provenance="re-signed",
        published_by=by,
    )


def test_the_overview_costs_the_same_queries_with_5_and_40_routes(people, production) -> None:
    alice = client_as(people, "alice")
    change_in("in_review", people, production)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            response = alice.get("/policies/production/")
        assert response.status_code == 200
        return len(captured)

    publish_routes(production, 5, people["alice"])
    at_5 = queries()
    publish_routes(production, 40, people["alice"])
    at_40 = queries()
    body = alice.get("/policies/production/").content.decode()
    assert body.count("<strong>bulk-task-") == 40
    assert at_5 == at_40
