"""The registry list: filters, search, sorting, pagination, htmx partials and constant queries."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from registry.models import ModelVersion

from ..factories import make_versions

pytestmark = pytest.mark.django_db


def _queries_for(client, url: str, **headers) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, **headers)
    assert response.status_code == 200
    return len(captured)


@pytest.mark.parametrize(
    "url", ["/registry/", "/registry/?status=approved&sort=-input_price", "/api/v1/model-versions"]
)
def test_same_number_of_queries_at_20_and_200_versions(bob, client_for, url):
    client = client_for(bob)
    make_versions(20, bob)
    at_20 = _queries_for(client, url)
    make_versions(180, bob)
    assert ModelVersion.objects.count() == 200
    at_200 = _queries_for(client, url)
    assert at_20 == at_200


def test_filters_narrow_the_table(bob, client_for):
    versions = make_versions(12, bob)
    client = client_for(bob)
    approved = [v for v in versions if v.status == "approved"]
    page = client.get("/registry/?status=approved").content.decode()
    assert f"{len(approved)} versions" in page
    eu_large = [v for v in versions if v.region == "eu-west-1" and v.cost_tier == "large"]
    page = client.get("/registry/?region=eu-west-1&tier=large").content.decode()
    assert f"{len(eu_large)} version" in page
    for version in versions:
        assert (version.ref in page) == (version in eu_large)


def test_search_and_provider_filter(bob, client_for):
    versions = make_versions(8, bob)
    target = versions[3]
    client = client_for(bob)
    page = client.get(f"/registry/?q={target.ref}").content.decode()
    assert "1 version" in page and target.ref in page
    provider = target.model.provider
    page = client.get(f"/registry/?provider={provider.slug}").content.decode()
    expected = [v for v in versions if v.model.provider_id == provider.pk]
    assert f"{len(expected)} version" in page


def test_sorting_by_price(bob, client_for):
    versions = make_versions(6, bob)
    for i, version in enumerate(versions):
        ModelVersion.objects.filter(pk=version.pk).update(input_price_micro_usd=(i + 1) * 1000)
    page = client_for(bob).get("/registry/?sort=-input_price").content.decode()
    positions = [page.index(v.ref) for v in reversed(versions)]
    assert positions == sorted(positions)


def test_htmx_request_gets_only_the_table(bob, client_for):
    make_versions(3, bob)
    client = client_for(bob)
    partial = client.get("/registry/?status=approved", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="version-table")
    body = partial.content.decode()
    assert body.lstrip().startswith('<div id="version-table">')
    assert "<html" not in body


def test_pagination(bob, client_for):
    make_versions(30, bob)
    client = client_for(bob)
    first = client.get("/registry/").content.decode()
    assert "Page 1 of 2" in first
    second = client.get("/registry/?page=2").content.decode()
    assert "Page 2 of 2" in second


def test_bad_filter_value_is_a_clear_message_not_an_error(bob, client_for):
    response = client_for(bob).get("/registry/?status=bogus&sort=nonsense")
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
