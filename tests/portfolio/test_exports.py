"""Exports of policy versions as YAML and JSON, and the immutability of published versions."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from portfolio.models import PolicySet, PolicyVersion
from portfolio.policy import normalise
from portfolio.validation import parse_document

from .conftest import PRODUCTION_V1, STAGING_V1, publish_through_review

pytestmark = pytest.mark.django_db

V1_YAML = "/api/v1/policy-sets/production/versions/1.yaml"
V1_JSON = "/api/v1/policy-sets/production/versions/1.json"
CURRENT_YAML = "/api/v1/policy-sets/production/current.yaml"
CURRENT_JSON = "/api/v1/policy-sets/production/current.json"
LOWER_CAP = PRODUCTION_V1.replace("max_rate_bp: 300", "max_rate_bp: 200")


@pytest.fixture
def bob_client(client_for, bob) -> Client:
    return client_for(bob)


def test_version_as_yaml_is_the_approved_text(bob_client):
    response = bob_client.get(V1_YAML)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/yaml; charset=utf-8"
    assert response["X-Policy-Version"] == "1"
    assert response["Content-Disposition"] == 'inline; filename="production-v1.yaml"'
    assert response.content.decode() == PRODUCTION_V1


def test_version_as_json_is_the_normalised_spec(bob_client):
    response = bob_client.get(V1_JSON)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["X-Policy-Version"] == "1"
    body = json.loads(response.content)
    assert body == {"policy_set": "production", "version": 1, **normalise(parse_document(PRODUCTION_V1))}
    # Routes sorted by task and classification, every optional part explicit, integers stay integers.
    assert [(r["task"], r["classification"]) for r in body["routes"]] == [
        ("support-reply", "pii"),
        ("ticket-triage", "internal"),
    ]
    triage = body["routes"][1]
    assert triage == {
        "task": "ticket-triage",
        "classification": "internal",
        "tier": None,
        "model": "openai/gpt-4o-mini@2024-07-18",
        "fallbacks": ["mistral/mistral-small@2501", "google/gemini-2.0-flash@001"],
        "escalation": {
            "to": "openai/gpt-4o@2024-08-06",
            "when": ["low_confidence", "context_overflow"],
            "confidence_threshold_bp": 7000,
            "max_rate_bp": 500,
        },
        "constraints": {},
    }


def test_current_follows_the_newest_version_and_old_versions_stay(bob_client, alice, carol, bob, world):
    assert bob_client.get(CURRENT_YAML).content.decode() == PRODUCTION_V1
    publish_through_review(world.production, LOWER_CAP, bob, [alice, carol])

    current = bob_client.get(CURRENT_YAML)
    assert current["X-Policy-Version"] == "2"
    assert current["Content-Disposition"] == 'inline; filename="production-v2.yaml"'
    assert current.content.decode() == LOWER_CAP
    current_json = json.loads(bob_client.get(CURRENT_JSON).content)
    assert current_json["version"] == 2
    assert current_json["routes"][0]["escalation"]["max_rate_bp"] == 200
    assert bob_client.get(V1_YAML).content.decode() == PRODUCTION_V1
    assert bob_client.get("/api/v1/policy-sets/staging/current.yaml").content.decode() == STAGING_V1


def test_version_list_shows_provenance(bob_client, alice, carol, bob, world):
    publish_through_review(world.production, LOWER_CAP, bob, [alice, carol])
    response = bob_client.get("/api/v1/policy-sets/production/versions")
    assert response.status_code == 200
    rows = [(v["number"], v["author"], v["approvers"], v["published_by"]) for v in response.json()]
    assert rows == [(2, "bob", ["alice", "carol"], "alice"), (1, "bob", ["alice", "carol"], "alice")]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/policy-sets/production/versions/2.yaml",
        "/api/v1/policy-sets/production/versions/0.json",
        "/api/v1/policy-sets/nightly/versions/1.yaml",
        "/api/v1/policy-sets/nightly/current.json",
    ],
)
def test_unknown_version_or_set_is_404(bob_client, path):
    response = bob_client.get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert "detail" in response.json()


def test_set_without_versions_has_no_current(bob_client, world):
    PolicySet.objects.create(slug="canary", name="Canary")
    response = bob_client.get("/api/v1/policy-sets/canary/current.yaml")
    assert response.status_code == 404
    assert response.json() == {"detail": "canary has no published version yet."}


def test_other_formats_are_not_served(bob_client):
    assert bob_client.get("/api/v1/policy-sets/production/versions/1.xml").status_code == 404


def test_auditors_read_exports(client_for, dave):
    auditor = client_for(dave)
    for path in (V1_YAML, V1_JSON, CURRENT_YAML, CURRENT_JSON):
        assert auditor.get(path).status_code == 200, path


def test_people_without_a_role_may_not_read_exports(client_for, erin, world):
    response = client_for(erin).get(V1_YAML)
    assert response.status_code == 403
    assert response.json() == {"detail": "You do not have permission to read policy versions."}


def test_anonymous_requests_get_401(world):
    for path in (V1_YAML, V1_JSON, CURRENT_YAML, CURRENT_JSON):
        response = Client().get(path)
        assert response.status_code == 401, path
        assert response["WWW-Authenticate"] == "Bearer"


def test_published_versions_cannot_be_changed_or_deleted(world):
    version = world.production.current_version()

    version.document = LOWER_CAP
    with pytest.raises(ValidationError, match="immutable; publish a new version instead"):
        version.save()
    with pytest.raises(ValidationError, match="immutable and cannot be deleted"):
        version.delete()

    stored = PolicyVersion.objects.get(pk=version.pk)
    assert stored.document == PRODUCTION_V1
    assert stored.number == 1
