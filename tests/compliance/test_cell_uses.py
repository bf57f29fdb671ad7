"""A matrix cell's panel lists the routes of current published policies that use it, and suspending
such a cell asks for confirmation first (naming those routes); a cell nothing uses suspends at once."""

from __future__ import annotations

from django.db import connection
from django.test.utils import CaptureQueriesContext

from compliance.matrix import CellState, check
from compliance.models import DataClassification
from portfolio.cell_uses import current_versions, routes_using
from tests.factories import ROUTED_POLICY, approve_cell, make_classification, publish_through_review, routed_world


def test_the_panel_lists_the_published_routes_through_the_cell(client_for, alice, carol, bob) -> None:
    world = routed_world(alice, carol, bob)
    small, fallback, other = world["versions"]["a"], world["versions"]["b"], world["versions"]["other"]
    body = client_for(alice).get(f"/compliance/matrix/cell/{small.pk}/internal/").content.decode()
    assert "production v1: ticket-triage / internal (primary)" in body
    assert "/policies/production/versions/1/" in body
    body = client_for(alice).get(f"/compliance/matrix/cell/{fallback.pk}/internal/").content.decode()
    assert "production v1: ticket-triage / internal (fallback 1)" in body
    body = client_for(alice).get(f"/compliance/matrix/cell/{other.pk}/internal/").content.decode()
    assert "No current published policy routes through this cell." in body
    # Only the current version counts: v2 routes to the other model first.
    publish_through_review(
        world["policy_set"], ROUTED_POLICY.replace("model: acme/small-a@1", "model: beta/other@1"), bob, [carol]
    )
    internal = DataClassification.objects.get(slug="internal")
    assert [u.label for u in routes_using(other, internal)] == ["production v2: ticket-triage / internal (primary)"]
    assert routes_using(small, internal) == []


def test_the_current_versions_are_read_in_one_query(alice, carol, bob) -> None:
    routed_world(alice, carol, bob)
    with CaptureQueriesContext(connection) as queries:
        versions = current_versions()
    assert [str(v) for v in versions] == ["production v1"] and len(queries) == 1


def test_suspending_a_cell_a_policy_routes_through_asks_first(client_for, alice, carol, bob) -> None:
    world = routed_world(alice, carol, bob)
    small = world["versions"]["a"]
    internal = DataClassification.objects.get(slug="internal")
    url = f"/compliance/matrix/cell/{small.pk}/internal/suspend/"
    client = client_for(alice)
    first = client.post(url, {"reason": "Provider incident"})
    body = first.content.decode()
    assert first.status_code == 200 and 'id="suspend-warning"' in body
    assert (
        "Published policies route through this cell." in body
        and "production v1: ticket-triage / internal (primary)" in body
    )
    assert "Suspend anyway" in body and "Provider incident" in body
    assert check(small, internal).state == CellState.USABLE  # nothing changed yet
    confirmed = client.post(url, {"reason": "Provider incident", "confirm": "on"})
    assert confirmed.status_code == 302
    assert check(small, internal).state == CellState.SUSPENDED
    # A bad reason is refused before any confirmation.
    refused = client.post(f"/compliance/matrix/cell/{world['versions']['b'].pk}/internal/suspend/", {"reason": ""})
    assert refused.status_code == 400 and 'id="suspend-warning"' not in refused.content.decode()


def test_a_cell_no_policy_uses_suspends_at_once(client_for, alice, carol, bob) -> None:
    world = routed_world(alice, carol, bob)
    other = world["versions"]["other"]
    pii = make_classification("pii", 3)
    approve_cell(other, pii, alice)
    response = client_for(alice).post(f"/compliance/matrix/cell/{other.pk}/pii/suspend/", {"reason": "Incident"})
    assert response.status_code == 302 and check(other, pii).state == CellState.SUSPENDED
