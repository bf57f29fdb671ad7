"""Cost tiers through the API: a ceiling is an amount a signed policy can carry, or a 400 naming it."""

from __future__ import annotations

import json

import pytest

from audits.models import AuditEvent
from portfolio.models import CostTier


def _post(client, body: dict):
    return client.post("/api/v1/cost-tiers/", json.dumps(body), content_type="application/json")


@pytest.mark.parametrize("ceiling", [2**53, 2**63 - 1])
def test_a_ceiling_past_what_a_signed_policy_carries_is_refused_and_nothing_is_written(
    ceiling: int, alice, client_for
) -> None:
    # Found by the schemathesis test: 2**63 - 1 fitted the column, was saved, then its audit event
    # (canonical JSON, integers up to 2**53 - 1) failed: a 500 and a tier without its audit event.
    client = client_for(alice)  # signing in is an audit event of its own
    tiers, events = CostTier.objects.count(), AuditEvent.objects.count()

    response = _post(client, {"slug": "huge", "name": "Huge", "rank": 90, "price_ceiling_micro_usd": ceiling})

    assert response.status_code == 400, response.content
    assert list(response.json()) == ["price_ceiling_micro_usd"]
    assert (CostTier.objects.count(), AuditEvent.objects.count()) == (tiers, events)


def test_the_largest_signable_ceiling_is_accepted(alice, client_for) -> None:
    body = {"slug": "huge", "name": "Huge", "rank": 90, "price_ceiling_micro_usd": 2**53 - 1}

    response = _post(client_for(alice), body)

    assert response.status_code == 201, response.content
    assert CostTier.objects.get(slug="huge").price_ceiling_micro_usd == 2**53 - 1
