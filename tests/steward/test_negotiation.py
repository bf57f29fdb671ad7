"""An Accept header the API cannot satisfy, or cannot read, is answered as if it were absent (JSON),
never 406; a format the URL names still has to exist."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db


@pytest.fixture
def dave_token(dave) -> str:
    out = io.StringIO()
    call_command("create_api_token", "dave", "--name", "audit", stdout=out, stderr=io.StringIO())
    return out.getvalue().strip()


@pytest.mark.parametrize("accept", [")R5hkLuk", "text/csv", "application/xml;q=1", "*/plain", ";;;"])
def test_an_accept_header_nothing_satisfies_gets_json(client, dave_token, accept):
    response = client.get("/api/v1/providers", HTTP_AUTHORIZATION=f"Bearer {dave_token}", HTTP_ACCEPT=accept)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    assert "results" in response.json()


def test_permissions_answer_before_an_unsatisfiable_accept_header(client, dave_token):
    response = client.post(
        "/api/v1/providers",
        {},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {dave_token}",
        HTTP_ACCEPT=")R5hkLuk",
    )
    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"


def test_a_format_the_url_names_must_exist(client, dave_token):
    response = client.get("/api/v1/providers?format=xml", HTTP_AUTHORIZATION=f"Bearer {dave_token}")
    assert response.status_code == 404
