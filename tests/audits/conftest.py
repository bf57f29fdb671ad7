"""A small routed world for decision records: two models, one route, a published and signed policy."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from compliance.models import DataClassification, MatrixCell, StorageRule
from portfolio.feed import register_router
from portfolio.models import CostTier, PolicySet, Task
from portfolio.publishing import publish, start_change
from registry.models import Status

from ..factories import make_model, make_provider, make_version

POLICY = """\
default: deny
routes:
  - task: ticket-triage
    classification: internal
    model: acme/small-a@1
    fallbacks: [beta/small-b@1]
    escalation:
      to: acme/large-a@1
      when: [low_confidence]
      confidence_threshold_bp: 7000
      max_rate_bp: 1000
"""


@pytest.fixture
def world(db, alice, carol, bob):
    small = CostTier.objects.create(slug="small", name="Small", rank=1, price_ceiling_micro_usd=500_000)
    CostTier.objects.create(slug="large", name="Large", rank=3, price_ceiling_micro_usd=20_000_000)
    internal = DataClassification.objects.create(slug="internal", name="Internal", level=1)
    DataClassification.objects.create(
        slug="secret", name="Secret", level=5, storage=StorageRule.DIGEST, retention_days=30
    )
    Task.objects.create(slug="ticket-triage", name="Ticket triage", default_classification=internal, tier=small)
    acme, beta = make_provider(name="Acme", slug="acme"), make_provider(name="Beta", slug="beta")
    versions = {
        "a": make_version(bob, model=make_model(provider=acme, slug="small-a"), version="1", status=Status.APPROVED),
        "b": make_version(bob, model=make_model(provider=beta, slug="small-b"), version="1", status=Status.APPROVED),
        "large": make_version(
            bob,
            model=make_model(provider=acme, slug="large-a"),
            version="1",
            status=Status.APPROVED,
            cost_tier="large",
            input_price_micro_usd=3_000_000,
        ),
        "other": make_version(bob, model=make_model(provider=beta, slug="other"), version="1", status=Status.APPROVED),
    }
    for version in versions.values():
        MatrixCell.for_pair(version, internal).approve(alice, "internal data is fine")
    policy_set = PolicySet.objects.create(slug="production", name="Production", required_approvals=1)
    change = start_change(policy_set, bob, "first", "", POLICY)
    assert not change.latest_revision().errors, change.latest_revision().errors
    change.submit(bob)
    change.review(carol, "approve", "ok")
    version = publish(change, alice)
    router, token = register_router(policy_set, "edge-1", by=alice)
    staging = PolicySet.objects.create(slug="staging", name="Staging")
    other_router, other_token = register_router(staging, "edge-staging", by=alice)
    return {
        "versions": versions,
        "policy_version": version,
        "router": router,
        "token": token,
        "other_token": other_token,
        "now": timezone.now(),
        "policy_set": policy_set,
    }


def decision(n: int, **fields) -> dict:
    base = {
        "request_id": f"req-{n}",
        "occurred_at": (timezone.now() - dt.timedelta(minutes=1)).isoformat(),
        "task": "ticket-triage",
        "classification": "internal",
        "model": "acme/small-a@1",
        "policy_version": 1,
        "fallback_used": False,
        "escalated": False,
        "latency_ms": 420,
        "input_tokens": 800,
        "output_tokens": 40,
        "cost_micro_usd": 144,
        "input": f"Ticket {n}: my invoice is wrong",
        "output": "billing",
    }
    return {**base, **fields}
