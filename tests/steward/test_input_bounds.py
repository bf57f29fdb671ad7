"""Input the database cannot hold gets a 4xx naming the parameter or field, and changes nothing:
page sizes and offsets, NUL characters in paths, filters and bodies, lone surrogates, JSON nested
too deep or with integers too long, status reports past their columns, and YAML integers of more
than 4,300 digits in policies, change requests and suites.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client

from portfolio.models import ChangeRequest, RouterReport, Task
from registry.models import EvaluationRun, EvaluationSuite, Model, Provider

from ..factories import ROUTED_POLICY, routed_world

pytestmark = pytest.mark.django_db

LIST_ENDPOINTS = [
    "/api/v1/providers",
    "/api/v1/models",
    "/api/v1/model-versions",
    "/api/v1/endpoint-credentials",
    "/api/v1/evaluation-suites",
    "/api/v1/evaluation-runs",
    "/api/v1/certifications",
    "/api/v1/classifications",
    "/api/v1/certification-holdings",
    "/api/v1/matrix-cells",
    "/api/v1/cost-tiers",
    "/api/v1/tasks",
    "/api/v1/policy-sets",
    "/api/v1/change-requests",
]

BAD_PAGING = [
    ("limit", "99999999999999999999"),
    ("limit", "abc"),
    ("limit", "0"),
    ("limit", "-1"),
    ("limit", "501"),
    ("limit", "1.5"),
    ("limit", "١٠"),  # Arabic-Indic digits: int() would take them
    ("offset", "-1"),
    ("offset", "x"),
    ("offset", "99999999999999999999"),
]


@pytest.fixture
def world(alice, carol, bob):
    return routed_world(alice, carol, bob)


@pytest.fixture
def officer(world, client_for, alice) -> Client:
    return client_for(alice)


@pytest.fixture
def engineer(world, client_for, bob) -> Client:
    return client_for(bob)


def _json_post(client: Client, path: str, body: str | bytes, **extra):
    return client.post(path, body, content_type="application/json", **extra)


def _names(response, name: str) -> list[str]:
    """The 400 answer's messages for ``name``."""
    assert response.status_code == 400, response.content[:300]
    body = response.json()
    assert name in body, body
    return body[name] if isinstance(body[name], list) else [body[name]]


# --- paging -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", LIST_ENDPOINTS)
@pytest.mark.parametrize(("param", "value"), BAD_PAGING, ids=[f"{p}={v[:8]}" for p, v in BAD_PAGING])
def test_a_bad_page_parameter_is_a_400_naming_it(officer, path, param, value):
    messages = _names(officer.get(path, {param: value}), param)
    assert "whole number" in messages[0]


@pytest.mark.parametrize("path", LIST_ENDPOINTS)
def test_every_list_has_a_maximum_page_size_and_a_far_offset_is_an_empty_page(officer, path):
    biggest = officer.get(path, {"limit": "500"})
    assert biggest.status_code == 200, biggest.content[:300]
    assert "results" in biggest.json()
    far = officer.get(path, {"limit": "500", "offset": "999999999999999999"})
    assert far.status_code == 200 and far.json()["results"] == []
    assert "from 1 to 500" in _names(officer.get(path, {"limit": "501"}), "limit")[0]


def test_the_page_size_holds_on_a_list_longer_than_it(officer, world):
    for n in range(3):
        Provider.objects.create(name=f"Extra {n}", slug=f"extra-{n}", regions=["eu-west-1"])
    page = officer.get("/api/v1/providers", {"limit": "2", "offset": "1"}).json()
    assert len(page["results"]) == 2 and page["count"] == Provider.objects.count()


# --- NUL characters in paths and filters --------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "param"),
    [
        ("/api/v1/change-requests?status=%00", "status"),
        ("/api/v1/change-requests?policy_set=prod%00", "policy_set"),
        ("/api/v1/evaluation-runs?suite=%00", "suite"),
        ("/api/v1/evaluation-runs?model_version=a%00b", "model_version"),
        ("/api/v1/matrix-cells?classification=%00", "classification"),
        ("/api/v1/model-versions?q=%00", "q"),
        ("/api/v1/providers?slug=%00", "slug"),
        ("/api/v1/certification-holdings?provider__slug=%00", "provider__slug"),
        ("/api/v1/compliance/check?model=%00&classification=internal", "model"),
        ("/api/v1/audit/checkpoints?after=%00", "after"),
        ("/api/v1/classifications/%00", "path"),
        ("/api/v1/tasks/ticket%00triage", "path"),
        ("/api/v1/cost-tiers/%00", "path"),
        ("/api/v1/policy-sets/%00/versions", "path"),
        ("/api/v1/evaluation-suites/%00/export", "path"),
        ("/api/v1/policy-sets/production%00/bundle", "path"),
    ],
)
def test_a_nul_in_a_path_or_filter_is_a_400_naming_it(officer, url, param):
    assert _names(officer.get(url), param)


@pytest.mark.parametrize("url", ["/registry/?q=%00", "/audit/decisions/?task=%00", "/policies/changes/?status=%00"])
def test_pages_refuse_a_nul_in_their_filters_too(officer, url):
    response = officer.get(url)
    assert response.status_code == 400
    assert "Null characters are not allowed" in response.content.decode()


@pytest.mark.parametrize(
    ("url", "data", "field"),
    [
        ("/policies/changes/validate/", {"policy_set": "production\x00", "policy": "default: deny"}, "policy_set"),
        ("/policies/changes/new/", {"policy_set": "production", "title": "x\x00", "policy": "default: deny"}, "title"),
        ("/policies/fleet/", {"name": "edge-9", "policy_set": "production\x00"}, "policy_set"),
    ],
)
def test_page_forms_refuse_a_nul_naming_the_field(officer, url, data, field):
    before = ChangeRequest.objects.count()
    response = officer.post(url, data)
    assert response.status_code == 400
    assert f"{field}: Null characters are not allowed." in response.content.decode()
    assert ChangeRequest.objects.count() == before


# --- bodies -------------------------------------------------------------------------------------

# (path, body as JSON text, the field the 400 names, the model whose rows must not change)
BAD_BODIES = [
    ("/api/v1/change-requests", {"policy_set": "production\x00", "title": "x"}, "policy_set", ChangeRequest),
    ("/api/v1/change-requests", '{"policy_set": "production", "title": "\\ud800"}', "title", ChangeRequest),
    (
        "/api/v1/tasks",
        {"slug": "t", "name": "T", "default_classification": "\x00", "tier": "small"},
        "default_classification",
        Task,
    ),
    ("/api/v1/tasks", {"slug": "t", "name": "T", "default_classification": "internal", "tier": "\x00"}, "tier", Task),
    ("/api/v1/evaluation-runs", {"suite": "\x00", "model_version": "acme/small-a@1"}, "suite", EvaluationRun),
    ("/api/v1/evaluation-runs", {"suite": "s", "model_version": "acme/\x00"}, "model_version", EvaluationRun),
    ("/api/v1/models", {"provider": "\x00", "name": "M", "slug": "m", "family": "f"}, "provider", Model),
    ("/api/v1/providers", {"name": "P", "slug": "p", "regions": ["eu-west-1\x00"]}, "regions", Provider),
    ("/api/v1/providers", '{"name": "P", "slug": "p", "regions": ["\\udc00"]}', "regions", Provider),
    ("/api/v1/providers", {"name": "P", "slug": "p\x00", "regions": []}, "slug", Provider),
    ("/api/v1/providers", '{"name\\u0000": "P"}', "name\\u0000", Provider),
]


@pytest.mark.parametrize(("path", "body", "field", "model"), BAD_BODIES)
def test_unstorable_text_in_a_body_is_a_400_naming_the_field(officer, engineer, path, body, field, model):
    before = model.objects.count()
    client = officer if path in ("/api/v1/providers", "/api/v1/models", "/api/v1/tasks") else engineer
    text = body if isinstance(body, str) else json.dumps(body)
    messages = _names(_json_post(client, path, text), field)
    assert any("not allowed" in message for message in messages), messages
    assert model.objects.count() == before


def test_a_nul_in_a_multipart_slug_is_a_400(officer):
    response = officer.post("/api/v1/certification-holdings", {"certification": "soc2\x00", "provider": "acme"})
    assert _names(response, "certification") == ["Null characters are not allowed."]


DEEP_20K = "[" * 20_000 + "]" * 20_000


@pytest.mark.parametrize(
    "body",
    [
        '{"policy": ' + DEEP_20K + "}",
        '{"policy": ' + "[" * 40 + "]" * 40 + "}",
        '{"policy": ' + "1" * 5000 + "}",
        '{"policy": NaN}',
        '{"policy": Infinity}',
    ],
    ids=["20000-deep", "40-deep", "5000-digits", "nan", "infinity"],
)
@pytest.mark.parametrize("path", ["/api/v1/policy-sets/production/validate", "/api/v1/change-requests"])
def test_json_that_nests_too_deep_or_holds_what_json_should_not_is_a_400(engineer, path, body):
    before = ChangeRequest.objects.count()
    [message] = _names(_json_post(engineer, path, body), "detail")
    assert message.startswith(("JSON parse error", "The JSON nests deeper than 32 levels"))
    assert ChangeRequest.objects.count() == before


# --- the feed's status reports ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("report", "field"),
    [
        ('{"status": "ack", "version": 2147483648}', "version"),
        ('{"status": "nack", "version": 1, "trust_version": 2147483648}', "trust_version"),
        ('{"status": "ack", "version": -1}', "version"),
        ('{"status": "nack", "error": "bad\\u0000signature"}', "error"),
        ('{"status": "nack", "error": "bad \\ud800"}', "error"),
        ('{"status": "ack\\u0000", "version": 1}', "status"),
        ('{"status": "ack", "version": 1, "spool_records": 2147483648}', "spool_records"),
        ('{"status": "ack", "version": 1, "spool_bytes": 9223372036854775808}', "spool_bytes"),
        ('{"status": "ack", "version": 1, "spool_age_seconds": 2147483648}', "spool_age_seconds"),
        ('{"status": "ack", "version": ' + "9" * 5000 + "}", "non_field_errors"),
        ('{"status": "ack", "version": 1, "x": ' + DEEP_20K + "}", "non_field_errors"),
        ('{"status": "ack", "version": 1, "x": ' + "[" * 40 + "]" * 40 + "}", "non_field_errors"),
    ],
)
def test_a_status_report_past_its_columns_is_a_400_naming_the_field(world, client, report, field):
    path = "/api/v1/policy-sets/production/status"
    auth = {"HTTP_AUTHORIZATION": f"Bearer {world['token']}"}
    assert _names(_json_post(client, path, report, **auth), field)
    assert not RouterReport.objects.exists()
    good = _json_post(client, path, '{"status": "ack", "version": 2147483647, "error": ""}', **auth)
    assert good.status_code == 200 and RouterReport.objects.get().version == 2**31 - 1


# --- YAML integers ------------------------------------------------------------------------------

HUGE = "9" * 5000
POLICY_WITH_HUGE_RATE = ROUTED_POLICY.replace("max_rate_bp: 1000", f"max_rate_bp: {HUGE}")


def _huge_integer_error(error: dict) -> None:
    assert error["path"] == "routes[0].escalation.max_rate_bp", error
    assert "an integer of 5000 digits; at most 4300 are accepted" in error["message"]


def test_validate_refuses_a_yaml_integer_of_5000_digits_naming_its_path(engineer):
    response = _json_post(
        engineer, "/api/v1/policy-sets/production/validate", json.dumps({"policy": POLICY_WITH_HUGE_RATE})
    )
    assert response.status_code == 200, response.content[:300]
    body = response.json()
    assert body["valid"] is False
    [error] = body["errors"]
    _huge_integer_error(error)


def test_a_change_request_with_a_yaml_integer_of_5000_digits_keeps_the_error(engineer):
    body = {"policy_set": "production", "title": "huge", "policy": POLICY_WITH_HUGE_RATE}
    response = _json_post(engineer, "/api/v1/change-requests", json.dumps(body))
    assert response.status_code == 201, response.content[:300]
    change = response.json()
    assert change["valid"] is False
    _huge_integer_error(change["errors"][0])
    revision = _json_post(
        engineer, f"/api/v1/change-requests/{change['id']}/revisions", json.dumps({"policy": POLICY_WITH_HUGE_RATE})
    )
    assert revision.status_code == 201 and revision.json()["valid"] is False


def test_a_yaml_integer_within_the_digits_but_past_any_column_is_an_error_not_a_500(engineer):
    policy = ROUTED_POLICY.replace("max_rate_bp: 1000", f"max_rate_bp: {'9' * 4000}")
    response = _json_post(engineer, "/api/v1/policy-sets/production/validate", json.dumps({"policy": policy}))
    assert response.status_code == 200 and response.json()["valid"] is False


SUITE = """\
name: Huge
slug: huge
category: accuracy
pass_threshold_bp: {threshold}
scorer: exact
cases:
  - key: c1
    prompt: "Say hi"
    expected: hi
"""


@pytest.mark.parametrize(
    ("threshold", "path"),
    [(HUGE, "pass_threshold_bp"), ("9" * 4000, "pass_threshold_bp"), ("2147483648", "pass_threshold_bp")],
    ids=["5000-digits", "4000-digits", "2^31"],
)
def test_a_suite_import_refuses_integers_too_long_naming_the_path(engineer, threshold, path):
    response = _json_post(
        engineer, "/api/v1/evaluation-suites/import", json.dumps({"yaml": SUITE.format(threshold=threshold)})
    )
    messages = _names(response, path)
    assert messages
    assert not EvaluationSuite.objects.filter(slug="huge").exists()
