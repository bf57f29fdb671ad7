"""Bad input to the registry gets a clear error naming the field, and nothing is saved.

The REST API answers 400 with ``{"field": ["message"]}``; the browser forms answer 400 and show
the error next to the field.
"""

from __future__ import annotations

import json
from html import escape

import pytest
from django.contrib.auth.models import Group, User

from registry.models import ModelVersion, Status, VersionTransition
from steward.roles import ENGINEERS, OFFICERS

PROPOSALS = "/api/v1/model-versions"
REQUIRED = (
    "model",
    "version",
    "region",
    "base_url",
    "provider_model_id",
    "api_key_env",
    "input_price_micro_usd",
    "output_price_micro_usd",
)


def _proposal(**overrides) -> dict:
    fields = {
        "model": "mistral/mistral-large",
        "version": "2501",
        "region": "eu-west-1",
        "base_url": "https://api.mistral.ai/v1",
        "provider_model_id": "mistral-large-2501",
        "api_key_env": "MISTRAL_API_KEY",
        "input_price_micro_usd": 2_000_000,
        "output_price_micro_usd": 6_000_000,
        "cost_tier": "large",
    }
    return {**fields, **overrides}


def _post_json(client, url: str, body: dict):
    return client.post(url, json.dumps(body), content_type="application/json")


def _assert_names_only(response, field: str) -> list[str]:
    """A 400 whose JSON body is ``{field: [message, ...]}`` and nothing else; returns the messages."""
    assert response.status_code == 400, response.content[:500]
    body = response.json()
    assert list(body) == [field], body
    messages = body[field]
    assert isinstance(messages, list) and messages
    assert all(isinstance(message, str) and message for message in messages)
    return messages


@pytest.fixture
def frank(db) -> User:
    """Both an officer and an engineer: may propose and may decide, but never his own proposal."""
    user = User.objects.create_user("frank", "frank@example.org", "correct-horse-battery")
    user.groups.add(Group.objects.get(name=OFFICERS), Group.objects.get(name=ENGINEERS))
    return user


# --- proposing through the API ----------------------------------------------------------------


def test_sanity_valid_proposal_is_saved(bob, client_for, mistral_large):
    # The baseline every refusal below differs from by one field.
    response = _post_json(client_for(bob), PROPOSALS, _proposal())

    assert response.status_code == 201, response.content
    assert response.json()["ref"] == "mistral/mistral-large@2501"
    assert ModelVersion.objects.get(ref="mistral/mistral-large@2501").proposed_by == bob


def test_duplicate_ref_is_refused(bob, client_for, proposed_version):
    before = ModelVersion.objects.count()

    response = _post_json(client_for(bob), PROPOSALS, _proposal(version="2411"))

    messages = _assert_names_only(response, "version")
    assert messages == ["mistral/mistral-large@2411 is already in the registry."]
    assert ModelVersion.objects.count() == before


@pytest.mark.parametrize("field", ["input_price_micro_usd", "output_price_micro_usd"])
def test_negative_price_is_refused(field: str, bob, client_for, mistral_large):
    response = _post_json(client_for(bob), PROPOSALS, _proposal(**{field: -1}))

    _assert_names_only(response, field)
    assert not ModelVersion.objects.exists()


@pytest.mark.parametrize("field", ["input_price_micro_usd", "output_price_micro_usd"])
@pytest.mark.parametrize("value", [2**53, 2**63 - 1])
def test_price_past_what_a_signed_policy_carries_is_refused(field: str, value: int, bob, client_for, mistral_large):
    # The column holds 2**63 - 1, but audit events and signed policies are canonical JSON (I-JSON): 2**53 - 1.
    response = _post_json(client_for(bob), PROPOSALS, _proposal(**{field: value}))

    [message] = _assert_names_only(response, field)
    assert "9007199254740991" in message
    assert not ModelVersion.objects.exists()


def test_the_largest_signable_price_is_accepted(bob, client_for, mistral_large):
    response = _post_json(client_for(bob), PROPOSALS, _proposal(input_price_micro_usd=2**53 - 1))

    assert response.status_code == 201, response.content


@pytest.mark.parametrize("field", ["input_price_micro_usd", "output_price_micro_usd"])
@pytest.mark.parametrize("value", [1.5, "2.50", "a lot", None])
def test_price_that_is_not_an_integer_is_refused(field: str, value, bob, client_for, mistral_large):
    # Prices are integer micro-USD, never floats.
    response = _post_json(client_for(bob), PROPOSALS, _proposal(**{field: value}))

    _assert_names_only(response, field)
    assert not ModelVersion.objects.exists()


@pytest.mark.parametrize("base_url", ["not a url", "api.mistral.ai/v1", "ftp//x", "http://", ""])
def test_malformed_base_url_is_refused(base_url: str, bob, client_for, mistral_large):
    response = _post_json(client_for(bob), PROPOSALS, _proposal(base_url=base_url))

    _assert_names_only(response, "base_url")
    assert not ModelVersion.objects.exists()


@pytest.mark.parametrize("api_key_env", ["openai-key", "1KEY", "sk-abc123", "mistral_api_key", "MY KEY", ""])
def test_api_key_env_must_be_an_environment_variable_name(api_key_env: str, bob, client_for, mistral_large):
    response = _post_json(client_for(bob), PROPOSALS, _proposal(api_key_env=api_key_env))

    messages = _assert_names_only(response, "api_key_env")
    if api_key_env:
        assert "[A-Z_][A-Z0-9_]*" in messages[0]
    assert not ModelVersion.objects.exists()


@pytest.mark.parametrize("model", ["nope/nothing", "mistral/nothing", "nope/mistral-large", "mistral-large", ""])
def test_unknown_model_is_refused(model: str, bob, client_for, mistral_large):
    response = _post_json(client_for(bob), PROPOSALS, _proposal(model=model))

    messages = _assert_names_only(response, "model")
    if model == "nope/nothing":
        assert messages == ["No model 'nope/nothing' in the registry (expected provider/model)."]
    assert not ModelVersion.objects.exists()


def test_every_missing_required_field_is_named(bob, client_for, mistral_large):
    response = _post_json(client_for(bob), PROPOSALS, {})

    assert response.status_code == 400
    assert response.json() == {field: ["This field is required."] for field in REQUIRED}
    assert not ModelVersion.objects.exists()


@pytest.mark.parametrize("field", REQUIRED)
def test_one_missing_required_field_is_named(field: str, bob, client_for, mistral_large):
    body = _proposal()
    del body[field]

    response = _post_json(client_for(bob), PROPOSALS, body)

    assert _assert_names_only(response, field) == ["This field is required."]
    assert not ModelVersion.objects.exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [("region", "EU West"), ("version", "-bad version"), ("cost_tier", "Huge!"), ("endpoint_kind", "telnet")],
)
def test_other_malformed_fields_are_named(field: str, value: str, bob, client_for, mistral_large):
    response = _post_json(client_for(bob), PROPOSALS, _proposal(**{field: value}))

    _assert_names_only(response, field)
    assert not ModelVersion.objects.exists()


def test_read_only_fields_in_a_proposal_are_ignored(bob, client_for, mistral_large):
    # A proposal cannot arrive already approved, or in someone else's name.
    response = _post_json(client_for(bob), PROPOSALS, _proposal(status="approved", proposed_by="alice"))

    assert response.status_code == 201
    created = ModelVersion.objects.get(ref="mistral/mistral-large@2501")
    assert created.status == Status.PROPOSED
    assert created.proposed_by == bob


# --- lifecycle actions through the API --------------------------------------------------------


@pytest.mark.parametrize("action", ["approve", "reject"])
@pytest.mark.parametrize("body", [{}, {"comment": ""}, {"comment": "   \n\t"}], ids=["missing", "empty", "blank"])
def test_decision_without_comment_is_refused(action: str, body: dict, alice, client_for, proposed_version):
    transitions = VersionTransition.objects.count()

    response = _post_json(client_for(alice), f"{PROPOSALS}/{proposed_version.pk}/{action}", body)

    assert _assert_names_only(response, "comment") == [f"A comment is required to {action} a model version."]
    proposed_version.refresh_from_db()
    assert proposed_version.status == Status.PROPOSED
    assert VersionTransition.objects.count() == transitions


@pytest.mark.parametrize("action", ["retire", "deprecate", "restrict"])
def test_transition_not_allowed_from_proposed_is_refused(action: str, alice, client_for, proposed_version):
    transitions = VersionTransition.objects.count()

    response = _post_json(client_for(alice), f"{PROPOSALS}/{proposed_version.pk}/{action}", {"comment": "Out of date."})

    messages = _assert_names_only(response, "status")
    assert messages == [
        f"Cannot {action} mistral/mistral-large@2411: it is proposed. Allowed actions: approve, reject."
    ]
    proposed_version.refresh_from_db()
    assert proposed_version.status == Status.PROPOSED
    assert VersionTransition.objects.count() == transitions


def test_final_status_allows_no_transition(alice, carol, client_for, proposed_version):
    proposed_version.reject(carol, "Fails the residency rules.")

    response = _post_json(
        client_for(alice), f"{PROPOSALS}/{proposed_version.pk}/approve", {"comment": "Changed my mind."}
    )

    messages = _assert_names_only(response, "status")
    assert "Allowed actions: none (it is final)." in messages[0]
    proposed_version.refresh_from_db()
    assert proposed_version.status == Status.REJECTED


def test_proposer_cannot_approve_own_proposal(frank, client_for, mistral_large):
    client = client_for(frank)
    proposed = _post_json(client, PROPOSALS, _proposal())
    assert proposed.status_code == 201
    pk = proposed.json()["id"]

    response = _post_json(client, f"{PROPOSALS}/{pk}/approve", {"comment": "Looks good to me."})

    assert response.status_code == 403
    assert response.json() == {
        "detail": "frank proposed mistral/mistral-large@2501 and cannot approve it; another officer must decide."
    }
    version = ModelVersion.objects.get(pk=pk)
    assert version.status == Status.PROPOSED
    assert list(version.transitions.values_list("action", flat=True)) == ["propose"]


def test_proposer_cannot_reject_own_proposal(frank, client_for, mistral_large):
    client = client_for(frank)
    pk = _post_json(client, PROPOSALS, _proposal()).json()["id"]

    response = _post_json(client, f"{PROPOSALS}/{pk}/reject", {"comment": "Withdrawn."})

    assert response.status_code == 403
    assert "cannot reject it" in response.json()["detail"]
    assert ModelVersion.objects.get(pk=pk).status == Status.PROPOSED


def test_another_officer_can_approve_what_the_dual_role_user_proposed(frank, alice, client_for, mistral_large):
    pk = _post_json(client_for(frank), PROPOSALS, _proposal()).json()["id"]

    response = _post_json(client_for(alice), f"{PROPOSALS}/{pk}/approve", {"comment": "Evaluations pass."})

    assert response.status_code == 200
    assert response.json()["status"] == Status.APPROVED
    assert ModelVersion.objects.get(pk=pk).status == Status.APPROVED


# --- the same rules in the browser forms ------------------------------------------------------


def _form(mistral_large, **overrides) -> dict:
    fields = {
        "model": mistral_large.pk,
        "version": "2501",
        "region": "eu-west-1",
        "endpoint_kind": "openai-compatible",
        "base_url": "https://api.mistral.ai/v1",
        "provider_model_id": "mistral-large-2501",
        "api_key_env": "MISTRAL_API_KEY",
        "input_price_usd": "2.50",
        "output_price_usd": "7.50",
        "cost_tier": "large",
        "notes": "",
    }
    return {**fields, **overrides}


def test_sanity_valid_form_proposal_is_saved_in_micro_usd(bob, client_for, mistral_large):
    response = client_for(bob).post("/registry/propose/", _form(mistral_large))

    created = ModelVersion.objects.get(ref="mistral/mistral-large@2501")
    assert response.status_code == 302
    assert (created.input_price_micro_usd, created.output_price_micro_usd) == (2_500_000, 7_500_000)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("input_price_usd", "-2.50", "Prices cannot be negative."),
        ("output_price_usd", "-0.01", "Prices cannot be negative."),
        ("input_price_usd", "cheap", "Enter a number."),
        ("base_url", "not a url", "Enter a valid URL."),
        ("api_key_env", "openai-key", "Must be an environment variable name matching [A-Z_][A-Z0-9_]*"),
        ("api_key_env", "1KEY", "Must be an environment variable name matching [A-Z_][A-Z0-9_]*"),
        ("api_key_env", "sk-abc123", "Must be an environment variable name matching [A-Z_][A-Z0-9_]*"),
        ("model", "999999", "Select a valid choice."),
        ("version", "", "This field is required."),
        ("region", "", "This field is required."),
        ("cost_tier", "huge", "Select a valid choice."),
    ],
)
def test_bad_form_value_is_shown_and_nothing_saved(field, value, message, bob, client_for, proposed_version):
    before = ModelVersion.objects.count()

    response = client_for(bob).post("/registry/propose/", _form(proposed_version.model, **{field: value}))

    assert response.status_code == 400
    page = response.content.decode()
    assert f'id="{field}-error"' in page
    assert escape(message) in page
    assert ModelVersion.objects.count() == before


def test_duplicate_ref_in_the_form_is_shown_and_nothing_saved(bob, client_for, proposed_version):
    before = ModelVersion.objects.count()

    response = client_for(bob).post("/registry/propose/", _form(proposed_version.model, version="2411"))

    assert response.status_code == 400
    page = response.content.decode()
    assert 'id="version-error"' in page
    assert "mistral/mistral-large@2411 is already in the registry." in page
    assert ModelVersion.objects.count() == before


@pytest.mark.parametrize("action", ["approve", "reject"])
@pytest.mark.parametrize("comment", ["", "   "], ids=["empty", "blank"])
def test_decision_form_requires_a_comment(action: str, comment: str, alice, client_for, proposed_version):
    transitions = VersionTransition.objects.count()

    response = client_for(alice).post(f"/registry/versions/{proposed_version.pk}/{action}/", {"comment": comment})

    assert response.status_code == 400
    assert "A comment is required" in response.content.decode()
    proposed_version.refresh_from_db()
    assert proposed_version.status == Status.PROPOSED
    assert VersionTransition.objects.count() == transitions


def test_decision_form_refuses_a_transition_not_allowed(alice, client_for, proposed_version):
    response = client_for(alice).post(f"/registry/versions/{proposed_version.pk}/retire/", {"comment": "Out of date."})

    assert response.status_code == 400
    assert "Cannot retire mistral/mistral-large@2411: it is proposed." in response.content.decode()
    proposed_version.refresh_from_db()
    assert proposed_version.status == Status.PROPOSED


def test_decision_form_refuses_the_proposer(frank, client_for, mistral_large):
    client = client_for(frank)
    assert client.post("/registry/propose/", _form(mistral_large)).status_code == 302
    version = ModelVersion.objects.get(ref="mistral/mistral-large@2501")

    response = client.post(f"/registry/versions/{version.pk}/approve/", {"comment": "Looks good to me."})

    # The page re-renders the version, which tells the proposer in place of the decision form.
    assert response.status_code == 400
    assert "You proposed this version; another officer must decide it." in response.content.decode()
    version.refresh_from_db()
    assert version.status == Status.PROPOSED
