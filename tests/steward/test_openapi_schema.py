"""The OpenAPI schema at /api/schema/ is complete and true: every route of the API is in it (the
routers' feed, trust roots and decisions too), with the two ways to authenticate, and the bodies
described as the views answer them (the schemathesis test checks real answers against it)."""

from __future__ import annotations

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema


@pytest.fixture(scope="module")
def schema() -> dict:
    document = SchemaGenerator().get_schema(request=None, public=True)
    validate_schema(document)  # OpenAPI 3's own JSON Schema
    return document


def _api_routes(resolver: URLResolver | None = None, prefix: str = "") -> set[str]:
    """Every URL route under /api/v1/ as Django names it in a match (``ResolverMatch.route``)."""
    routes: set[str] = set()
    for entry in (resolver or get_resolver()).url_patterns:
        pattern = str(entry.pattern)
        route = prefix + (pattern.removeprefix("^") if prefix else pattern)  # as a match joins them
        if isinstance(entry, URLResolver):
            routes |= _api_routes(entry, route)
        elif isinstance(entry, URLPattern) and route.startswith("api/v1/"):
            routes.add(route)
    return routes


def _example(path: str, operation: dict) -> str:
    """The path with each parameter replaced by a value its schema allows."""
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path":
            value = parameter["schema"].get("enum", ["1"])[0]
            path = path.replace("{" + parameter["name"] + "}", str(value))
    return path


def test_every_api_route_is_in_the_schema(schema) -> None:
    documented = {
        resolve(_example(path, operation)).route
        for path, operations in schema["paths"].items()
        for operation in operations.values()
    }
    undocumented = {
        route
        for route in _api_routes() - documented
        # DRF's API root and the format suffixes (.json) of the routes themselves are not operations.
        if route != "api/v1/" and "(?P<format>" not in route and "<drf_format_suffix:format>" not in route
    }
    assert undocumented == set()


def test_the_routers_protocol_is_documented_with_the_router_token(schema) -> None:
    for path, method in [
        ("/api/v1/policy-sets/{slug}/bundle", "get"),
        ("/api/v1/policy-sets/{slug}/status", "post"),
        ("/api/v1/decisions", "post"),
    ]:
        assert schema["paths"][path][method]["security"] == [{"routerToken": []}]
    assert schema["paths"]["/api/v1/trust/root.json"]["get"]["security"] == [{}]  # public
    schemes = schema["components"]["securitySchemes"]
    assert schemes["routerToken"]["scheme"] == schemes["bearerAuth"]["scheme"] == "bearer"
    assert {"bearerAuth": []} in schema["paths"]["/api/v1/model-versions/"]["get"]["security"]


def test_the_decision_record_is_documented_with_its_columns_limits(schema) -> None:
    record = schema["components"]["schemas"]["DecisionRecord"]
    assert record["properties"]["task"]["maxLength"] == 60
    assert record["properties"]["classification"]["maxLength"] == 50
    assert record["properties"]["request_id"]["maxLength"] == 128
    # The figures rollups add up have bounds of their own, far inside the columns (audits.records).
    assert record["properties"]["latency_ms"]["maximum"] == 86_400_000
    assert record["properties"]["input_tokens"]["maximum"] == record["properties"]["output_tokens"]["maximum"] == 10**9
    assert record["properties"]["cost_micro_usd"]["maximum"] == 10**12
    assert "$1,000,000" in record["properties"]["cost_micro_usd"]["description"]
    assert (record["properties"]["policy_version"]["minimum"], record["properties"]["policy_version"]["maximum"]) == (
        1,
        2**31 - 1,
    )
    assert {"request_id", "occurred_at", "task", "classification", "model"} <= set(record["required"])
    batch = schema["components"]["schemas"]["DecisionBatch"]
    assert batch["properties"]["records"]["maxItems"] == 1000


def test_drift_is_gone(schema) -> None:
    suite = schema["components"]["schemas"]["Suite"]["properties"]
    assert suite["task"]["nullable"] is True and suite["judge"]["nullable"] is True
    versions = schema["paths"]["/api/v1/policy-sets/{slug}/versions/"]["get"]["responses"]["200"]
    assert versions["content"]["application/json"]["schema"]["type"] == "array"  # a bare list, as answered
    runs = schema["paths"]["/api/v1/evaluation-runs/"]["get"]["responses"]["200"]
    assert (
        "results"
        in schema["components"]["schemas"][runs["content"]["application/json"]["schema"]["$ref"].split("/")[-1]][
            "properties"
        ]
    )


@pytest.mark.parametrize(
    "path", ["/api/v1/nothing-here", "/api/v1/decisions/-1/chain", "/api/v1/trust/x.root.json", "/api/v1/tasks/a.b/"]
)
def test_an_api_url_that_matches_nothing_answers_the_documented_json_error(path, client_for, dave) -> None:
    response = client_for(dave).get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found."}


def test_a_host_header_the_server_does_not_answer_for_is_a_json_400_on_the_api(client_for, dave) -> None:
    # Found by the schemathesis test: its invalid requests may carry a Host header of their own.
    response = client_for(dave).get("/api/v1/providers/", HTTP_HOST="IL 8|,")
    assert response.status_code == 400
    assert response.json() == {"detail": "The Host header names a host this server does not answer for."}
    assert client_for(dave).get("/registry/", HTTP_HOST="IL 8|,").status_code == 400


def test_a_page_that_matches_nothing_is_still_a_page(client_for, dave) -> None:
    response = client_for(dave).get("/registry/nothing-here/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
