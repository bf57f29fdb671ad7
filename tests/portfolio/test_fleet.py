"""The fleet page: registering routers (token shown once), revoking them, stale and behind routers,
and the dashboard's warning when a signed policy is close to expiry."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from portfolio.feed import hash_router_token, register_router
from portfolio.models import PolicyRelease, PolicySet, Router
from portfolio.signing import resign

pytestmark = pytest.mark.django_db


@pytest.fixture
def seeded(db):
    from django.core.management import call_command

    call_command("seed_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115
    from django.contrib.auth.models import User

    return {name: User.objects.get(username=name) for name in ("alice", "bob", "dave")}


@pytest.mark.parametrize(("who", "get", "post"), [("alice", 200, 200), ("bob", 200, 403), ("dave", 200, 403)])
def test_roles(seeded, client_for, who, get, post):
    client = client_for(seeded[who])
    assert client.get("/policies/fleet/").status_code == get
    response = client.post("/policies/fleet/", {"name": f"edge-{who}", "policy_set": "production"})
    assert response.status_code == post
    assert Router.objects.filter(name=f"edge-{who}").exists() == (post == 200)


def test_anonymous_is_sent_to_sign_in(client):
    assert client.get("/policies/fleet/")["Location"].startswith("/login/")


def test_officer_registers_a_router_and_sees_its_token_once(seeded, client_for):
    client = client_for(seeded["alice"])
    response = client.post("/policies/fleet/", {"name": "edge-eu-1", "policy_set": "production"})
    page = response.content.decode()
    start = page.index('id="new-router-token">') + len('id="new-router-token">')
    raw = page[start : page.index("</code>", start)]
    router = Router.objects.get(name="edge-eu-1")
    assert router.token_hash == hash_router_token(raw) and raw not in router.token_hash
    assert response["Cache-Control"] == "no-store"
    assert raw not in client.get("/policies/fleet/").content.decode()


def test_bad_router_names_are_refused_and_nothing_saved(seeded, client_for):
    response = client_for(seeded["alice"]).post("/policies/fleet/", {"name": "Edge EU!", "policy_set": "production"})
    assert response.status_code == 400 and "lower-case" in response.content.decode()
    assert not Router.objects.exists()


def test_revoke_needs_an_officer_and_stops_the_token(seeded, client_for, client):
    router, raw = register_router(PolicySet.objects.get(slug="production"), "edge-1", seeded["alice"])
    assert client_for(seeded["bob"]).post(f"/policies/fleet/{router.pk}/revoke/").status_code == 403
    client_for(seeded["alice"]).post(f"/policies/fleet/{router.pk}/revoke/")
    router.refresh_from_db()
    assert router.revoked_at is not None
    response = client.get("/api/v1/policy-sets/production/bundle", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 401


def test_a_router_token_with_an_expiry_stops_pulling_when_it_expires(seeded, client_for, client):
    from portfolio import feed

    response = client_for(seeded["alice"]).post(
        "/policies/fleet/", {"name": "edge-short", "policy_set": "production", "expires_in_days": "90"}
    )
    page = response.content.decode()
    start = page.index('id="new-router-token">') + len('id="new-router-token">')
    raw = page[start : page.index("</code>", start)]
    router = Router.objects.get(name="edge-short")
    assert (router.token_expires_at - router.created_at).days == 90
    bundle = "/api/v1/policy-sets/production/bundle"
    assert client.get(bundle, HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200
    fleet = client_for(seeded["dave"]).get("/policies/fleet/").content.decode()
    assert f"token expires {router.token_expires_at:%Y-%m-%d}" in fleet

    # Expired while its identity is still remembered in memory and in the cache: refused at once.
    Router.objects.filter(pk=router.pk).update(token_expires_at=timezone.now() - dt.timedelta(seconds=1))
    feed._tokens.clear()
    from django.core.cache import cache

    cache.clear()
    assert client.get(bundle, HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 401
    fleet = client_for(seeded["dave"]).get("/policies/fleet/").content.decode()
    assert "token expired" in fleet


def test_a_remembered_router_token_is_refused_once_its_expiry_passes(seeded):
    from portfolio import feed

    router, raw = register_router(
        PolicySet.objects.get(slug="production"), "edge-1", seeded["alice"], expires_in_days=1
    )
    assert feed.identify(raw) is not None  # now remembered in memory and in the cache
    soon = router.token_expires_at.timestamp()
    remembered = feed._tokens[router.token_hash][1]
    assert remembered.expires_at == soon
    feed._tokens[router.token_hash] = (
        feed._tokens[router.token_hash][0],
        feed.RouterIdentity(router.pk, "production", 0.0),
    )
    assert feed.identify(raw) is None


def test_stale_and_behind_routers_stand_out(seeded, client_for):
    production = PolicySet.objects.get(slug="production")
    current, _ = register_router(production, "edge-current", seeded["alice"])
    behind, _ = register_router(production, "edge-behind", seeded["alice"])
    resign(production)  # production is now at v2
    Router.objects.filter(pk=current.pk).update(applied_version=2, last_seen_at=timezone.now(), last_status="ack")
    Router.objects.filter(pk=behind.pk).update(
        applied_version=1,
        last_seen_at=timezone.now() - dt.timedelta(hours=1),
        last_status="nack",
        last_error="signature check failed",
        last_nack_at=timezone.now(),
    )
    page = client_for(seeded["dave"]).get("/policies/fleet/").content.decode()
    rows = page[page.index('id="fleet"') :]
    behind_row = rows[rows.index("edge-behind") :].split("</tr>")[0]
    current_row = rows[rows.index("edge-current") :].split("</tr>")[0]
    assert "1 behind" in behind_row and "stale" in behind_row and "signature check failed" in behind_row
    assert "behind" not in current_row and "stale" not in current_row
    assert 'data-figure="fleet-chart"' in page
    dashboard = client_for(seeded["alice"]).get("/").content.decode()
    assert "1 router</a> has not been seen recently" in dashboard


def test_dashboard_warns_when_a_signed_policy_is_close_to_expiry(seeded, client_for):
    page = client_for(seeded["alice"]).get("/").content.decode()
    assert 'id="expiry-warning"' not in page
    # Releases are immutable: sign a new one as if it had been issued long ago, 20 hours from expiry.
    staging = PolicySet.objects.get(slug="staging")
    lifetime = dt.timedelta(days=staging.policy_lifetime_days)
    resign(staging, now=timezone.now() - lifetime + dt.timedelta(hours=20))
    page = client_for(seeded["alice"]).get("/").content.decode()
    assert 'id="expiry-warning"' in page and "staging v2 expires" in page


def test_releases_and_versions_cannot_be_changed_in_the_database(seeded):
    from django.db import DatabaseError, transaction

    from portfolio.models import PolicyVersion

    with pytest.raises(DatabaseError, match="immutable"), transaction.atomic():
        PolicyRelease.objects.update(expires=timezone.now())
    with pytest.raises(DatabaseError, match="immutable"), transaction.atomic():
        PolicyVersion.objects.filter(number=1).update(document="default: deny\nroutes: []\n")
