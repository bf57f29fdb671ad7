"""Change requests over HTTP: create from YAML, submit, review, withdraw, rebase and publish.

bob is the engineer who writes changes, alice and carol are the officers, dave the auditor.
Production needs two approvals, staging one (tests/portfolio/conftest.py).
"""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from portfolio.models import ChangeRequest, ChangeStatus, PolicySet, PolicyVersion, Review
from steward.models import ApiToken
from steward.roles import ENGINEERS

from .conftest import PRODUCTION_V1

pytestmark = pytest.mark.django_db

CR = "/api/v1/change-requests"
MINI = "openai/gpt-4o-mini@2024-07-18"
HAIKU = "anthropic/claude-3-haiku@20240307"
# Production v1 with ticket triage moved from gpt-4o-mini to claude-3-haiku.
TO_HAIKU = PRODUCTION_V1.replace(f"model: {MINI}", f"model: {HAIKU}")
# Production v1 with a lower escalation cap on support replies.
LOWER_CAP = PRODUCTION_V1.replace("max_rate_bp: 300", "max_rate_bp: 200")


def post(client: Client, path: str, data: dict | None = None):
    return client.post(path, json.dumps(data or {}), content_type="application/json")


def create(
    client: Client, policy: str | None = TO_HAIKU, policy_set: str = "production", title: str = "Triage on Haiku"
):
    body = {"policy_set": policy_set, "title": title, "rationale": "Cheaper, as accurate on our evaluation."}
    if policy is not None:
        body["policy"] = policy
    response = post(client, CR, body)
    assert response.status_code == 201, response.content
    return response.json()


def review(client: Client, pk: int, decision: str, comment: str = ""):
    return post(client, f"{CR}/{pk}/reviews", {"decision": decision, "comment": comment})


def versions(slug: str = "production") -> list[int]:
    return list(PolicyVersion.objects.filter(policy_set__slug=slug).order_by("number").values_list("number", flat=True))


def status_of(pk: int) -> str:
    return ChangeRequest.objects.get(pk=pk).status


def assert_json_error(response, status: int, field: str) -> list[str]:
    """The response is ``status`` with a JSON body naming ``field``; returns its messages."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert field in body, body
    return body[field] if isinstance(body[field], list) else [body[field]]


@pytest.fixture
def clients(client_for, alice, bob, carol, dave) -> dict[str, Client]:
    return {user.username: client_for(user) for user in (alice, bob, carol, dave)}


@pytest.fixture
def frank(world) -> User:
    """A second engineer."""
    user = User.objects.create_user("frank", "frank@example.org")
    user.groups.add(Group.objects.get(name=ENGINEERS))
    return user


@pytest.fixture
def submitted(clients) -> dict:
    """bob's change of production (triage on Haiku), submitted for review."""
    change = create(clients["bob"])
    assert post(clients["bob"], f"{CR}/{change['id']}/submit").status_code == 200
    return change


# --- writing and submitting ---------------------------------------------------------------------


def test_engineer_posts_yaml_and_sees_route_changes_in_words_and_the_yaml_diff(clients):
    change = create(clients["bob"])

    assert change["status"] == "draft"
    assert (change["author"], change["policy_set"], change["base_version"], change["revision"]) == (
        "bob",
        "production",
        1,
        1,
    )
    assert change["valid"] is True and change["errors"] == []
    assert change["policy"] == TO_HAIKU
    assert change["route_changes"] == [f"ticket-triage / internal: {MINI} → {HAIKU}"]
    assert change["diff"][:2] == ["--- production v1", f"+++ CR-{change['id']} r1"]
    assert f"-    model: {MINI}" in change["diff"]
    assert f"+    model: {HAIKU}" in change["diff"]
    assert clients["bob"].get(f"{CR}/{change['id']}").json()["route_changes"] == change["route_changes"]


def test_route_changes_name_fallback_escalation_and_constraint_changes(clients):
    text = (
        PRODUCTION_V1.replace("      - google/gemini-2.0-flash@001\n", "")
        .replace("max_rate_bp: 300", "max_rate_bp: 200")
        .replace("max_latency_ms: 8000", "max_latency_ms: 6000")
    )
    change = create(clients["bob"], text)
    assert change["route_changes"] == [
        "support-reply / pii: escalation to anthropic/claude-opus-4@20250514 on error, low_confidence (cap 300 bp)"
        " → to anthropic/claude-opus-4@20250514 on error, low_confidence (cap 200 bp)",
        "support-reply / pii: constraints {'max_latency_ms': 8000} → {'max_latency_ms': 6000}",
        "ticket-triage / internal: fallbacks mistral/mistral-small@2501, google/gemini-2.0-flash@001"
        " → mistral/mistral-small@2501",
    ]


def test_without_a_policy_the_change_starts_from_the_current_text(clients):
    change = create(clients["bob"], policy=None)
    assert change["policy"] == PRODUCTION_V1
    assert change["route_changes"] == [] and change["diff"] == []


def test_submit_puts_the_change_in_review(clients):
    change = create(clients["bob"])
    response = post(clients["bob"], f"{CR}/{change['id']}/submit")
    assert response.status_code == 200
    assert response.json()["status"] == "in_review"
    [message] = assert_json_error(post(clients["bob"], f"{CR}/{change['id']}/submit"), 400, "status")
    assert message == f"CR-{change['id']}: Triage on Haiku is already in review."


def test_malformed_yaml_is_kept_as_a_draft_with_its_errors_and_cannot_be_submitted(clients):
    change = create(clients["bob"], "default: deny\nroutes:\n  - task: [ticket-triage\n")
    assert change["valid"] is False
    assert change["errors"] == [
        {"path": "", "message": "line 4: invalid YAML: expected ',' or ']', but got '<stream end>'"}
    ]
    assert change["route_changes"] == []

    [message] = assert_json_error(post(clients["bob"], f"{CR}/{change['id']}/submit"), 400, "policy")
    assert message == "Revision 1 has 1 validation error(s); fix them before submitting."
    assert status_of(change["id"]) == ChangeStatus.DRAFT


def test_invalid_policy_lists_every_error_with_its_path(clients):
    text = TO_HAIKU.replace("max_rate_bp: 500", "max_rate_bp: 50000").replace(
        "anthropic/claude-3-5-sonnet@20241022", "openai/gpt-4-turbo@2024-04-09"
    )
    change = create(clients["bob"], text)
    assert [error["path"] for error in change["errors"]] == [
        "routes[0].escalation.max_rate_bp",
        "routes[1].model",
        "routes[1].model",
        "routes[1].model",
        "routes[1].fallbacks",
    ]
    assert change["errors"][1]["message"] == "openai/gpt-4-turbo@2024-04-09 is retired, not approved"
    assert_json_error(post(clients["bob"], f"{CR}/{change['id']}/submit"), 400, "policy")


def test_policy_over_256_kb_is_refused_with_413_and_nothing_is_written(clients, submitted):
    big = PRODUCTION_V1 + "#" * (300 * 1024) + "\n"
    before = ChangeRequest.objects.count()
    response = post(clients["bob"], CR, {"policy_set": "production", "title": "Big", "policy": big})
    [message] = assert_json_error(response, 413, "policy")
    assert message == "The policy is larger than 256 KB."
    assert ChangeRequest.objects.count() == before
    # A new revision and the lint endpoint refuse it the same way.
    assert_json_error(post(clients["bob"], f"{CR}/{submitted['id']}/revisions", {"policy": big}), 413, "policy")
    assert ChangeRequest.objects.get(pk=submitted["id"]).revisions.count() == 1
    assert_json_error(post(clients["bob"], "/api/v1/policy-sets/production/validate", {"policy": big}), 413, "policy")


def test_body_over_the_upload_limit_is_refused_with_a_json_413(clients):
    huge = "#" * (6 * 1024 * 1024)
    response = post(clients["bob"], CR, {"policy_set": "production", "title": "Huge", "policy": huge})
    assert response.status_code == 413
    assert response["Content-Type"].startswith("application/json")


def test_only_engineers_write_change_requests(clients):
    for name in ("alice", "dave"):
        response = post(clients[name], CR, {"policy_set": "production", "title": "x", "policy": TO_HAIKU})
        [message] = assert_json_error(response, 403, "detail")
        assert message == "Only engineers can write change requests."
    assert not ChangeRequest.objects.filter(title="x").exists()


# --- separation of duties -----------------------------------------------------------------------


def test_author_cannot_approve_their_own_change(clients, alice):
    # alice is an officer who may also propose: she writes a change, then tries to approve it.
    alice.groups.add(Group.objects.get(name=ENGINEERS))
    change = create(clients["alice"])
    post(clients["alice"], f"{CR}/{change['id']}/submit")

    for decision in ("approve", "reject"):
        [message] = assert_json_error(review(clients["alice"], change["id"], decision, "mine"), 403, "detail")
        assert message == f"alice wrote CR-{change['id']}: Triage on Haiku and cannot {decision} it."
    assert not Review.objects.filter(change_request_id=change["id"]).exists()
    assert status_of(change["id"]) == ChangeStatus.IN_REVIEW


def test_engineers_cannot_approve_or_reject(clients, client_for, frank, submitted):
    for client in (clients["bob"], client_for(frank)):  # the author, and another engineer
        for decision in ("approve", "reject"):
            [message] = assert_json_error(review(client, submitted["id"], decision, "lgtm"), 403, "detail")
            assert message == "Only governance officers can approve or reject change requests."
    assert not Review.objects.filter(change_request_id=submitted["id"]).exists()


def test_auditor_reads_but_cannot_comment_or_review(clients, submitted):
    assert clients["dave"].get(f"{CR}/{submitted['id']}").status_code == 200
    assert clients["dave"].get(CR).json()["count"] >= 1
    [message] = assert_json_error(review(clients["dave"], submitted["id"], "comment", "Why?"), 403, "detail")
    assert message == "Auditors read change requests; they do not comment on them."
    assert_json_error(review(clients["dave"], submitted["id"], "approve"), 403, "detail")
    assert not Review.objects.filter(change_request_id=submitted["id"]).exists()


def test_engineers_and_officers_comment(clients, submitted):
    assert review(clients["bob"], submitted["id"], "comment", "Evaluation results attached.").status_code == 201
    response = review(clients["carol"], submitted["id"], "comment", "What about latency?")
    assert response.status_code == 201
    assert [(r["reviewer"], r["decision"]) for r in response.json()["reviews"]] == [
        ("bob", "comment"),
        ("carol", "comment"),
    ]
    assert response.json()["status"] == "in_review"
    [message] = assert_json_error(review(clients["carol"], submitted["id"], "comment", "  "), 400, "comment")
    assert message == "A comment cannot be empty."


def test_review_decision_must_be_known(clients, submitted):
    [message] = assert_json_error(review(clients["alice"], submitted["id"], "maybe"), 400, "decision")
    assert message == '"maybe" is not a valid choice.'


def test_a_draft_cannot_be_approved(clients):
    change = create(clients["bob"])
    [message] = assert_json_error(review(clients["alice"], change["id"], "approve"), 400, "status")
    assert (
        message == f"CR-{change['id']}: Triage on Haiku is draft; only requests in review can be approved or rejected."
    )


# --- approvals and publishing -------------------------------------------------------------------


def test_production_needs_two_distinct_officers(clients, submitted, bob):
    pk = submitted["id"]
    response = review(clients["alice"], pk, "approve", "Numbers check out.")
    assert response.status_code == 201
    assert response.json()["approvals"] == ["alice"]
    assert response.json()["status"] == "in_review"

    [message] = assert_json_error(post(clients["alice"], f"{CR}/{pk}/publish"), 400, "status")
    assert message == (
        f"CR-{pk}: Triage on Haiku is in review; publishing needs 2 approval(s) of the latest revision (it has 1)."
    )
    [message] = assert_json_error(review(clients["alice"], pk, "approve", "again"), 400, "decision")
    assert message == "alice has already approved this revision."
    assert versions() == [1]

    response = review(clients["carol"], pk, "approve", "Agreed.")
    assert response.json()["approvals"] == ["alice", "carol"]
    assert response.json()["status"] == "approved"

    response = post(clients["carol"], f"{CR}/{pk}/publish")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "published"
    assert response.json()["published_version"] == 2
    assert versions() == [1, 2]
    version = PolicyVersion.objects.get(policy_set__slug="production", number=2)
    assert (version.document, version.change_request_id, version.author, version.approvers) == (
        TO_HAIKU,
        pk,
        bob,
        ["alice", "carol"],
    )
    assert version.published_by.username == "carol"


def test_staging_needs_one_approval(clients):
    text = clients["bob"].get("/api/v1/policy-sets/staging/current.yaml").content.decode()
    change = create(clients["bob"], text.replace("mistral/mistral-small@2501", MINI), "staging", "Triage on mini")
    post(clients["bob"], f"{CR}/{change['id']}/submit")
    assert review(clients["carol"], change["id"], "approve").json()["status"] == "approved"
    assert post(clients["alice"], f"{CR}/{change['id']}/publish").json()["published_version"] == 2
    assert versions("staging") == [1, 2]


def test_last_approval_publishes_when_the_set_says_so(clients):
    PolicySet.objects.filter(slug="staging").update(auto_publish=True)
    text = clients["bob"].get("/api/v1/policy-sets/staging/current.yaml").content.decode()
    change = create(clients["bob"], text.replace("mistral/mistral-small@2501", MINI), "staging", "Triage on mini")
    post(clients["bob"], f"{CR}/{change['id']}/submit")

    response = review(clients["carol"], change["id"], "approve", "ok")

    assert response.status_code == 201
    assert (response.json()["status"], response.json()["published_version"]) == ("published", 2)
    assert versions("staging") == [1, 2]


def test_only_officers_publish(clients, submitted):
    review(clients["alice"], submitted["id"], "approve")
    review(clients["carol"], submitted["id"], "approve")
    for name in ("bob", "dave"):
        [message] = assert_json_error(post(clients[name], f"{CR}/{submitted['id']}/publish"), 403, "detail")
        assert message == "Only governance officers can publish change requests."
    assert versions() == [1]


def test_publishing_twice_is_refused(clients, submitted):
    pk = submitted["id"]
    review(clients["alice"], pk, "approve")
    review(clients["carol"], pk, "approve")
    assert post(clients["alice"], f"{CR}/{pk}/publish").status_code == 200

    [message] = assert_json_error(post(clients["carol"], f"{CR}/{pk}/publish"), 400, "status")
    assert message == f"CR-{pk}: Triage on Haiku is already published."
    assert versions() == [1, 2]
    # Nor can a published change be revised, reviewed or withdrawn.
    assert_json_error(post(clients["bob"], f"{CR}/{pk}/revisions", {"policy": LOWER_CAP}), 400, "status")
    assert_json_error(review(clients["alice"], pk, "reject", "too late"), 400, "status")
    assert_json_error(post(clients["bob"], f"{CR}/{pk}/withdraw"), 400, "status")
    assert status_of(pk) == ChangeStatus.PUBLISHED


def test_new_revision_dismisses_earlier_approvals(clients, client_for, alice, frank, submitted):
    pk = submitted["id"]
    review(clients["alice"], pk, "approve", "ok")
    assert review(clients["carol"], pk, "approve", "ok").json()["status"] == "approved"

    response = post(clients["bob"], f"{CR}/{pk}/revisions", {"policy": LOWER_CAP})

    assert response.status_code == 201
    body = response.json()
    assert (body["revision"], body["status"], body["approvals"]) == (2, "in_review", [])
    assert [(r["reviewer"], r["revision"], r["dismissed"]) for r in body["reviews"]] == [
        ("alice", 1, True),
        ("carol", 1, True),
    ]
    assert body["route_changes"] == [
        "support-reply / pii: escalation to anthropic/claude-opus-4@20250514 on error, low_confidence (cap 300 bp)"
        " → to anthropic/claude-opus-4@20250514 on error, low_confidence (cap 200 bp)"
    ]
    assert_json_error(post(clients["alice"], f"{CR}/{pk}/publish"), 400, "status")
    # Only the author revises.
    [message] = assert_json_error(post(client_for(frank), f"{CR}/{pk}/revisions", {"policy": TO_HAIKU}), 403, "detail")
    assert message == f"Only the author of CR-{pk}: Triage on Haiku can revise it."
    assert_json_error(post(clients["alice"], f"{CR}/{pk}/revisions", {"policy": TO_HAIKU}), 403, "detail")

    # The new text needs its own two approvals.
    review(clients["alice"], pk, "approve", "ok again")
    review(clients["carol"], pk, "approve", "ok again")
    assert post(clients["alice"], f"{CR}/{pk}/publish").json()["published_version"] == 2
    assert PolicyVersion.objects.get(policy_set__slug="production", number=2).document == LOWER_CAP


def test_an_invalid_revision_in_review_is_not_published(clients, submitted):
    pk = submitted["id"]
    broken = TO_HAIKU.replace("max_rate_bp: 500", "max_rate_bp: 50000")
    assert post(clients["bob"], f"{CR}/{pk}/revisions", {"policy": broken}).json()["valid"] is False
    # Officers cannot approve a revision with validation errors ...
    [message] = assert_json_error(review(clients["alice"], pk, "approve"), 400, "policy")
    assert message.startswith("Revision 2 has 1 validation error(s)")
    # ... so it never collects the approvals publishing needs.
    [message] = assert_json_error(post(clients["alice"], f"{CR}/{pk}/publish"), 400, "status")
    assert "it has 0" in message
    assert versions() == [1]


def test_withdrawn_change_cannot_be_reviewed_or_published(clients, client_for, frank, submitted):
    pk = submitted["id"]
    review(clients["alice"], pk, "approve")
    [message] = assert_json_error(post(client_for(frank), f"{CR}/{pk}/withdraw"), 403, "detail")
    assert message == f"Only the author of CR-{pk}: Triage on Haiku can withdraw it."

    response = post(clients["bob"], f"{CR}/{pk}/withdraw", {"comment": "Evaluation was wrong."})
    assert response.status_code == 200
    assert response.json()["status"] == "withdrawn"

    [message] = assert_json_error(review(clients["carol"], pk, "approve"), 400, "status")
    assert message == f"CR-{pk}: Triage on Haiku is withdrawn; only requests in review can be approved or rejected."
    assert_json_error(review(clients["carol"], pk, "comment", "noted"), 400, "status")
    [message] = assert_json_error(post(clients["alice"], f"{CR}/{pk}/publish"), 400, "status")
    assert message.startswith(f"CR-{pk}: Triage on Haiku is withdrawn; publishing needs 2 approval(s)")
    for action in ("submit", "withdraw", "rebase"):
        assert_json_error(post(clients["bob"], f"{CR}/{pk}/{action}"), 400, "status")
    assert_json_error(post(clients["bob"], f"{CR}/{pk}/revisions", {"policy": LOWER_CAP}), 400, "status")
    assert status_of(pk) == ChangeStatus.WITHDRAWN
    assert versions() == [1]


def test_rejection_needs_a_comment_and_is_final(clients, submitted):
    pk = submitted["id"]
    review(clients["alice"], pk, "approve", "ok")
    [message] = assert_json_error(review(clients["carol"], pk, "reject"), 400, "comment")
    assert message == "A rejection needs a comment saying why."
    assert status_of(pk) == ChangeStatus.IN_REVIEW

    response = review(clients["carol"], pk, "reject", "Haiku fails our PII redaction suite.")
    assert response.status_code == 201
    assert response.json()["status"] == "rejected"

    assert_json_error(review(clients["alice"], pk, "approve", "overrule"), 400, "status")
    [message] = assert_json_error(post(clients["alice"], f"{CR}/{pk}/publish"), 400, "status")
    assert message.startswith(f"CR-{pk}: Triage on Haiku is rejected;")
    assert_json_error(post(clients["bob"], f"{CR}/{pk}/revisions", {"policy": LOWER_CAP}), 400, "status")
    assert_json_error(post(clients["bob"], f"{CR}/{pk}/submit"), 400, "status")
    assert_json_error(post(clients["bob"], f"{CR}/{pk}/rebase"), 400, "status")
    assert status_of(pk) == ChangeStatus.REJECTED
    assert versions() == [1]


# --- stale bases and rebasing -------------------------------------------------------------------


def test_stale_base_is_a_409_with_a_rebase_link_and_rebasing_lets_it_publish(clients):
    first = create(clients["bob"], LOWER_CAP, title="Lower the support cap")
    second = create(clients["bob"], TO_HAIKU, title="Triage on Haiku")
    for change in (first, second):
        post(clients["bob"], f"{CR}/{change['id']}/submit")
        review(clients["alice"], change["id"], "approve")
        review(clients["carol"], change["id"], "approve")
    assert post(clients["alice"], f"{CR}/{first['id']}/publish").json()["published_version"] == 2

    response = post(clients["alice"], f"{CR}/{second['id']}/publish")

    [message] = assert_json_error(response, 409, "base_version")
    assert message == (
        f"CR-{second['id']}: Triage on Haiku starts from v1, but production is now at v2. "
        "Rebase it into a new revision on the current version (its approvals will be dismissed)."
    )
    assert response.json()["rebase"] == f"/api/v1/change-requests/{second['id']}/rebase"
    assert versions() == [1, 2]
    assert status_of(second["id"]) == ChangeStatus.APPROVED

    response = post(clients["bob"], f"{CR}/{second['id']}/rebase")

    assert response.status_code == 200
    body = response.json()
    assert (body["base_version"], body["revision"], body["status"], body["approvals"]) == (2, 2, "in_review", [])
    assert body["diff"][0] == "--- production v2"
    # The same text on top of v2: the reviewers see that it also undoes v2's lower cap.
    assert body["route_changes"] == [
        "support-reply / pii: escalation to anthropic/claude-opus-4@20250514 on error, low_confidence (cap 200 bp)"
        " → to anthropic/claude-opus-4@20250514 on error, low_confidence (cap 300 bp)",
        f"ticket-triage / internal: {MINI} → {HAIKU}",
    ]
    review(clients["alice"], second["id"], "approve", "re-checked on v2")
    review(clients["carol"], second["id"], "approve", "re-checked on v2")
    assert post(clients["alice"], f"{CR}/{second['id']}/publish").json()["published_version"] == 3
    assert versions() == [1, 2, 3]


def test_only_the_author_rebases(clients, client_for, frank, submitted):
    [message] = assert_json_error(post(client_for(frank), f"{CR}/{submitted['id']}/rebase"), 403, "detail")
    assert message == f"Only the author of CR-{submitted['id']}: Triage on Haiku can revise it."
    assert_json_error(post(clients["alice"], f"{CR}/{submitted['id']}/rebase"), 403, "detail")


# --- the API for CI pipelines -------------------------------------------------------------------


def test_ci_pipeline_with_a_personal_token(bob, world):
    """What README.md shows: fetch current.yaml, edit, lint, post, submit, with a bearer token."""
    _, token = ApiToken.issue(bob, "CI pipeline")
    ci = Client(HTTP_AUTHORIZATION=f"Bearer {token}")

    current = ci.get("/api/v1/policy-sets/production/current.yaml")
    assert current.status_code == 200
    text = current.content.decode().replace(f"model: {MINI}", f"model: {HAIKU}")
    lint = post(ci, "/api/v1/policy-sets/production/validate", {"policy": text})
    assert lint.json() == {"valid": True, "errors": []}
    created = post(ci, CR, {"policy_set": "production", "title": "Triage on Haiku", "rationale": "", "policy": text})
    assert created.status_code == 201
    submitted = post(ci, f"{CR}/{created.json()['id']}/submit")
    assert submitted.status_code == 200
    assert submitted.json()["status"] == "in_review"


def test_validate_reports_errors_and_saves_nothing(clients):
    before = ChangeRequest.objects.count()
    response = post(clients["dave"], "/api/v1/policy-sets/production/validate", {"policy": "default: allow\n"})
    assert response.status_code == 200
    assert response.json() == {
        "valid": False,
        "errors": [
            {"path": "default", "message": "must be deny, not 'allow'"},
            {"path": "routes", "message": "required: a list of routes"},
        ],
    }
    assert ChangeRequest.objects.count() == before


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"title": "x"}, "policy_set", "This field is required."),
        ({"policy_set": "nightly", "title": "x"}, "policy_set", "Object with slug=nightly does not exist."),
        ({"policy_set": "production"}, "title", "This field is required."),
        (
            {"policy_set": "production", "title": "x" * 201},
            "title",
            "Ensure this field has no more than 200 characters.",
        ),
        ({"policy_set": "production", "title": "x", "policy": ["routes"]}, "policy", "Not a valid string."),
        (
            {"policy_set": "production", "title": "x", "policy": "default: deny\x00"},
            "policy",
            "Null characters are not allowed.",
        ),
    ],
)
def test_bad_fields_are_named(clients, body, field, message):
    before = ChangeRequest.objects.count()
    assert assert_json_error(post(clients["bob"], CR, body), 400, field) == [message]
    assert ChangeRequest.objects.count() == before


def test_nothing_answers_500(clients, submitted):
    """Odd bodies to every action: each gets a 4xx with a JSON body, or is stored with its errors."""
    pk = submitted["id"]
    odd_policies = [
        "routes: " + "[" * 10_000 + "]" * 10_000,
        "a: &a [x]\nb: *a\n",
        "default: !!python/object/apply:os.system ['true']\n",
        "- just\n- a list\n",
        "default: deny\nroutes: [1, 'two', {task: 3}]\n",
        "default: deny\nroutes:\n  - {task: ticket-triage, classification: internal, model: x, fallbacks: 7,"
        " escalation: 1, constraints: []}\n",
        "\t",
    ]
    for policy in odd_policies:
        response = post(clients["bob"], CR, {"policy_set": "production", "title": "odd", "policy": policy})
        assert response.status_code == 201, (policy[:40], response.content[:200])
        assert response.json()["valid"] is False
    lint = post(clients["bob"], "/api/v1/policy-sets/production/validate", {"policy": odd_policies[0]})
    assert lint.json()["errors"] == [{"path": "", "message": "line 1: the document nests deeper than 32 levels"}]
    for path, body in [
        (CR, []),
        (CR, None),
        (f"{CR}/{pk}/reviews", {"decision": ["approve"]}),
        (f"{CR}/{pk}/reviews", {"decision": "approve", "comment": {"a": 1}}),
        (f"{CR}/{pk}/revisions", {}),
        (f"{CR}/{pk}/withdraw", {"comment": ["x"]}),
        (f"{CR}/999999/submit", {}),
        (f"{CR}/abc/publish", {}),
    ]:
        response = clients["bob"].post(path, json.dumps(body), content_type="application/json")
        assert 400 <= response.status_code < 500, (path, body, response.status_code)
        assert response["Content-Type"].startswith("application/json"), (path, body)
    response = clients["bob"].post(CR, "{not json", content_type="application/json")
    assert_json_error(response, 400, "detail")


def test_anonymous_requests_get_401(submitted):
    anonymous = Client()
    for path in (CR, f"{CR}/{submitted['id']}/submit", f"{CR}/{submitted['id']}/reviews"):
        response = post(anonymous, path, {"decision": "approve"})
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == "Bearer"
    assert anonymous.get(CR).status_code == 401
    assert status_of(submitted["id"]) == ChangeStatus.IN_REVIEW
