"""Personal API tokens: created on the profile page or by command, shown once, stored hashed."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

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


def test_a_token_with_an_expiry_stops_working_when_it_expires(bob, client_for, client):
    response = client_for(bob).post("/profile/", {"name": "ci", "expires_in_days": "30"})
    page = response.content.decode()
    start = page.index('id="new-token">') + len('id="new-token">')
    raw = page[start : page.index("</code>", start)]
    token = ApiToken.objects.get(user=bob, name="ci")
    assert (token.expires_at - token.created_at).days == 30
    assert client.get("/api/v1/providers", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200

    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    expired = client.get("/api/v1/providers", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert expired.status_code == 401 and "Invalid, revoked or expired token" in expired.json()["detail"]
    row = client_for(bob).get("/profile/").content.decode()
    assert "expired" in row[row.index(f'id="token-{token.pk}"') :]


def test_the_profile_shows_when_each_token_was_last_used_and_when_it_expires(bob, client_for, client):
    token, raw = ApiToken.issue(bob, "laptop", expires_in_days=90)
    assert token.last_used_at is None
    client.get("/api/v1/providers", HTTP_AUTHORIZATION=f"Bearer {raw}")
    token.refresh_from_db()
    assert token.last_used_at is not None
    page = client_for(bob).get("/profile/").content.decode()
    row = page[page.index(f'id="token-{token.pk}"') :]
    assert token.last_used_at.strftime("%Y-%m-%d %H:%M") in row
    assert token.expires_at.strftime("%Y-%m-%d %H:%M") in row


def test_the_command_takes_an_expiry_and_refuses_a_bad_one(bob):
    call_command("create_api_token", "bob", "--expires-days", "7", stdout=io.StringIO(), stderr=io.StringIO())
    token = ApiToken.objects.get(user=bob)
    assert (token.expires_at - token.created_at).days == 7
    with pytest.raises(CommandError, match="--expires-days") as caught:
        call_command("create_api_token", "bob", "--expires-days", "0", stdout=io.StringIO(), stderr=io.StringIO())
    assert caught.value.returncode == 2
