"""Personal API tokens: created on the profile page or by command, shown once, stored hashed."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from steward.models import ApiToken, hash_token

pytestmark = pytest.mark.django_db


def test_command_prints_the_token_once_and_stores_only_its_hash(bob, client):
    out = io.StringIO()
    call_command("create_api_token", "bob", "--name", "CI", stdout=out, stderr=io.StringIO())
    raw = out.getvalue().strip()
    token = ApiToken.objects.get(user=bob)
    assert token.name == "CI"
    assert token.token_hash == hash_token(raw) and raw not in (token.token_hash, token.prefix)
    response = client.get("/api/v1/model-versions", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200


def test_command_names_the_unknown_user():
    with pytest.raises(CommandError, match="username: no user named 'nobody'") as caught:
        call_command("create_api_token", "nobody", stdout=io.StringIO(), stderr=io.StringIO())
    assert caught.value.returncode == 2


def test_profile_page_shows_a_new_token_once(bob, client_for):
    client = client_for(bob)
    response = client.post("/profile/", {"name": "laptop"})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    token = ApiToken.objects.get(user=bob, name="laptop")
    page = response.content.decode()
    start = page.index('id="new-token">') + len('id="new-token">')
    raw = page[start : page.index("</code>", start)]
    assert hash_token(raw) == token.token_hash
    again = client.get("/profile/").content.decode()
    assert raw not in again and token.prefix in again
