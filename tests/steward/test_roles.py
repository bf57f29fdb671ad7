"""Who may do what: every role against every page and API endpoint, with and without API tokens.

The roles: nobody signed in, erin (signed in, no role), alice (officer), bob (engineer),
dave (auditor) and root (superuser). Each row of a table gives every role an explicit status,
and each request that could change something is checked against the database afterwards.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.test import Client

from registry.models import EndpointCredential, ModelVersion, Provider, Status
from steward.models import ApiToken

ROLES = ("anonymous", "erin", "alice", "bob", "dave", "root")
SIGNED_IN = ROLES[1:]
ROLE_FIXTURES = {"erin": "erin", "alice": "alice", "bob": "bob", "dave": "dave", "root": "admin_user"}

# The status every page answers each role. "login" means a redirect to /login/?next=<the page>.
READ = {"anonymous": "login", "erin": 403, "alice": 200, "bob": 200, "dave": 200, "root": 200}
PROPOSE_PAGE = {"anonymous": "login", "erin": 403, "alice": 403, "bob": 200, "dave": 403, "root": 200}
PROPOSE_POST = {"anonymous": "login", "erin": 403, "alice": 403, "bob": 302, "dave": 403, "root": 302}
APPROVE_POST = {"anonymous": "login", "erin": 403, "alice": 302, "bob": 403, "dave": 403, "root": 302}
REVIEW_PAGE = {"anonymous": "login", "erin": 403, "alice": 200, "bob": 403, "dave": 403, "root": 200}
REQUEST_CREDENTIAL_POST = {"anonymous": "login", "erin": 403, "alice": 302, "bob": 302, "dave": 403, "root": 302}
SIGNED_IN_ONLY = {"anonymous": "login", "erin": 200, "alice": 200, "bob": 200, "dave": 200, "root": 200}
# Django's admin sends everyone but staff to its own login page.
ADMIN = {"anonymous": "admin-login", "erin": "admin-login", "alice": "admin-login", "bob": "admin-login"}
ADMIN |= {"dave": "admin-login", "root": 200}

# The status every API endpoint answers each role.
API_READ = {"anonymous": 401, "erin": 403, "alice": 200, "bob": 200, "dave": 200, "root": 200}
API_SCHEMA = {"anonymous": 401, "erin": 200, "alice": 200, "bob": 200, "dave": 200, "root": 200}
API_PROPOSE = {"anonymous": 401, "erin": 403, "alice": 403, "bob": 201, "dave": 403, "root": 201}
API_DECIDE = {"anonymous": 401, "erin": 403, "alice": 200, "bob": 403, "dave": 403, "root": 200}
# roles.py lets officers and engineers register providers; auditors change nothing.
API_ADD_PROVIDER = {"anonymous": 401, "erin": 403, "alice": 201, "bob": 201, "dave": 403, "root": 201}


@dataclass
class Endpoint:
    """One request in a table, with how to check whether it changed what it should."""

    name: str
    method: str
    url: Callable[[ModelVersion], str]
    expected: dict[str, int | str]
    data: Callable[[ModelVersion], dict] | None = None
    # changed(version) is True when the request took effect; None for reads.
    changed: Callable[[ModelVersion], bool] | None = None
    json_body: bool = field(default=False)


def _proposal_form(version: ModelVersion) -> dict:
    return {
        "model": version.model_id,
        "version": "2501",
        "region": "eu-west-1",
        "endpoint_kind": "openai-compatible",
        "base_url": "https://api.mistral.ai/v1",
        "provider_model_id": "mistral-large-2501",
        "api_key_env": "MISTRAL_API_KEY",
        "input_price_usd": "2.00",
        "output_price_usd": "6.00",
        "cost_tier": "large",
        "notes": "Newer release.",
    }


def _proposal_json(version: ModelVersion | None = None) -> dict:
    return {
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


def _proposed_2501(version: ModelVersion) -> bool:
    return ModelVersion.objects.filter(ref="mistral/mistral-large@2501").exists()


def _status_is(status: str) -> Callable[[ModelVersion], bool]:
    def check(version: ModelVersion) -> bool:
        version.refresh_from_db()
        return version.status == status

    return check


def _credential_requested(version: ModelVersion) -> bool:
    return EndpointCredential.objects.filter(env_var="MISTRAL_API_KEY").exists()


def _provider_added(version: ModelVersion) -> bool:
    return Provider.objects.filter(slug="anthropic").exists()


PAGES = [
    Endpoint("dashboard", "get", lambda v: "/", READ),
    Endpoint("registry list", "get", lambda v: "/registry/", READ),
    Endpoint("version detail", "get", lambda v: f"/registry/versions/{v.pk}/", READ),
    Endpoint("propose form", "get", lambda v: "/registry/propose/", PROPOSE_PAGE),
    Endpoint("propose", "post", lambda v: "/registry/propose/", PROPOSE_POST, _proposal_form, _proposed_2501),
    Endpoint(
        "approve",
        "post",
        lambda v: f"/registry/versions/{v.pk}/approve/",
        APPROVE_POST,
        lambda v: {"comment": "Passed the evaluation suite."},
        _status_is(Status.APPROVED),
    ),
    Endpoint("approvals inbox", "get", lambda v: "/approvals/", REVIEW_PAGE),
    Endpoint("endpoint credentials", "get", lambda v: "/registry/credentials/", READ),
    Endpoint(
        "request credential",
        "post",
        lambda v: "/registry/credentials/",
        REQUEST_CREDENTIAL_POST,
        lambda v: {"env_var": "MISTRAL_API_KEY", "hosts": "api.mistral.ai"},
        _credential_requested,
    ),
    Endpoint("profile", "get", lambda v: "/profile/", SIGNED_IN_ONLY),
    Endpoint("api docs", "get", lambda v: "/api/docs/", SIGNED_IN_ONLY),
    Endpoint("admin", "get", lambda v: "/admin/", ADMIN),
]

API = [
    Endpoint("providers", "get", lambda v: "/api/v1/providers", API_READ),
    Endpoint("models", "get", lambda v: "/api/v1/models", API_READ),
    Endpoint("model versions", "get", lambda v: "/api/v1/model-versions", API_READ),
    Endpoint("model version", "get", lambda v: f"/api/v1/model-versions/{v.pk}", API_READ),
    Endpoint("schema", "get", lambda v: "/api/schema/", API_SCHEMA),
    Endpoint("endpoint credentials", "get", lambda v: "/api/v1/endpoint-credentials", API_READ),
    Endpoint(
        "request credential",
        "post",
        lambda v: "/api/v1/endpoint-credentials",
        API_ADD_PROVIDER,
        lambda v: {"env_var": "MISTRAL_API_KEY", "hosts": ["api.mistral.ai"]},
        _credential_requested,
        True,
    ),
    Endpoint("audit checkpoints", "get", lambda v: "/api/v1/audit/checkpoints", API_READ),
    Endpoint("propose", "post", lambda v: "/api/v1/model-versions", API_PROPOSE, _proposal_json, _proposed_2501, True),
    Endpoint(
        "approve",
        "post",
        lambda v: f"/api/v1/model-versions/{v.pk}/approve",
        API_DECIDE,
        lambda v: {"comment": "Passed the evaluation suite."},
        _status_is(Status.APPROVED),
        True,
    ),
    Endpoint(
        "reject",
        "post",
        lambda v: f"/api/v1/model-versions/{v.pk}/reject",
        API_DECIDE,
        lambda v: {"comment": "Fails the residency rules."},
        _status_is(Status.REJECTED),
        True,
    ),
    Endpoint(
        "add provider",
        "post",
        lambda v: "/api/v1/providers",
        API_ADD_PROVIDER,
        lambda v: {"name": "Anthropic", "slug": "anthropic", "regions": ["us-east-1"]},
        _provider_added,
        True,
    ),
]


def _cases(endpoints: list[Endpoint], roles: tuple[str, ...]) -> list:
    return [
        pytest.param(endpoint, role, id=f"{endpoint.method}-{endpoint.name}-{role}".replace(" ", "-"))
        for endpoint in endpoints
        for role in roles
    ]


def _send(client: Client, endpoint: Endpoint, version: ModelVersion, **headers):
    url = endpoint.url(version)
    if endpoint.method == "get":
        return client.get(url, headers=headers)
    data = endpoint.data(version) if endpoint.data else {}
    if endpoint.json_body:
        return client.post(url, json.dumps(data), content_type="application/json", headers=headers)
    return client.post(url, data, headers=headers)


@pytest.fixture
def user_for(request):
    """``user_for(role)`` → the named user of that role (None for anonymous)."""

    def get(role: str):
        return None if role == "anonymous" else request.getfixturevalue(ROLE_FIXTURES[role])

    return get


@pytest.fixture
def client_as(user_for, client_for):
    def make(role: str) -> Client:
        user = user_for(role)
        return Client() if user is None else client_for(user)

    return make


def _assert_status(response, expected: int | str, url: str) -> None:
    assert response.status_code < 500
    if expected == "login":
        assert response.status_code == 302
        location = urlsplit(response["Location"])
        assert location.path == "/login/"
        assert parse_qs(location.query)["next"] == [url]
    elif expected == "admin-login":
        assert response.status_code == 302
        assert urlsplit(response["Location"]).path == "/admin/login/"
    else:
        assert response.status_code == expected, response.content[:500]


def _snapshot(version: ModelVersion) -> tuple:
    """What a refused request must leave untouched."""
    version.refresh_from_db()
    return ModelVersion.objects.count(), Provider.objects.count(), version.status, version.transitions.count()


def _assert_effect(endpoint: Endpoint, version: ModelVersion, expected: int | str, before: tuple) -> None:
    if expected in (200, 201, 302) and endpoint.changed is not None:
        assert endpoint.changed(version)
    elif endpoint.method == "post":
        assert _snapshot(version) == before
        assert not endpoint.changed(version)


@pytest.mark.parametrize(("endpoint", "role"), _cases(PAGES, ROLES))
def test_page_access_by_role(endpoint: Endpoint, role: str, client_as, proposed_version):
    client = client_as(role)
    before = _snapshot(proposed_version)
    response = _send(client, endpoint, proposed_version)
    _assert_status(response, endpoint.expected[role], endpoint.url(proposed_version))
    _assert_effect(endpoint, proposed_version, endpoint.expected[role], before)


@pytest.mark.parametrize(("endpoint", "role"), _cases(API, ROLES))
def test_api_access_by_role_with_session(endpoint: Endpoint, role: str, client_as, proposed_version):
    client = client_as(role)
    before = _snapshot(proposed_version)
    response = _send(client, endpoint, proposed_version)
    _assert_status(response, endpoint.expected[role], endpoint.url(proposed_version))
    _assert_effect(endpoint, proposed_version, endpoint.expected[role], before)
    if endpoint.expected[role] == 401:
        assert response["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(("endpoint", "role"), _cases(API, SIGNED_IN))
def test_api_access_by_role_with_bearer_token(endpoint: Endpoint, role: str, user_for, proposed_version):
    _, raw = ApiToken.issue(user_for(role), "CI pipeline")
    before = _snapshot(proposed_version)
    response = _send(Client(), endpoint, proposed_version, Authorization=f"Bearer {raw}")
    _assert_status(response, endpoint.expected[role], endpoint.url(proposed_version))
    _assert_effect(endpoint, proposed_version, endpoint.expected[role], before)


def test_every_role_has_an_expected_status_for_every_page_and_endpoint():
    for endpoint in PAGES + API:
        assert set(endpoint.expected) == set(ROLES), endpoint.name


def test_superuser_proposal_through_the_page_is_recorded_as_theirs(admin_user, client_for, proposed_version):
    response = client_for(admin_user).post("/registry/propose/", _proposal_form(proposed_version))

    created = ModelVersion.objects.get(ref="mistral/mistral-large@2501")
    assert response.status_code == 302
    assert response["Location"] == f"/registry/versions/{created.pk}/"
    assert created.proposed_by == admin_user
    assert created.status == Status.PROPOSED
    assert created.input_price_micro_usd == 2_000_000


# --- personal API tokens --------------------------------------------------------------------


def test_revoked_token_is_refused(bob):
    token, raw = ApiToken.issue(bob, "CI pipeline")
    client = Client(headers={"Authorization": f"Bearer {raw}"})
    assert client.get("/api/v1/model-versions").status_code == 200

    token.revoke()

    response = client.get("/api/v1/model-versions")
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid, revoked or expired token."}


def test_revoked_token_cannot_propose(bob, mistral_large):
    token, raw = ApiToken.issue(bob, "CI pipeline")
    token.revoke()

    response = Client().post(
        "/api/v1/model-versions",
        json.dumps(_proposal_json()),
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw}"},
    )

    assert response.status_code == 401
    assert not ModelVersion.objects.exists()


def test_token_revoked_on_the_profile_page_stops_working(bob, client_for):
    token, raw = ApiToken.issue(bob, "CI pipeline")

    response = client_for(bob).post(f"/profile/tokens/{token.pk}/revoke/")

    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert Client().get("/api/v1/models", headers={"Authorization": f"Bearer {raw}"}).status_code == 401


def test_nobody_can_revoke_another_persons_token(bob, dave, client_for):
    token, raw = ApiToken.issue(bob, "CI pipeline")

    response = client_for(dave).post(f"/profile/tokens/{token.pk}/revoke/")

    assert response.status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None
    assert Client().get("/api/v1/models", headers={"Authorization": f"Bearer {raw}"}).status_code == 200


def test_token_of_a_deactivated_user_is_refused(bob):
    _, raw = ApiToken.issue(bob, "CI pipeline")
    bob.is_active = False
    bob.save()

    assert Client().get("/api/v1/models", headers={"Authorization": f"Bearer {raw}"}).status_code == 401


@pytest.mark.parametrize(
    "header",
    [
        "Bearer stw_not-a-token",
        "Bearer",
        "Bearer two parts",
        "Bearer stw_\u00e9t\u00e9",
    ],
    ids=["unknown", "missing-token", "three-parts", "non-utf8"],
)
def test_bad_bearer_header_is_refused(header: str, bob):
    ApiToken.issue(bob, "CI pipeline")

    response = Client().get("/api/v1/models", headers={"Authorization": header})

    assert response.status_code == 401
    assert "detail" in response.json()


def test_raw_token_is_never_stored(bob):
    token, raw = ApiToken.issue(bob, "CI pipeline")

    assert raw.startswith("stw_")
    assert token.token_hash == hashlib.sha256(raw.encode()).hexdigest()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {ApiToken._meta.db_table}")
        stored = [str(value) for row in cursor.fetchall() for value in row]
    assert not any(raw in value for value in stored)
    assert token.prefix == raw[:12]


def test_token_issued_on_the_profile_page_is_shown_once_and_stored_hashed(bob, client_for):
    client = client_for(bob)

    response = client.post("/profile/", {"name": "CI pipeline"})

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    token = ApiToken.objects.get(user=bob)
    page = response.content.decode()
    shown = next(word for word in page.replace("<", " ").replace(">", " ").split() if word.startswith(token.prefix))
    assert token.token_hash == hashlib.sha256(shown.encode()).hexdigest()
    assert shown not in client.get("/profile/").content.decode()
    assert Client().get("/api/v1/models", headers={"Authorization": f"Bearer {shown}"}).status_code == 200


def test_token_use_is_recorded(bob):
    token, raw = ApiToken.issue(bob, "CI pipeline")
    assert token.last_used_at is None

    Client().get("/api/v1/models", headers={"Authorization": f"Bearer {raw}"})

    token.refresh_from_db()
    assert token.last_used_at is not None


# --- malformed requests never answer 500 ------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "method", "path", "body", "content_type", "expected"),
    [
        ("bob", "post", "/api/v1/model-versions", "{not json", "application/json", 400),
        ("bob", "post", "/api/v1/model-versions", "model=mistral/mistral-large", "text/plain", 415),
        (
            "bob",
            "post",
            "/api/v1/model-versions",
            "model=mistral%2Fmistral-large&version=1",
            "application/x-www-form-urlencoded",
            415,
        ),
        ("bob", "post", "/api/v1/model-versions", "[1, 2, 3]", "application/json", 400),
        ("bob", "post", "/api/v1/model-versions", '"a string"', "application/json", 400),
        ("bob", "post", "/api/v1/model-versions", "", "application/json", 400),
        ("alice", "post", "/api/v1/model-versions/{pk}/approve", "{not json", "application/json", 400),
        ("alice", "post", "/api/v1/model-versions/{pk}/approve", "comment=ok", "text/plain", 415),
        ("alice", "post", "/api/v1/model-versions/{pk}/approve", "[1, 2]", "application/json", 400),
        ("alice", "post", "/api/v1/model-versions/{pk}/approve", '{"comment": 42}', "application/json", 400),
        ("alice", "post", "/api/v1/model-versions/{pk}/approve", '{"comment": ["a"]}', "application/json", 400),
        ("alice", "post", "/api/v1/model-versions/{pk}/approve", '{"comment": null}', "application/json", 400),
        ("alice", "post", "/api/v1/model-versions/999999/approve", '{"comment": "ok"}', "application/json", 404),
        ("alice", "post", "/api/v1/model-versions/{pk}/explode", '{"comment": "ok"}', "application/json", 404),
        ("alice", "post", "/api/v1/model-versions/not-a-pk/approve", '{"comment": "ok"}', "application/json", 404),
        ("alice", "get", "/api/v1/model-versions/{pk}/approve", None, None, 405),
        ("dave", "get", "/api/v1/model-versions/999999", None, None, 404),
        ("dave", "get", "/api/v1/model-versions/not-a-pk", None, None, 404),
        ("dave", "get", "/api/v1/nothing-here", None, None, 404),
        ("dave", "get", "/api/v1/model-versions?sort=nonsense&status=nonsense", None, None, 400),
        ("dave", "get", "/api/v1/model-versions?limit=abc&offset=-5", None, None, 400),
        ("dave", "get", "/registry/versions/999999/", None, None, 404),
        ("dave", "get", "/registry/?sort=nonsense&page=abc", None, None, 200),
        ("alice", "post", "/registry/versions/999999/approve/", "comment=ok", "application/x-www-form-urlencoded", 404),
        ("alice", "post", "/registry/versions/{pk}/explode/", "comment=ok", "application/x-www-form-urlencoded", 302),
        ("alice", "get", "/registry/versions/{pk}/approve/", None, None, 405),
        ("bob", "post", "/registry/propose/", "{not a form", "application/json", 400),
    ],
)
def test_malformed_request_never_answers_500(
    role, method, path, body, content_type, expected, user_for, client_for, proposed_version
):
    client = client_for(user_for(role))
    url = path.format(pk=proposed_version.pk)
    before = ModelVersion.objects.count()

    if method == "get":
        response = client.get(url)
    else:
        response = client.post(url, body, content_type=content_type)

    assert response.status_code < 500
    assert response.status_code == expected, response.content[:500]
    assert ModelVersion.objects.count() == before
    proposed_version.refresh_from_db()
    assert proposed_version.status == Status.PROPOSED


def test_unknown_page_action_is_reported_not_applied(alice, client_for, proposed_version):
    response = client_for(alice).post(
        f"/registry/versions/{proposed_version.pk}/explode/", {"comment": "ok"}, follow=True
    )

    assert response.status_code == 200
    assert "Unknown action &#x27;explode&#x27;." in response.content.decode()
    proposed_version.refresh_from_db()
    assert proposed_version.status == Status.PROPOSED
